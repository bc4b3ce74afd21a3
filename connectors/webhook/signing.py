"""Webhook signatures, scheme ``v1``: HMAC-SHA256 over the timestamp, the Idempotency-Key and the body.

Headers sent with every delivery::

    Idempotency-Key: 9f1c...               (1-255 printable ASCII characters)
    X-Hub-Timestamp: 1718000000            (unix seconds)
    X-Hub-Signature-256: v1=<hex>          (hex HMAC-SHA256, key = the shared secret, of
                                            b"1718000000\\n" + b"9f1c...\\n" + body)

The signed material is ``f"{timestamp}\\n{idempotency_key}\\n".encode("ascii") + body``: a header
value cannot hold a line break, so the three parts cannot be shifted into one another. The key is
signed because receivers dedupe on it: were it not, the same timestamp, signature and body sent
again under a fresh key within the replay window would be accepted as a new message.

Receivers recompute the HMAC over the raw body bytes, compare in constant time and refuse
timestamps outside a replay window. Several ``v1=`` values separated by commas are accepted
(secret rotation: sign with old and new secrets during the changeover). The earlier scheme
(``sha256=`` over timestamp and body only) is no longer produced nor accepted.
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
    "valid_key",
    "verify_signature",
]

TIMESTAMP_HEADER = "X-Hub-Timestamp"
SIGNATURE_HEADER = "X-Hub-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_PREFIX = "v1="
_DIGITS = re.compile(r"[0-9]{1,15}")
_KEY = re.compile(r"[\x20-\x7e]{1,255}")


def _key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def valid_key(idempotency_key: str | None) -> bool:
    """Whether ``idempotency_key`` can be signed: 1-255 printable ASCII characters."""
    return idempotency_key is not None and _KEY.fullmatch(idempotency_key) is not None


def sign(secret: str | bytes | SecretStr, timestamp: int | str, body: bytes, *, idempotency_key: str) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}\\n{idempotency_key}\\n".encode() + body``."""
    if not valid_key(idempotency_key):
        raise ValueError("the Idempotency-Key must be 1-255 printable ASCII characters")
    material = f"{timestamp}\n{idempotency_key}\n".encode("ascii") + body
    return hmac.new(_key(secret), material, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes | SecretStr, timestamp: int | str, body: bytes, *,
                     idempotency_key: str) -> str:
    """The ``X-Hub-Signature-256`` value: ``v1=<hex>``."""
    return SIGNATURE_PREFIX + sign(secret, timestamp, body, idempotency_key=idempotency_key)


def verify_signature(
    secret: str | bytes | SecretStr,
    timestamp: str | int | None,
    body: bytes,
    header: str | None,
    tolerance_seconds: float = 300,
    now: float | None = None,
    *,
    idempotency_key: str | None,
) -> bool:
    """True if ``header`` signs ``timestamp``, ``idempotency_key`` and ``body`` with ``secret`` and the
    timestamp is fresh.

    ``timestamp`` is the ``X-Hub-Timestamp`` value (unix seconds); it must lie within
    ``tolerance_seconds`` of ``now`` (default: the current time) in either direction. The HMAC is
    computed even when the timestamp or key is unusable, so that the time taken says little about
    which check failed.
    """
    raw = "" if timestamp is None else str(timestamp).strip()
    usable = bool(header) and _DIGITS.fullmatch(raw) is not None and valid_key(idempotency_key)
    material = f"{raw}\n{idempotency_key if valid_key(idempotency_key) else ''}\n".encode("ascii", "replace")
    expected = hmac.new(_key(secret), material + body, hashlib.sha256).hexdigest().encode("ascii")
    valid = False
    for candidate in (header or "").split(","):
        candidate = candidate.strip()
        if not candidate.startswith(SIGNATURE_PREFIX):
            continue
        # compare every candidate (no early exit) in constant time
        given = candidate[len(SIGNATURE_PREFIX) :].lower().encode("ascii", "replace")
        valid |= hmac.compare_digest(expected, given)
    if not (usable and valid):
        return False
    current = time.time() if now is None else now
    return abs(current - int(raw)) <= tolerance_seconds
