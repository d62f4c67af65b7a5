"""Zendesk webhook signatures: base64(HMAC-SHA256(secret, timestamp + raw body)), checked before parsing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from integration.ports import SignatureError

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION_HEADER = "X-Zendesk-Webhook-Invocation-Id"

DEFAULT_TOLERANCE_SECONDS = 300


class ZendeskSignatureError(SignatureError):
    """A Zendesk delivery whose signature or timestamp does not verify (answered 401)."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, looked up case-insensitively whatever mapping the caller holds."""
    try:
        value = headers.get(name)  # a case-insensitive mapping (werkzeug, HeaderMap) answers here
    except AttributeError:
        value = None
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def parse_timestamp(value: str) -> datetime:
    """Zendesk's signature timestamp (ISO 8601, `2023-09-18T23:38:13Z`) as an aware datetime."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ZendeskSignatureError("signature timestamp is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ZendeskSignatureError("signature timestamp has no time zone")
    return parsed


def expected_signature(secret: str, timestamp: str, body: bytes) -> bytes:
    """The raw HMAC-SHA256 digest Zendesk signs with `secret` (the header carries it base64-encoded)."""
    return hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256).digest()


def verify_signature(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: datetime,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise ZendeskSignatureError unless one of `secrets` signed `body` at a time within `tolerance` of `now`."""
    if not secrets:
        raise ZendeskSignatureError("no ZENDESK_WEBHOOK_SECRET is configured: every delivery is refused")
    signature = header(headers, SIGNATURE_HEADER)
    timestamp = header(headers, TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise ZendeskSignatureError("missing X-Zendesk-Webhook-Signature or its timestamp header")
    # Replay: a captured delivery is only good for a few minutes, either side (clock skew).
    if abs(now - parse_timestamp(timestamp)) > timedelta(seconds=tolerance):
        raise ZendeskSignatureError(f"signature timestamp is more than {tolerance}s away from now")
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ZendeskSignatureError("signature is not base64") from None
    # Every secret is tried, matched or not, so the time taken says nothing about which one is current.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(expected_signature(secret, timestamp, body), given)
    if not matched:
        raise ZendeskSignatureError("signature does not match")
