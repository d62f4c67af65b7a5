"""The ops commands through integration.cli.main, in a scratch working directory; `serve` as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integration.cli import main
from integration.cli.ops import Runtime, build_runtime
from integration.codec import escalation_from_json
from integration.config import load_env
from integration.model import Platform, State
from integration.ports import Delivery, PermanentError
from integration.store import DeliveryStatus
from tests.faults.harness import signed_headers, trigger
from tests.infra.conftest import head_revision, post, wait_until
from tests.infra.fakes import T0, SignedAdapter, command_payload, request_payload
from tests.zendesk.helpers import SECRET

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ("DATABASE_URL", "REDIS_URL", "TIERUP_POLICY", "TIERUP_LOG_LEVEL", "TIERUP_MAX_BODY_BYTES")


@pytest.fixture
def cwd(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working directory on the embedded defaults (nothing from the outer environment)."""
    for name in list(os.environ):
        if name in SETTINGS or name.startswith(("ZENDESK_", "JIRA_")):
            monkeypatch.delenv(name)
    (workdir / ".env").write_text("TIERUP_POLICY=lead-review\n")
    return workdir


def runtime_here(adapter: SignedAdapter) -> Runtime:
    """The runtime the CLI would build in this directory, with the test platform plugged in."""
    runtime = build_runtime(load_env(), adapters={Platform.ZENDESK: adapter})
    runtime.database.upgrade()
    return runtime


@pytest.fixture
def history(cwd: Path) -> SignedAdapter:
    """Three deliveries: ticket 4016 escalated and confirmed, ticket 5000 failed permanently."""
    adapter = SignedAdapter()
    runtime = runtime_here(adapter)
    client = runtime.create_app().test_client()
    post(client, request_payload("4016"), delivery_id="zd-1")
    post(client, command_payload("confirm", "4016"), delivery_id="zd-2")
    runtime.tasks.run_pending()
    adapter.scripted.failures = [PermanentError("422 group does not exist")]
    post(client, request_payload("5000"), delivery_id="zd-3")
    runtime.tasks.run_pending()
    runtime.close()
    return adapter


def test_db_upgrade(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"database at revision {head_revision()} (sqlite:///tierup.db)"
    assert (cwd / "tierup.db").exists()
    assert main(["db", "upgrade"]) == 0


@pytest.mark.scaleout
def test_db_upgrade_hides_the_password(
    cwd: Path, capsys: pytest.CaptureFixture[str], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_url.replace("postgres@", "postgres:not-a-secret@"))
    assert main(["db", "upgrade"]) == 0
    out = capsys.readouterr().out
    assert "not-a-secret" not in out and "***" in out


def test_inbox_on_an_empty_database(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inbox"]) == 0
    assert capsys.readouterr().out.strip() == "no deliveries"


def test_inbox_lists_deliveries_newest_first(history: SignedAdapter, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inbox"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "id",
        "received",
        "platform",
        "kind",
        "ticket",
        "status",
        "tries",
        "delivery",
        "id",
        "last",
        "error",
    ]
    rows = [line.split() for line in out[1:]]  # the received time is two words: date and time
    assert [(r[0], r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows] == [
        ("3", "zendesk", "escalation.requested", "5000", "failed", "1", "zd-3"),
        ("2", "zendesk", "escalation.reviewed", "4016", "processed", "1", "zd-2"),
        ("1", "zendesk", "escalation.requested", "4016", "processed", "1", "zd-1"),
    ]
    assert "PermanentError: 422 group does not exist" in out[1]


def test_inbox_failed_and_json(history: SignedAdapter, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inbox", "--failed", "--json"]) == 0
    [failed] = json.loads(capsys.readouterr().out)
    assert failed["id"] == 3 and failed["status"] == "failed" and failed["ticket_ref"] == "5000"
    assert failed["last_error"] == "PermanentError: 422 group does not exist"
    assert "X-Signed-Signature" not in failed["headers"] and failed["headers"]["X-Signed-Delivery-Id"] == "zd-3"

    assert main(["inbox", "--failed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[0] == "3"


def test_redrive_one_delivery_runs_it_again(history: SignedAdapter, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["redrive", "3"]) == 0
    assert capsys.readouterr().out.strip() == "requeued 1 delivery: 3"

    runtime = runtime_here(history)  # a worker, picking the job from the queue file
    assert runtime.tasks.run_pending() == 1
    row = runtime.inbox.get(3)
    assert row is not None and row.status is DeliveryStatus.PROCESSED and row.attempts == 2
    runtime.close()


def test_redrive_of_ids_that_name_no_delivery_says_so(
    history: SignedAdapter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["redrive", "999", str(2**63)]) == 2  # past any row id: told, not a traceback
    assert capsys.readouterr().err.strip() == f"tierup: redrive: no delivery with id 999, {2**63}"


def test_redrive_leaves_a_delivery_a_worker_is_running(
    history: SignedAdapter, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = runtime_here(history)
    assert runtime.inbox.requeue([3], now=T0) == [3]
    assert runtime.inbox.claim(3, T0, by="a-running-worker") is not None
    runtime.close()
    assert main(["redrive", "3"]) == 2  # queued again, a second worker could run it at the same time
    assert "delivery 3 is being run by a worker now" in capsys.readouterr().err
    runtime = runtime_here(history)
    row = runtime.inbox.get(3)
    assert row is not None and row.status is DeliveryStatus.PROCESSING
    runtime.close()


def test_redrive_failed(history: SignedAdapter, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["redrive", "--failed"]) == 0
    assert capsys.readouterr().out.strip() == "requeued 1 delivery: 3"
    assert main(["redrive", "--failed"]) == 0
    assert capsys.readouterr().out.strip() == "requeued 0 deliveries"


def test_redrive_with_the_queue_down_says_what_happens_to_them(
    history: SignedAdapter, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration.queue import TaskQueue

    def queue_down(self: TaskQueue, row_id: int) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(TaskQueue, "enqueue", queue_down)
    assert main(["redrive", "--failed"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "tierup: redrive: 3 marked queued, but the queue did not take them (ConnectionError): "
        "the worker's recovery queues them once their 300s lease is over and the queue answers"
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["redrive"], "tierup: redrive: give delivery ids or --failed (not both)"),
        (["redrive", "1", "--failed"], "tierup: redrive: give delivery ids or --failed (not both)"),
        (["redrive", "99"], "tierup: redrive: no delivery with id 99"),
        (["history", "123"], "tierup: history: no escalation for ticket 123"),
        (["history", "4016", "--platform", "jira"], "tierup: history: no escalation for jira ticket 4016"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    history: SignedAdapter, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]


def test_unreachable_database_is_one_line(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://tierup:hunter2@127.0.0.1:1/tierup")
    assert main(["inbox"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tierup: ") and "hunter2" not in err[0]


def test_a_database_a_newer_tierup_upgraded_is_one_line(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    with sqlite3.connect(cwd / "tierup.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    capsys.readouterr()
    for argv in (["inbox"], ["db", "upgrade"], ["history", "1"]):
        assert main(argv) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("tierup: database migrations: ") and "'0099'" in line and "newer" in line


def test_a_queue_file_that_is_not_a_database_is_one_line(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "tierup-queue.db").write_bytes(b"not a database at all " * 100)
    assert main(["inbox"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["tierup: file is not a database"]


@pytest.mark.parametrize(
    "argv",
    [["inbox", "--limit", str(10**20)], ["inbox", "--limit", "0"], ["history", "\udcff\udcfe"], ["history", "a\nb"]],
    ids=["huge limit", "zero limit", "not UTF-8", "two lines"],
)
def test_arguments_out_of_range_are_usage_errors(
    cwd: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_history_prints_the_audit_trail(history: SignedAdapter, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "4016"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "zendesk ticket 4016: 2 transitions"
    assert "LR5   request          - -> escalated  by 501  (dry run)" in lines[1]
    assert "    delivery: zd-1" in lines
    assert "    - assign_group: group=Technical Support Team Leaders" in lines
    assert any("LR7   confirm          escalated -> confirmed  by 900  (dry run)" in line for line in lines)


def test_history_json_is_the_escalation(history: SignedAdapter, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "4016", "--json"]) == 0
    escalation = escalation_from_json(json.loads(capsys.readouterr().out))
    assert escalation.state is State.CONFIRMED
    assert [t.rule for t in escalation.history] == ["LR5", "LR7"]


# --- serve, as the README's first command runs it ---------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start(cwd: Path, *argv: str, settings: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m integration.cli ARGV` in `cwd`, with no helpdesk credentials (only `settings`)."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and not k.startswith(("ZENDESK_", "JIRA_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(settings or {})
    return subprocess.Popen(
        [sys.executable, "-m", "integration.cli", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, wait, and return what the process logged; it must exit cleanly."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err
    for line in err.splitlines():
        json.loads(line)  # every log line is JSON
    return err


def first_log_line(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stderr is not None
    line: dict[str, object] = json.loads(proc.stderr.readline())
    return line


def wait_for_http(proc: subprocess.Popen[str], url: str) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + 30
    while True:
        try:
            return get(url)
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)


@pytest.mark.timeout(60)
def test_serve_answers_health_and_readiness_and_says_dry_run_first(cwd: Path) -> None:
    port = free_port()
    proc = start(cwd, "serve", "--port", str(port))
    try:
        first = first_log_line(proc)
        assert str(first["message"]).startswith("dry-run mode: no helpdesk credentials")
        assert first["dry_run"] is True and first["level"] == "info"
        assert wait_for_http(proc, f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
        assert get(f"http://127.0.0.1:{port}/readyz") == (
            200,
            {"status": "ready", "checks": {"database": "ok", "queue": "ok"}},
        )
        assert (cwd / "tierup.db").exists() and (cwd / "tierup-queue.db").exists()
    finally:
        stop(proc)


@pytest.mark.timeout(60)
def test_serve_takes_more_deliveries_than_the_database_pool_has_connections(cwd: Path) -> None:
    # Its server runs each HTTP connection in a new thread. Threads that ended once kept their
    # inbox connections, so after 15 deliveries every one waited 30 s and got a 503.
    port = free_port()
    dry_run = {"ZENDESK_URL": "https://acme.zendesk.com", "ZENDESK_WEBHOOK_SECRET": SECRET}
    proc = start(cwd, "serve", "--port", str(port), settings=dry_run)
    try:
        wait_for_http(proc, f"http://127.0.0.1:{port}/healthz")
        answers = []
        for n in range(20):  # each on a connection of its own
            body = trigger("request", str(4000 + n))
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/webhooks/zendesk",
                data=body,
                headers=signed_headers(body, f"serve-{n}"),
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append(response.status)
        assert answers == [202] * 20
    finally:
        stop(proc)


@pytest.mark.timeout(60)
def test_web_runs_under_gunicorn(cwd: Path) -> None:
    port = free_port()
    proc = start(cwd, "web", "--port", str(port), "--workers", "1", "--threads", "2")
    try:
        assert str(first_log_line(proc)["message"]).startswith("dry-run mode")
        assert wait_for_http(proc, f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    finally:
        err = stop(proc)
    assert '"logger": "gunicorn.error"' in err  # gunicorn's own lines are JSON too


@pytest.mark.timeout(90)
def test_web_metrics_count_what_every_gunicorn_worker_received(cwd: Path) -> None:
    # Each worker process answers /metrics on the same port; each used to show only its own counts,
    # so a scrape went up and down between 2 and 18 for 20 deliveries.
    port = free_port()
    scratch = cwd / "tmp"
    scratch.mkdir()
    dry_run = {"ZENDESK_URL": "https://acme.zendesk.com", "ZENDESK_WEBHOOK_SECRET": SECRET, "TMPDIR": str(scratch)}
    proc = start(cwd, "web", "--port", str(port), "--workers", "2", "--threads", "2", settings=dry_run)
    try:
        wait_for_http(proc, f"http://127.0.0.1:{port}/healthz")
        for n in range(20):  # a connection each: gunicorn hands them to both workers
            body = trigger("request", str(4100 + n))
            request = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/zendesk", data=body,
                                             headers=signed_headers(body, f"web-{n}"), method="POST")  # fmt: skip
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 202
        seen = set()
        for _ in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text = response.read().decode()
            seen.add(next(line for line in text.splitlines() if line.startswith("tierup_deliveries_received_total{")))
        assert seen == {'tierup_deliveries_received_total{platform="zendesk"} 20.0'}
        assert [p.name.startswith("tierup-metrics-") for p in scratch.iterdir()] == [True]
    finally:
        stop(proc)
    assert list(scratch.iterdir()) == []  # the counts' files go with the server


@pytest.mark.timeout(60)
def test_worker_process_takes_jobs_from_the_queue(cwd: Path) -> None:
    runtime = build_runtime(load_env())  # what the web side of this directory would use
    runtime.database.upgrade()
    recorded = runtime.inbox.record(
        Delivery(Platform.JIRA, "jira-hook-1", {}, b"{}", datetime.now(UTC)),
        kind="jira:issue_updated",
        ticket_ref="SUP-1",
    )
    runtime.tasks.enqueue(recorded.id)

    port = free_port()
    proc = start(cwd, "worker", "--workers", "2", "--metrics-port", str(port))
    try:
        wait_until(lambda: (row := runtime.inbox.get(recorded.id)) is not None and row.status is DeliveryStatus.FAILED)
        # Running apart from the web server, the worker shows what it did on its own port.
        assert wait_for_http(proc, f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            metrics = response.read().decode()
        assert 'tierup_deliveries_failed_total{platform="jira"} 1.0' in metrics
        assert 'tierup_processing_seconds_count{platform="jira"} 1.0' in metrics
        assert 'tierup_inbox_deliveries{status="failed"} 1' in metrics
        with pytest.raises(urllib.error.HTTPError) as refused:  # no receivers, form or dashboard there
            urllib.request.urlopen(f"http://127.0.0.1:{port}/webhooks/jira", data=b"{}", timeout=2)
        assert refused.value.code == 404
    finally:
        stop(proc)
    row = runtime.inbox.get(recorded.id)
    assert row is not None and row.last_error == "jira is not configured on this worker"
    runtime.close()
