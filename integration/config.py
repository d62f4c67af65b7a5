"""Settings from the environment and a `.env` file in the working directory."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values, set_key, unset_key


class ConfigError(ValueError):
    """A setting that is missing or wrong; the message names it."""


# prometheus_client's multiprocess directory, read when it is imported: `tierup web` sets it
# before then (integration.cli.ops), webhooks.metrics reads it at scrape time.
METRICS_DIR_SETTING = "PROMETHEUS_MULTIPROC_DIR"

ENV_FILE = Path(".env")  # where load_env() reads settings, so where the installers store them


def load_env(path: str | Path = ENV_FILE) -> dict[str, str]:
    """The process environment over the values of `.env` (the environment wins)."""
    values = {k: v for k, v in dotenv_values(path).items() if v is not None} if Path(path).exists() else {}
    values.update(os.environ)
    return values


def update_env_file(path: Path, values: Mapping[str, str], remove: Iterable[str] = ()) -> None:
    """Set `values` and remove the keys in `remove` in the .env file at `path` (the installers' ids and secrets).

    A symlinked .env is written where it points (a deployed config file stays one file); a new
    one is readable by its owner only. A file that cannot be written is a ConfigError: the
    helpdesk may already hold what the command made, and running it again is safe.
    """
    try:
        if not path.exists():
            path.touch(mode=0o600)
        for key, value in values.items():
            set_key(path, key, value, quote_mode="always", follow_symlinks=True)
        for key in remove:
            unset_key(path, key, follow_symlinks=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path} ({exc.strerror or type(exc).__name__}): what was changed in the helpdesk stays; "
            "make the file writable and run the command again"
        ) from None


def secrets_list(value: str | None) -> tuple[str, ...]:
    """Comma-separated secrets, for rotation: the newest first."""
    return tuple(s.strip() for s in (value or "").split(",") if s.strip())


def require(env: Mapping[str, str], *names: str) -> None:
    """Raise ConfigError naming the first of `names` that is unset."""
    for name in names:
        if not env.get(name, "").strip():
            raise ConfigError(f"{name} is not set (environment or .env)")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


MIN_ADMIN_TOKEN = 16


@dataclass(frozen=True, slots=True)
class CoreSettings:
    policy: str = "lead-review"
    public_url: str | None = None
    database_url: str = "sqlite:///tierup.db"
    redis_url: str | None = None
    admin_token: str | None = None
    max_body_bytes: int = 1024 * 1024
    signature_tolerance_seconds: int = 300
    sweep_interval_seconds: int = 300
    deadline_interval_seconds: int = 60
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CoreSettings:
        admin_token = env.get("TIERUP_ADMIN_TOKEN") or None
        if admin_token is not None and len(admin_token.strip()) < MIN_ADMIN_TOKEN:
            # It opens the dashboard and the API to whoever sends it: it must not be guessable.
            raise ConfigError(f"TIERUP_ADMIN_TOKEN is too short: use at least {MIN_ADMIN_TOKEN} random characters")
        return cls(
            policy=env.get("TIERUP_POLICY") or "lead-review",
            public_url=(env.get("TIERUP_PUBLIC_URL") or "").strip() or None,  # as the installers read it
            database_url=env.get("DATABASE_URL") or "sqlite:///tierup.db",
            redis_url=env.get("REDIS_URL") or None,
            admin_token=admin_token,
            max_body_bytes=_int(env, "TIERUP_MAX_BODY_BYTES", 1024 * 1024),
            signature_tolerance_seconds=_int(env, "TIERUP_SIGNATURE_TOLERANCE", 300),
            sweep_interval_seconds=_int(env, "TIERUP_SWEEP_INTERVAL", 300),
            deadline_interval_seconds=_int(env, "TIERUP_DEADLINE_INTERVAL", 60),
            log_level=env.get("TIERUP_LOG_LEVEL") or "INFO",
        )
