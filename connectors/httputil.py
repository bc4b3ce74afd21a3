"""Helpers for connectors that speak HTTP (webhook, FHIR EMR, HEP, fax APIs).

They turn an HTTP outcome into the :mod:`connectors.base` error tree so that every HTTP connector
classifies statuses the same way:

* 2xx -> success (the caller builds a ``SendResult``);
* 408, 429, 5xx -> :class:`TransientError` (with ``retry_after`` from ``Retry-After``);
* 401, 403 -> :class:`AuthError`; any other status -> :class:`PermanentError`;
* timeouts, refused or reset connections, TLS failures -> :class:`TransientError`.

Messages carry the status, its standard reason phrase and, from an error response, only coded values
(:func:`coded_reason`: ``OperationOutcome`` issue codes, an OAuth ``error`` code), plus only the scheme,
host and port of the target (webhook paths and query strings often embed secrets). Never the request
payload, and never the free text of a response: a partner that echoes the patient it refused (names,
birth dates, identifiers in a diagnostics text or an HTML page) would otherwise put PHI into the job's
stored error, the dashboard and the logs.
"""

from __future__ import annotations

import email.utils
import http
import json
import re
import ssl
import time
from collections.abc import Iterator
from functools import cache

import httpx

from connectors.base import AuthError, ConfigError, ConnectorError, PermanentError, TransientError

__all__ = [
    "EXCERPT_CHARS",
    "coded_reason",
    "error_for_status",
    "excerpt",
    "is_transient_status",
    "ms_since",
    "parse_retry_after",
    "read_capped",
    "safe_target",
    "shared_ssl_context",
    "translate_transport_error",
]

EXCERPT_CHARS = 200
_UNSAFE = re.compile(r"[^\x20-\x7e]+")
_SPACES = re.compile(r"\s{2,}")


@cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process (certifi CAs). Building one costs ~100 ms, so every
    ``httpx.Client`` of every connector instance shares it."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


def ms_since(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading), to the microsecond."""
    return round((time.perf_counter() - started) * 1000, 3)


def is_transient_status(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date; None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means "-0000"
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def excerpt(body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line, printable-ASCII excerpt suitable for logs and error messages."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = _SPACES.sub(" ", _UNSAFE.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
MAX_CODES = 3


def coded_reason(body: bytes) -> str:
    """The coded reason of a JSON error body, never its free text: the distinct issue codes of an
    ``OperationOutcome`` (e.g. ``"processing, duplicate"``), else an OAuth-style ``error`` code; "" when
    there is none. Codes are checked against a strict pattern, so nothing else slips through."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(document, dict):
        return ""
    if document.get("resourceType") == "OperationOutcome":
        issues = document.get("issue")
        issues = [i for i in issues if isinstance(i, dict)] if isinstance(issues, list) else []
        codes = list(dict.fromkeys(c for i in issues if isinstance(c := i.get("code"), str) and _CODE.fullmatch(c)))
        more = len(codes) - MAX_CODES
        return ", ".join(codes[:MAX_CODES]) + (f" (+{more} more)" if more > 0 else "")
    error = document.get("error")
    return error if isinstance(error, str) and _CODE.fullmatch(error) else ""


def safe_target(url: httpx.URL | str) -> str:
    """``scheme://host[:port]`` only: no user info, path or query (they may hold secrets)."""
    parsed = httpx.URL(str(url))
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def _reason(status: int, server_reason: str | None) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return excerpt(server_reason or "", 60) or "Unknown"


def error_for_status(
    status: int,
    *,
    what: str,
    reason: str | None = None,
    retry_after: str | None = None,
    body: bytes = b"",
    duration_ms: float | None = None,
    now: float | None = None,
) -> ConnectorError | None:
    """The error for a non-2xx status, or None for 2xx. ``what`` names the call, e.g. "POST https://h"."""
    if 200 <= status <= 299:
        return None
    message = f"{what} -> {status} {_reason(status, reason)}"
    code = coded_reason(body)
    if code:
        message += f": {code}"
    if is_transient_status(status):
        return TransientError(
            message,
            status=status,
            retry_after=parse_retry_after(retry_after, now=now),
            duration_ms=duration_ms,
        )
    if status in (401, 403):
        return AuthError(message, status=status, duration_ms=duration_ms)
    if 300 <= status <= 399:
        message += " (redirects are not followed: update the configured URL)"
    return PermanentError(message, status=status, duration_ms=duration_ms)


def translate_transport_error(
    exc: BaseException, *, what: str, timeout: float | None = None, duration_ms: float | None = None
) -> ConnectorError:
    """Map an httpx/socket/TLS exception (no response received) to the error tree."""
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        after = f" after {timeout:g}s" if timeout is not None else ""
        return TransientError(f"{what} timed out{after} ({kind})", duration_ms=duration_ms)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConfigError(f"{what}: invalid URL ({kind})", duration_ms=duration_ms)
    detail = excerpt(str(exc), 120)
    suffix = f": {detail}" if detail else ""
    return TransientError(f"{what} failed ({kind}){suffix}", duration_ms=duration_ms)


def read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes of a streamed response: (bytes, complete). Never raises."""
    chunks: list[bytes] = []
    size = 0
    complete = True
    stream: Iterator[bytes] = response.iter_bytes()
    try:
        for chunk in stream:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                complete = False
                break
    except (httpx.HTTPError, httpx.StreamError, OSError):
        complete = False
    return b"".join(chunks)[:limit], complete
