"""JSON logs: one object per line with the delivery id and ticket ref; secrets never appear."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest

from integration.logs import JsonFormatter, Redactor, configure_logging, log_context, secret_values
from integration.ports import PermanentError
from tests.infra.conftest import MakeRuntime
from tests.infra.fakes import SignedAdapter, request_payload, signed

TOKEN = "zd-api-token-5b0c7e"
WEBHOOK_SECRET = "whsec-rotate-me-0a9f"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """configure_logging into a buffer; the root logger is put back afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    env = {"ZENDESK_API_TOKEN": TOKEN, "ZENDESK_WEBHOOK_SECRET": f"{WEBHOOK_SECRET},older-secret-1234", "PATH": "/bin"}
    configure_logging("INFO", secrets=secret_values(env), stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_is_one_json_object_with_the_context(log_stream: io.StringIO) -> None:
    log = logging.getLogger("tierup.test")
    log.info("outside")
    with log_context(delivery_id="zd-1", ticket_ref="4016"):
        log.warning("inside %s", "both", extra={"attempt": 2})
        with log_context(delivery_id="zd-2"):
            log.info("nested")
    log.info("after")

    out = lines(log_stream)
    assert [(o["message"], o["delivery_id"], o["ticket_ref"]) for o in out] == [
        ("outside", None, None),
        ("inside both", "zd-1", "4016"),
        ("nested", "zd-2", "4016"),
        ("after", None, None),
    ]
    assert out[1]["level"] == "warning" and out[1]["logger"] == "tierup.test" and out[1]["attempt"] == 2
    assert out[0]["ts"].endswith("+00:00")


def test_exceptions_stay_on_one_line(log_stream: io.StringIO) -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("tierup.test").exception("failed")
    [out] = lines(log_stream)
    assert "ValueError: bad\nthing" in out["exception"]


def test_secret_values_come_from_secret_settings_only() -> None:
    found = secret_values(
        {
            "ZENDESK_API_TOKEN": TOKEN,
            "JIRA_PAT": "jira-pat-value",
            "ZENDESK_WEBHOOK_SECRET": "new-secret,old-secret",
            "DATABASE_URL": "postgresql://tierup:db-pass-77@db/tierup",
            "PATH": "/usr/bin",
            "TIERUP_POLICY": "lead-review",
        }
    )
    assert set(found) == {TOKEN, "jira-pat-value", "new-secret", "old-secret", "db-pass-77"}


@pytest.mark.parametrize(("url", "password"), [
    ("postgresql://tierup:Pg@Pass12xyz@127.0.0.1/tierup", "Pg@Pass12xyz"),  # an @ left unencoded
    ("redis://:Redis/Pw-77@cache:6379/0", "Redis/Pw-77"),  # Redis's form: no user, and a /
    ("postgresql://tierup:p%40ss-word@db/tierup", "p%40ss-word"),
])  # fmt: skip
def test_a_url_password_is_a_secret_however_it_is_written(url: str, password: str) -> None:
    found = secret_values({"DATABASE_URL": url})
    assert password in found and unquote(password) in found
    # The driver's error shows what it made of the URL: psycopg's, the rest after the first @ as the host.
    shown = f"failed to resolve host '{password.split('@')[-1]}@127.0.0.1'; url {url}"
    redacted = Redactor(found)(shown)
    assert password not in redacted and password.split("@")[-1] not in redacted


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Basic {TOKEN}",
        "{'Authorization': 'Bearer abc.def.ghi'}",
        "X-Zendesk-Webhook-Signature: c2lnbmF0dXJlCg==",
        "https://agent%40example.com:p4ssw0rd@example.zendesk.com/api/v2",
        f"token={TOKEN}",
        "API-Key: sk_live_4eC39HqLyjWDarjtT1",
        "CLIENT_SECRET=s3cr3t-v4lue",
        '{"Password": "hunter2-hunter2"}',
    ],
)
def test_credentials_are_redacted_whatever_their_value(text: str) -> None:
    redacted = JsonFormatter(Redactor()).format(logging.LogRecord("t", logging.INFO, "", 0, text, None, None))
    for secret in (TOKEN, "abc.def.ghi", "c2lnbmF0dXJlCg==", "p4ssw0rd", "sk_live_4eC39HqLyjWDarjtT1", "s3cr3t-v4lue",
                   "hunter2-hunter2"):  # fmt: skip
        assert secret not in redacted


def test_a_line_without_credentials_is_left_as_it_is() -> None:
    text = "accepted escalation_requested as 4016 (https-less, 12 headers)"
    assert Redactor(["not-in-the-line"])(text) == text


def test_a_whole_delivery_logs_its_ids_and_no_secret(
    log_stream: io.StringIO, make_runtime: MakeRuntime, adapter: SignedAdapter
) -> None:
    runtime = make_runtime(adapter, ZENDESK_API_TOKEN=TOKEN, ZENDESK_WEBHOOK_SECRET=WEBHOOK_SECRET)
    adapter.scripted.failures = [PermanentError(f"401 Unauthorized: token {TOKEN} rejected for {WEBHOOK_SECRET}")]
    body, headers = signed(request_payload("4016"), "zd-secret")
    headers["Authorization"] = f"Bearer {TOKEN}"
    client = runtime.create_app().test_client()
    assert client.post("/webhooks/zendesk", data=body, headers=headers).status_code == 202
    client.post("/webhooks/zendesk", data=body, headers={**headers, "X-Signed-Signature": "f" * 64})
    runtime.tasks.run_pending()

    text = log_stream.getvalue()
    assert TOKEN not in text and WEBHOOK_SECRET not in text and "f" * 64 not in text
    out = lines(log_stream)
    accepted = [o for o in out if o["message"].startswith("accepted")]
    failed = [o for o in out if o["message"].startswith("failed")]
    assert [(o["delivery_id"], o["ticket_ref"]) for o in accepted] == [("zd-secret", "4016")]
    assert [(o["delivery_id"], o["ticket_ref"], o["logger"]) for o in failed] == [
        ("zd-secret", "4016", "tierup.worker")
    ]
    assert "[redacted]" in failed[0]["message"]
    row = runtime.inbox.get(1)  # `tierup inbox` shows the reason: scrubbed there too
    assert row is not None and row.last_error is not None
    assert TOKEN not in row.last_error and WEBHOOK_SECRET not in row.last_error
