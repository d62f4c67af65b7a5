"""Security: the admin webhook's X-Hub-Signature over the raw body, rotation, and the Data Center URL token."""

from __future__ import annotations

import pytest

from adapters.jira.verify import JiraSignatureError, verify_signature, verify_url_token
from integration.ports import SignatureError
from tests.jira.conftest import ENV, NOW, OLD_SECRET, SECRET, adapter_for, raw, sign

BODY = raw("issue_updated__request_label_added.json")


def test_signature_of_the_raw_body_verifies() -> None:
    verify_signature({"X-Hub-Signature": sign(BODY)}, BODY, (SECRET,))


def test_header_name_is_case_insensitive_and_hex_case_does_not_matter() -> None:
    verify_signature({"x-hub-signature": sign(BODY).upper().replace("SHA256=", "sha256=")}, BODY, (SECRET,))


def test_rotated_secret_still_verifies_while_both_are_configured() -> None:
    adapter = adapter_for("lead-review")
    adapter.verify({"X-Hub-Signature": sign(BODY, OLD_SECRET)}, BODY, {}, NOW)


def test_bad_signature_is_refused() -> None:
    adapter = adapter_for("lead-review")
    with pytest.raises(JiraSignatureError, match="does not match"):
        adapter.verify({"X-Hub-Signature": sign(BODY, "somebody-else")}, BODY, {}, NOW)


def test_signature_over_other_bytes_is_refused() -> None:
    # Re-serialised JSON is not what Jira signed: verification is over the raw bytes.
    tampered = BODY.replace(b"Wrong resolution", b"SLA violation")
    with pytest.raises(JiraSignatureError):
        verify_signature({"X-Hub-Signature": sign(BODY)}, tampered, (SECRET,))


def test_missing_signature_is_refused() -> None:
    adapter = adapter_for("lead-review")
    with pytest.raises(JiraSignatureError, match="missing X-Hub-Signature"):
        adapter.verify({}, BODY, {}, NOW)


@pytest.mark.parametrize("value", ["", "sha1=abcd", "sha256=", "sha256=not-hex-at-all", "d2c7" * 16])
def test_malformed_signature_is_refused(value: str) -> None:
    with pytest.raises(JiraSignatureError):
        verify_signature({"X-Hub-Signature": value}, BODY, (SECRET,))


def test_without_a_configured_secret_nothing_verifies() -> None:
    adapter = adapter_for("lead-review", {**ENV, "JIRA_WEBHOOK_SECRET": ""})
    with pytest.raises(JiraSignatureError, match="no Jira webhook secret"):
        adapter.verify({"X-Hub-Signature": sign(BODY)}, BODY, {}, NOW)


def test_signature_error_is_the_ports_401_error() -> None:
    assert issubclass(JiraSignatureError, SignatureError)


def test_url_token_is_refused_when_not_configured() -> None:
    adapter = adapter_for("lead-review")
    with pytest.raises(JiraSignatureError, match="missing X-Hub-Signature"):
        adapter.verify({}, BODY, {"token": "guess"}, NOW)
    with pytest.raises(JiraSignatureError, match="not accepted"):
        verify_url_token({"token": "guess"}, None)


def test_url_token_is_accepted_when_configured() -> None:
    adapter = adapter_for("lead-review", {**ENV, "JIRA_WEBHOOK_URL_TOKEN": "dc-token-77c1"})
    adapter.verify({}, BODY, {"token": "dc-token-77c1"}, NOW)


@pytest.mark.parametrize("query", [{}, {"token": ""}, {"token": "dc-token-77c"}, {"token": "dc-token-77c1x"}])
def test_wrong_or_missing_url_token_is_refused(query: dict[str, str]) -> None:
    adapter = adapter_for("lead-review", {**ENV, "JIRA_WEBHOOK_URL_TOKEN": "dc-token-77c1"})
    with pytest.raises(JiraSignatureError):
        adapter.verify({}, BODY, query, NOW)


def test_a_bad_signature_is_not_rescued_by_a_good_url_token() -> None:
    adapter = adapter_for("lead-review", {**ENV, "JIRA_WEBHOOK_URL_TOKEN": "dc-token-77c1"})
    with pytest.raises(JiraSignatureError, match="does not match"):
        adapter.verify({"X-Hub-Signature": sign(BODY, "other")}, BODY, {"token": "dc-token-77c1"}, NOW)


def test_delivery_id_is_the_webhook_identifier_in_any_case() -> None:
    adapter = adapter_for("lead-review")
    assert adapter.delivery_id({"x-atlassian-webhook-identifier": " 6f1c-22 "}, BODY) == "6f1c-22"
    assert adapter.delivery_id({"X-Atlassian-Webhook-Identifier": "6f1c-22"}, BODY) == "6f1c-22"
    assert adapter.delivery_id({}, BODY) is None
