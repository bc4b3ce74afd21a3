"""Webhook signatures: HMAC-SHA256 over ``f"{timestamp}.".encode() + body``.

Headers sent with every delivery::

    X-Hub-Timestamp: 1718000000            (unix seconds)
    X-Hub-Signature-256: sha256=<hex>      (hex HMAC-SHA256 of b"1718000000." + body, key = secret)

Receivers recompute the HMAC over the raw body bytes, compare in constant time and refuse
timestamps outside a replay window. Several ``sha256=`` values separated by commas are accepted
(secret rotation: sign with old and new secrets during the changeover).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from pydantic import SecretStr

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_PREFIX",
    "TIMESTAMP_HEADER",
    "sign",
    "signature_header",
    "verify_signature",
]

TIMESTAMP_HEADER = "X-Hub-Timestamp"
SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="
_DIGITS = re.compile(r"[0-9]{1,15}")


def _key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: str | bytes | SecretStr, timestamp: int | str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body``."""
    return hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes | SecretStr, timestamp: int | str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value: ``sha256=<hex>``."""
    return SIGNATURE_PREFIX + sign(secret, timestamp, body)


def verify_signature(
    secret: str | bytes | SecretStr,
    timestamp: str | int | None,
    body: bytes,
    header: str | None,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """True if ``header`` signs ``timestamp`` + ``body`` with ``secret`` and the timestamp is fresh.

    ``timestamp`` is the ``X-Hub-Timestamp`` value (unix seconds); it must lie within
    ``tolerance_seconds`` of ``now`` (default: the current time) in either direction.
    """
    if timestamp is None or not header:
        return False
    raw = str(timestamp).strip()
    if not _DIGITS.fullmatch(raw):
        return False
    current = time.time() if now is None else now
    if abs(current - int(raw)) > tolerance_seconds:
        return False
    expected = sign(secret, raw, body).encode("ascii")
    valid = False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if not candidate.startswith(SIGNATURE_PREFIX):
            continue
        # compare every candidate (no early exit) in constant time
        given = candidate[len(SIGNATURE_PREFIX) :].lower().encode("ascii", "replace")
        valid |= hmac.compare_digest(expected, given)
    return valid
