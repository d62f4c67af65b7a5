"""Is a delivery from our Jira? The admin webhook's HMAC signature, or (Data Center, when configured) a URL token."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from integration.ports import SignatureError

SIGNATURE_HEADER = "X-Hub-Signature"
URL_TOKEN_PARAMETER = "token"
_PREFIX = "sha256="


class JiraSignatureError(SignatureError):
    """A Jira delivery whose signature or URL token does not verify (answered 401)."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value looked up case-insensitively (HTTP names are), or None."""
    value = headers.get(name)  # a case-insensitive mapping (werkzeug, HeaderMap) answers at once
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def verify_signature(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
    """Raise JiraSignatureError unless `X-Hub-Signature: sha256=<hex>` is the HMAC of `body` under one of `secrets`."""
    if not secrets:
        raise JiraSignatureError("no Jira webhook secret is configured (JIRA_WEBHOOK_SECRET)")
    given = header(headers, SIGNATURE_HEADER)
    if given is None:
        raise JiraSignatureError(f"missing {SIGNATURE_HEADER} header")
    given = given.strip()
    if not given.lower().startswith(_PREFIX):
        raise JiraSignatureError(f"{SIGNATURE_HEADER} is not sha256=<hex>")
    digest = given[len(_PREFIX) :].lower().encode("ascii", "replace")
    # Every secret is tried (no early exit) so the time taken says nothing about which one matched.
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode("ascii")
        matched |= hmac.compare_digest(expected, digest)
    if not matched:
        raise JiraSignatureError("signature does not match the body")


def verify_url_token(query: Mapping[str, str], configured_token: str | None) -> None:
    """Raise JiraSignatureError unless the `token` query parameter equals the configured token (constant time)."""
    if not configured_token:
        raise JiraSignatureError("URL tokens are not accepted (JIRA_WEBHOOK_URL_TOKEN is not set)")
    given = query.get(URL_TOKEN_PARAMETER)
    if not given:
        raise JiraSignatureError(f"missing {SIGNATURE_HEADER} header and `{URL_TOKEN_PARAMETER}` parameter")
    if not hmac.compare_digest(given.encode("utf-8"), configured_token.encode("utf-8")):
        raise JiraSignatureError("URL token does not match")
