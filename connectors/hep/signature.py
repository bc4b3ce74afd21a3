"""HEP vendor webhook signatures (see the vendor contract): ``X-HEP-Signature: t=<unix seconds>,v1=<hex>``.

``v1`` is the hex HMAC-SHA256, keyed with the webhook secret, of ``f"{t}.".encode() + raw body``.
A webhook is accepted when one ``v1`` value matches (several are allowed: secret rotation) and
``|now - t| <= 300`` seconds. The event id is the signed body's ``id``; an ``X-HEP-Event-Id`` header
that names another id is refused (the header itself is not signed).

:func:`verify_webhook` is pure (``now`` is passed in) and raises a :class:`SignatureError` saying
which rule failed, never quoting the body:

* :class:`MalformedSignature` - the header is missing or not ``t=..,v1=..``, or the body is no JSON
  object with a string ``id``, or the id header disagrees with it;
* :class:`BadSignature` - no ``v1`` value matches (wrong secret, tampered body or timestamp);
* :class:`StaleSignature` - the signature is right but ``t`` is outside the window (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping

from pydantic import SecretStr

__all__ = [
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "TOLERANCE_SECONDS",
    "BadSignature",
    "MalformedSignature",
    "SignatureError",
    "StaleSignature",
    "sign",
    "signature_header",
    "verify_webhook",
]

SIGNATURE_HEADER = "X-HEP-Signature"
EVENT_ID_HEADER = "X-HEP-Event-Id"
TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,255}")


class SignatureError(ValueError):
    """A webhook refused by its signature. ``reason``: ``malformed``, ``bad_signature`` or ``stale``."""

    reason = "invalid"


class MalformedSignature(SignatureError):
    reason = "malformed"


class BadSignature(SignatureError):
    reason = "bad_signature"


class StaleSignature(SignatureError):
    reason = "stale"


def _key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: str | bytes | SecretStr, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body``."""
    return hmac.new(_key(secret), f"{int(timestamp)}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes | SecretStr, timestamp: int, body: bytes) -> str:
    """The ``X-HEP-Signature`` value: ``t=<timestamp>,v1=<hex>``."""
    return f"t={int(timestamp)},v1={sign(secret, timestamp, body)}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise MalformedSignature(f"{SIGNATURE_HEADER}: expected t=<unix seconds>,v1=<hex>")
        if name == "t":
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                raise MalformedSignature(f"{SIGNATURE_HEADER}: t must be one unix timestamp in seconds")
            timestamp = int(value)
        elif name == "v1":
            if not _HEX.fullmatch(value):
                raise MalformedSignature(f"{SIGNATURE_HEADER}: v1 must be 64 hex digits")
            candidates.append(value.lower())
        # other schemes (v0, future ones) are ignored
    if timestamp is None:
        raise MalformedSignature(f"{SIGNATURE_HEADER}: no t= timestamp")
    if not candidates:
        raise MalformedSignature(f"{SIGNATURE_HEADER}: no v1= signature")
    return timestamp, candidates


def verify_webhook(
    secret: str | bytes | SecretStr,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: float = TOLERANCE_SECONDS,
) -> str:
    """The event id of a correctly signed, fresh webhook; raises :class:`SignatureError` otherwise.

    ``headers``: the request headers (names in any case); ``body``: the raw body bytes as received;
    ``now``: the current unix time."""
    header = _header(headers, SIGNATURE_HEADER)
    if header is None or not header.strip():
        raise MalformedSignature(f"{SIGNATURE_HEADER} header missing")
    timestamp, candidates = _parse(header)
    expected = sign(secret, timestamp, body).encode("ascii")
    valid = False
    for candidate in candidates:  # every candidate compared, in constant time
        valid |= hmac.compare_digest(expected, candidate.encode("ascii"))
    if not valid:
        raise BadSignature(f"{SIGNATURE_HEADER}: signature does not match the body")
    if abs(now - timestamp) > tolerance_seconds:
        raise StaleSignature(
            f"{SIGNATURE_HEADER}: timestamp {abs(now - timestamp):.0f} s away from now "
            f"(at most {tolerance_seconds:g} s)"
        )
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedSignature("body: not JSON") from None
    event_id = document.get("id") if isinstance(document, dict) else None
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        raise MalformedSignature("body.id: an event id (1-255 visible ASCII characters) is required")
    named = _header(headers, EVENT_ID_HEADER)
    if named is not None and named.strip() != event_id:
        raise MalformedSignature(f"{EVENT_ID_HEADER}: does not match the signed body.id")
    return event_id
