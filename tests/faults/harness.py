"""Tierup as it is deployed: `tierup web` (gunicorn) and `tierup worker` as real processes, Zendesk as a stand-in.

A Deployment owns a scratch working directory with a SQLite database and Huey's SQLite queue
beside it, the Zendesk stand-in (tests.standin.zendesk) the processes talk to through zenpy,
and the two processes, started with `python -m integration.cli`. Deliveries are Tierup's
Zendesk trigger bodies (adapters/zendesk/README.md), signed with the webhook secret and a
current timestamp, posted over real HTTP. The test reads the outcome where an admin would:
the inbox and the audit trail in the database, and what reached the helpdesk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from integration.model import Platform
from integration.store import AuditEntry, Database, DeliveryStatus, Inbox, SqlEscalationStore, StoredDelivery
from tests.standin.zendesk import ZendeskStandIn
from tests.zendesk.helpers import FIELD_IDS, SECRET, changed, fixture

ROOT = Path(__file__).resolve().parents[2]
# Settings the outer environment must not leak into the processes.
_OWN_PREFIXES = ("ZENDESK_", "JIRA_", "TIERUP_", "DATABASE_URL", "REDIS_URL")
DONE = (DeliveryStatus.PROCESSED, DeliveryStatus.IGNORED, DeliveryStatus.FAILED)
LEAD_GROUP = "Technical Support Team Leaders"
FIRST_GROUP = "Support"  # the group of the stand-in's tickets before anyone escalates


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0, explain: Callable[[], str] = str) -> None:
    """Poll `check` until it holds; fail naming `what` (and whatever `explain` adds) after `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{explain()}")
        time.sleep(0.05)


# --- what Zendesk posts ------------------------------------------------------------------------

TRIGGERS = {
    "request": "trigger_escalation_requested.json",
    "confirm": "trigger_confirm.json",
    "cancel": "trigger_cancel.json",
    "not_happy": "trigger_not_happy.json",
    "solved": "trigger_solved.json",
}


def trigger(kind: str, ref: str) -> bytes:
    """The body a Tierup trigger of `kind` posts for ticket `ref` (the recorded trigger fixtures)."""
    return json.dumps(changed(fixture(TRIGGERS[kind]), ticket__id=ref)).encode("utf-8")


def signed_headers(body: bytes, invocation: str) -> dict[str, str]:
    """Zendesk's headers: signature over timestamp + body with the webhook secret, now; the invocation id."""
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(SECRET.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Zendesk Webhook",
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        "X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode("ascii"),
        "X-Zendesk-Webhook-Id": "01HAN96XNH1J7DY8D7RZ22QMT9",
        "X-Zendesk-Webhook-Invocation-Id": invocation,
    }


@dataclass(frozen=True)
class Sent:
    """One delivery: what it is, the invocation id Zendesk gave it, and the body."""

    kind: str
    ref: str
    invocation: str
    body: bytes


def deliveries(script: Iterable[tuple[str, str]], prefix: str) -> list[Sent]:
    """(kind, ticket) pairs as signed-to-be deliveries with invocation ids `prefix-N`."""
    return [Sent(kind, ref, f"{prefix}-{n:03d}", trigger(kind, ref)) for n, (kind, ref) in enumerate(script, 1)]


# --- the deployment ------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Deployment:
    """A scratch Tierup (web + worker processes, SQLite) wired to a Zendesk stand-in."""

    workdir: Path
    standin: ZendeskStandIn
    settings: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    processes: dict[str, Process] = field(default_factory=dict)
    worker_logs: list[Path] = field(default_factory=list)  # this scenario's; the test clears it
    _runs: int = 0

    def __post_init__(self) -> None:
        self.database_url = f"sqlite:///{self.workdir / 'tierup.db'}"
        self.database = Database(self.database_url)
        self.database.upgrade()  # before the processes start, so their own upgrade has nothing to race over
        self.inbox = Inbox(self.database)
        self.escalations = SqlEscalationStore(self.database, self.inbox)

    # --- processes -----------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
        env.update(
            PYTHONPATH=str(ROOT),
            DATABASE_URL=self.database_url,
            TIERUP_POLICY="lead-review",
            TIERUP_LOG_LEVEL="INFO",
            ZENDESK_WEBHOOK_SECRET=SECRET,
            **self.standin.env(),
            # The installer's field ids: the internal note goes to its field, so one comment per transition.
            **{name: str(fid) for name, fid in FIELD_IDS.items()},
        )
        env.update(self.settings)
        env.update(extra)
        return env

    def _spawn(self, name: str, argv: Sequence[str], **extra: str) -> Process:
        self._runs += 1
        log = self.workdir / f"{name}-{self._runs}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "integration.cli", *argv],
                cwd=self.workdir,
                env=self.env(**extra),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        process = Process(name, popen, log)
        self.processes[name] = process
        return process

    def start_web(self, workers: int = 2) -> None:
        """`tierup web` (gunicorn) on this deployment's port; returns once /healthz answers."""
        web = self._spawn("web", ["web", "--port", str(self.port), "--workers", str(workers)])

        def healthy() -> bool:
            if web.popen.poll() is not None:
                raise AssertionError(f"tierup web exited with {web.popen.returncode}\n{self.logs()}")
            try:
                return self._request("GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_for(healthy, "tierup web to answer /healthz", explain=self.logs)

    def start_worker(self, workers: int = 4, **extra: str) -> None:
        """`tierup worker` with `workers` threads; returns once it said it is live."""
        worker = self._spawn("worker", ["worker", "--workers", str(workers)], **extra)
        self.worker_logs.append(worker.log)

        def live() -> bool:
            if worker.popen.poll() is not None:
                raise AssertionError(f"tierup worker exited with {worker.popen.returncode}\n{self.logs()}")
            return "live mode" in worker.log.read_text(errors="replace")

        wait_for(live, "tierup worker to start", explain=self.logs)

    def kill_worker(self) -> None:
        """SIGKILL: no clean-up, no chance to finish or release anything."""
        worker = self.processes.pop("worker")
        worker.popen.send_signal(signal.SIGKILL)
        worker.popen.wait(timeout=10)

    def stop_worker(self) -> None:
        """SIGTERM the worker, if one runs, and wait for it."""
        worker = self.processes.pop("worker", None)
        if worker is not None:
            self._terminate([worker])

    def stop(self) -> None:
        """SIGTERM every process still running, then release the database."""
        running = list(self.processes.values())
        self.processes.clear()
        try:
            self._terminate(running)
        finally:
            self.database.dispose()

    def _terminate(self, processes: Sequence[Process]) -> None:
        for process in processes:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        stuck = []
        for process in processes:
            try:
                process.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
                stuck.append(process.name)
        assert not stuck, f"{stuck} did not stop on SIGTERM\n{self.logs()}"

    def worker_said(self, needle: str, *, run: int | None = None) -> list[str]:
        """This scenario's worker log messages (JSON lines) that contain `needle`: all runs, or run number `run`."""
        found = []
        for path in self.worker_logs if run is None else self.worker_logs[run : run + 1]:
            for line in path.read_text(errors="replace").splitlines():
                try:
                    message = str(json.loads(line).get("message", ""))
                except (ValueError, AttributeError):
                    continue
                if needle in message:
                    found.append(message)
        return found

    def logs(self, lines: int = 40) -> str:
        """The end of every process log, for failure messages."""
        out = []
        for path in sorted(self.workdir.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)

    # --- posting -------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def post(self, sent: Sent) -> int:
        """POST one signed delivery to /webhooks/zendesk; the HTTP status."""
        return self._request("POST", "/webhooks/zendesk", sent.body, signed_headers(sent.body, sent.invocation))[0]

    def post_at_once(self, batch: Sequence[Sent]) -> list[int]:
        """POST every delivery of `batch` concurrently, all released at the same moment; statuses in batch order."""
        gate = threading.Barrier(len(batch))

        def send(sent: Sent) -> int:
            headers = signed_headers(sent.body, sent.invocation)
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.connect()
                gate.wait(timeout=10)
                conn.request("POST", "/webhooks/zendesk", body=sent.body, headers=headers)
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()

        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            return list(pool.map(send, batch))

    # --- reading the outcome -------------------------------------------------------------------

    def rows(self, prefix: str | None = None) -> list[StoredDelivery]:
        """The deliveries in the inbox (those whose invocation id starts `prefix-`), in arrival (id) order."""
        rows = sorted(self.inbox.recent(limit=100_000), key=lambda r: r.id)
        return [r for r in rows if prefix is None or r.delivery_id.startswith(f"{prefix}-")]

    def settled(self, prefix: str, expected: int) -> bool:
        """True once `expected` deliveries of `prefix` are stored and none of them is still to run."""
        rows = self.rows(prefix)
        return len(rows) == expected and all(r.status in DONE for r in rows)

    def wait_settled(self, prefix: str, expected: int, timeout: float = 30.0) -> list[StoredDelivery]:
        """Poll the inbox until `prefix`'s deliveries are all through; then they, in arrival order."""

        def explain() -> str:
            rows = "\n".join(
                f"{r.id} {r.delivery_id} {r.status} tries={r.attempts} {r.last_error}" for r in self.rows(prefix)
            )
            return f"{rows}\n{self.logs()}"

        wait_for(lambda: self.settled(prefix, expected), f"{expected} deliveries to be processed", timeout, explain)
        return self.rows(prefix)

    def history(self, ref: str) -> list[AuditEntry]:
        return self.escalations.history(Platform.ZENDESK, ref)


def comment_keys(standin: ZendeskStandIn, ref: str) -> list[str | None]:
    """The transition key of every comment on ticket `ref`, oldest first."""
    return [c.key for c in standin.comments(ref)]


def applied_keys(standin: ZendeskStandIn, ref: str) -> list[Any]:
    """The transition key of every update Zendesk applied to ticket `ref` (its audits), oldest first."""
    return [a["metadata"]["custom"].get("tierup_key") for a in standin.audits(ref)]
