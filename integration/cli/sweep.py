"""`tierup sweep` and the periodic SLA sweeps: each adapter's SweepSource through integration.sweep.run_sweep.

Part of the composition root (like integration.cli.ops): an adapter offers `sweep_source()`, the
worker runs one periodic Huey task per source every TIERUP_SWEEP_INTERVAL seconds, and the
command runs them on demand with a progress line on a terminal and a summary at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from integration.logs import log_context
from integration.model import Platform
from integration.ports import PlatformAdapter
from integration.sweep import SweepReport, SweepSource, run_sweep, sweep_source_of

if TYPE_CHECKING:
    from integration.cli.ops import Runtime

log = logging.getLogger("tierup.sweep")

SWEEP_TASK_PREFIX = "tierup.sla_sweep."


def sweep_targets(runtime: Runtime, platform: Platform | None = None) -> list[tuple[PlatformAdapter, SweepSource]]:
    """The configured adapters that offer an SLA sweep (none in a dry run), optionally of one platform."""
    found: list[tuple[PlatformAdapter, SweepSource]] = []
    for key, adapter in sorted(runtime.adapters.items()):
        if platform is not None and key is not platform:
            continue
        source = sweep_source_of(adapter)
        if source is not None:
            found.append((adapter, source))
    return found


def sweep_once(
    runtime: Runtime,
    adapter: PlatformAdapter,
    source: SweepSource,
    *,
    since: datetime | None = None,
    progress: Callable[[SweepReport], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SweepReport:
    """One sweep of `source` with the runtime's policy, store, cursors and ticket locks."""
    with log_context(delivery_id=f"sweep:{source.platform.value}:{source.name}"):
        return run_sweep(
            source,
            policy=runtime.policy,
            gateway=adapter.gateway,
            store=runtime.escalations,
            cursors=runtime.cursors,
            locks=runtime.locks,
            clock=runtime.clock,
            since=since,
            progress=progress,
            dry_run=adapter.dry_run,
            sleep=sleep,
        )


def register_sweep_tasks(runtime: Runtime) -> list[str]:
    """One periodic Huey task per sweep source, every `sweep_interval_seconds`; the task names."""
    from integration.queue import register_periodic

    names: list[str] = []
    for adapter, source in sweep_targets(runtime):
        name = f"{SWEEP_TASK_PREFIX}{source.platform.value}"

        def run(adapter: PlatformAdapter = adapter, source: SweepSource = source) -> SweepReport:
            return sweep_once(runtime, adapter, source)

        register_periodic(runtime.tasks.huey, name, float(runtime.settings.sweep_interval_seconds), run)
        names.append(name)
    return names


# --- the command -------------------------------------------------------------------------------


def parse_since(raw: str) -> datetime:
    """--since: an ISO 8601 date or time; without an offset it is UTC."""
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {raw!r} (e.g. 2026-03-01T00:00:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class ProgressLine:
    """A one-line progress display on a terminal, redrawn in place (plain stderr writes, no dependency)."""

    WIDTH = 24

    def __init__(self, stream: TextIO, label: str, *, min_interval: float = 0.1) -> None:
        self.stream, self.label, self.min_interval = stream, label, min_interval
        self._last = 0.0
        self._drawn = False

    def __call__(self, report: SweepReport) -> None:
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return
        self._last = now
        if report.progress is not None:
            filled = round(report.progress * self.WIDTH)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {report.progress * 100:3.0f}%  "
        else:
            bar = ""
        line = (
            f"{self.label}: {bar}{report.events_read:,} events, {report.breaches:,} breaches, "
            f"{report.tickets_escalated:,} escalated, {report.api_calls:,} API calls"
        )
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def summary(report: SweepReport) -> str:
    """The end-of-run table `tierup sweep` prints."""
    state = "complete" if report.complete else "stopped early (the next run resumes from the last stored cursor)"
    rows = [
        ("events read", f"{report.events_read:,}"),
        ("breaches", f"{report.breaches:,}"),
        ("tickets escalated", f"{report.tickets_escalated:,}"),
        ("tickets updated", f"{report.tickets_updated:,}"),
        ("already handled", f"{report.already_handled:,}"),
        ("skipped", f"{report.skipped:,}"),
        ("API calls", f"{report.api_calls:,}"),
        ("bulk writes", f"{report.bulk_writes:,}"),
        ("time", f"{report.seconds:.2f}s"),
    ]
    if report.busy:
        rows.insert(6, ("busy (read again)", f"{report.busy:,}"))
    if report.failed:
        rows.insert(6, ("failed", f"{report.failed:,}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{report.platform.value} sweep ({report.source}): {state}"]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the SLA sweeps now: every configured platform, or the one named."""
    from integration.cli.ops import _start

    runtime = _start(args, announce=False)
    try:
        platform = Platform(args.platform) if args.platform else None
        targets = sweep_targets(runtime, platform)
        if not targets:
            which = f"{platform.value} is not" if platform else "no platform is"
            print(f"nothing to sweep: {which} configured with API credentials (dry run or off)")
            return 0
        complete = True
        for adapter, source in targets:
            progress = ProgressLine(sys.stderr, f"{source.platform.value} sweep") if sys.stderr.isatty() else None
            try:
                report = sweep_once(runtime, adapter, source, since=args.since, progress=progress)
            finally:
                if progress is not None:
                    progress.close()
            print(summary(report))
            for error in report.errors[:20]:
                print(f"tierup: {source.platform.value} sweep: {error}", file=sys.stderr)
            complete = complete and report.complete
        return 0 if complete else 1
    finally:
        runtime.close()


def register(sub: Any) -> None:
    """Add `tierup sweep` to the `tierup` parser."""
    from integration.cli.ops import one_line_errors

    sweep = sub.add_parser("sweep", help="run the SLA sweeps now and print a summary")
    sweep.add_argument("--platform", choices=[p.value for p in Platform], default=None)
    sweep.add_argument(
        "--since", type=parse_since, default=None, metavar="ISO",
        help="read breaches from this time (UTC unless it has an offset) instead of the stored cursor",
    )  # fmt: skip
    sweep.set_defaults(handler=one_line_errors(cmd_sweep))
