"""SMART Backend Services authentication (HL7 SMART App Launch v2, "Backend Services").

A backend client has no user: it proves who it is with a short-lived JWT signed by its private key
(``private_key_jwt``, RFC 7523) and gets an access token for the ``system/...`` scopes the EMR
registered for it::

    GET  <fhir base>/.well-known/smart-configuration          -> {"token_endpoint": ..., ...}
    POST <token endpoint>
         Content-Type: application/x-www-form-urlencoded
         grant_type=client_credentials
         &scope=system/*.rs system/Patient.cu ...
         &client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
         &client_assertion=<JWT>
    -> {"access_token": "...", "token_type": "bearer", "expires_in": 300, "scope": "..."}

The client assertion: header ``{"alg": "RS384"|"ES384", "kid": <key_id>, "typ": "JWT"}``; claims
``iss`` = ``sub`` = client_id, ``aud`` = the token endpoint URL, ``exp`` = now + 4 minutes (the
specification allows at most 5; one minute of margin for clock skew), ``jti`` = 128 random bits
(servers refuse a replayed ``jti``).

Token endpoint: discovered once per :class:`SmartBackendAuth` from
``<base>/.well-known/smart-configuration``; the configured ``token_url`` is the fallback when
discovery fails (no document, not JSON, no ``token_endpoint``, or the server is unreachable). A
discovered endpoint must use https, or http when the FHIR base does (a loopback sandbox). When the
document lists ``token_endpoint_auth_signing_alg_values_supported`` without our algorithm, that is a
:class:`~connectors.base.ConfigError` before any key is used.

Caching: the access token is reused until ``min(60 s, 10 % of expires_in)`` before it expires (a
request never leaves with a token about to lapse); :meth:`SmartBackendAuth.refresh` drops it (the
connector calls it after a 401 and retries once). Thread-safe: one token request at a time.

Errors (see :mod:`connectors.base`): the token endpoint refusing us (``invalid_client``,
``invalid_scope``, ``invalid_grant``..., any 4xx other than 408/429) -> :class:`AuthError` quoting
the OAuth ``error`` and ``error_description``; 408, 429, 5xx, timeouts, refused connections ->
:class:`TransientError` (``retry_after`` from ``Retry-After``); a 200 without a usable bearer token
-> :class:`AuthError`. The private key, the assertion and the tokens never appear in a message or a
``repr``; nothing here logs.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr

from connectors.base import AuthError, ConfigError, ConnectorError, TransientError
from connectors.httputil import (
    excerpt,
    is_transient_status,
    ms_since,
    parse_retry_after,
    read_capped,
    safe_target,
    translate_transport_error,
)
from mappings.fhir import jsonio

__all__ = [
    "ASSERTION_LIFETIME",
    "CLIENT_ASSERTION_TYPE",
    "SMART_CONFIGURATION_PATH",
    "Algorithm",
    "SmartBackendAuth",
    "load_private_key",
]

Algorithm = Literal["RS384", "ES384"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SMART_CONFIGURATION_PATH = "/.well-known/smart-configuration"
ASSERTION_LIFETIME = 240  # seconds; SMART allows at most 300
MIN_RSA_BITS = 2048

_REFRESH_MARGIN = 60.0  # seconds before expiry at which a cached token is replaced ...
_REFRESH_SHARE = 0.1  # ... or this share of its lifetime, whichever is smaller
_DEFAULT_EXPIRES_IN = 300.0  # when the server does not say (SMART: expires_in SHALL be present)
_MAX_EXPIRES_IN = 24 * 3600.0
_RESPONSE_LIMIT = 64 * 1024
_DESCRIPTION_CHARS = 160
_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,8192}")
_OAUTH_ERROR = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 error codes
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-.~+/=]{40,}")  # anything that could be a JWT or token
_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError)


def load_private_key(pem: str | bytes, algorithm: Algorithm) -> PrivateKey:
    """The private key of a PEM text, checked against ``algorithm``. ValueError (no key material).

    Parsed keys are cached per (PEM, algorithm): cryptography validates an RSA key on load (~50 ms),
    and a worker builds a connector (config validation, then auth) for every delivery.
    """
    return _load_private_key(pem.encode() if isinstance(pem, str) else pem, algorithm)


@lru_cache(maxsize=64)
def _load_private_key(data: bytes, algorithm: Algorithm) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except Exception:  # ValueError, TypeError, UnsupportedAlgorithm; never chained (may describe the key)
        raise ValueError("private_key must be an unencrypted PEM private key") from None
    if algorithm == "RS384":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("RS384 needs an RSA private key")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RS384 needs an RSA key of at least {MIN_RSA_BITS} bits")
        return key
    if algorithm == "ES384":
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
            raise ValueError("ES384 needs an EC private key on curve P-384")
        return key
    raise ValueError("algorithm must be RS384 or ES384")


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # clock() value after which the token is not used any more


class SmartBackendAuth:
    """:class:`~connectors.fhir_rest.FhirAuth` for SMART Backend Services (see the module docstring).

    ``client`` is the connector's ``httpx.Client`` (same timeouts, TLS settings and transport);
    ``clock`` returns Unix seconds (tests pass a fake one).
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        fhir_base: str,
        client_id: str,
        private_key: SecretStr | str | PrivateKey,
        key_id: str,
        algorithm: Algorithm = "RS384",
        scope: str,
        token_url: str | None = None,
        timeout: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(private_key, SecretStr):
            private_key = private_key.get_secret_value()
        if isinstance(private_key, str):
            private_key = load_private_key(private_key, algorithm)
        self._client = client
        self._base = fhir_base.rstrip("/")
        self._client_id = client_id
        self._key = private_key
        self._key_id = key_id
        self._algorithm = algorithm
        self._scope = scope
        self._configured_token_url = token_url
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self._token_url: str | None = None
        self.token_requests = 0  # how many tokens were requested (observability, tests)

    def __repr__(self) -> str:
        return (
            f"SmartBackendAuth(target={safe_target(self._base)!r}, client_id={self._client_id!r}, "
            f"key_id={self._key_id!r}, algorithm={self._algorithm!r})"
        )

    # -------------------------------------------------------------------------- FhirAuth

    def headers(self) -> Mapping[str, str]:
        with self._lock:
            token = self._token
            if token is None or self._clock() >= token.renew_at:
                self._token = None
                token = self._token = self._fetch_token()
            return {"Authorization": f"Bearer {token.value}"}

    def refresh(self) -> bool:
        with self._lock:
            self._token = None
        return True  # a new token may be accepted (the connector retries only once)

    # ------------------------------------------------------------------------- discovery

    @property
    def token_url(self) -> str:
        """The token endpoint (discovered on first use). Raises ConnectorError."""
        if self._token_url is None:
            self._token_url = self._discover()
        return self._token_url

    def _discover(self) -> str:
        url = self._base + SMART_CONFIGURATION_PATH
        what = f"SMART configuration GET {safe_target(self._base)}"
        started = time.perf_counter()
        problem: ConnectorError
        try:
            with self._client.stream("GET", url, headers={"Accept": "application/json"}) as response:
                body, complete = read_capped(response, _RESPONSE_LIMIT)
        except _TRANSPORT_ERRORS as exc:
            problem = translate_transport_error(
                exc, what=what, timeout=self._timeout, duration_ms=ms_since(started)
            )
        else:
            status = response.status_code
            document = _json_object(body) if complete and status == 200 else None
            endpoint = document.get("token_endpoint") if document is not None else None
            if isinstance(endpoint, str) and endpoint:
                assert document is not None
                self._check_algorithms(document, what)
                return self._checked_token_url(endpoint, f"{what}: token_endpoint")
            if is_transient_status(status):
                problem = TransientError(
                    f"{what} -> {status}",
                    status=status,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            elif status == 200:
                problem = ConfigError(f"{what} -> 200 without a token_endpoint; set token_url")
            else:
                problem = ConfigError(f"{what} -> {status}: no SMART configuration; set token_url")
        if self._configured_token_url is not None:
            return self._configured_token_url
        raise problem

    def _check_algorithms(self, document: Mapping[str, Any], what: str) -> None:
        supported = document.get("token_endpoint_auth_signing_alg_values_supported")
        if isinstance(supported, list) and supported and self._algorithm not in supported:
            offered = ", ".join(excerpt(a, 20) for a in supported[:8] if isinstance(a, str))
            raise ConfigError(
                f"{what}: the server does not accept {self._algorithm} client assertions "
                f"(it lists {offered or 'none'}); change algorithm and key",
                fields=["algorithm"],
            )

    def _checked_token_url(self, url: str, what: str) -> str:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise ConfigError(f"{what} is not a valid URL") from None
        allowed = {"https", "http"} if httpx.URL(self._base).scheme == "http" else {"https"}
        if not parsed.host or parsed.scheme not in allowed:
            raise ConfigError(f"{what} must be an https URL ({safe_target(url)} is not)")
        return url

    # ----------------------------------------------------------------------------- token

    def _assertion(self, token_url: str) -> str:
        now = int(self._clock())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": token_url,
            "exp": now + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(16),
        }
        headers = {"kid": self._key_id, "typ": "JWT"}
        return jwt.encode(claims, self._key, algorithm=self._algorithm, headers=headers)

    def _fetch_token(self) -> _Token:
        token_url = self.token_url
        what = f"SMART token request to {safe_target(token_url)}"
        assertion = self._assertion(token_url)
        form = {
            "grant_type": "client_credentials",
            "scope": self._scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        self.token_requests += 1
        started = time.perf_counter()
        requested_at = self._clock()
        try:
            with self._client.stream(
                "POST", token_url, data=form, headers={"Accept": "application/json"}
            ) as response:
                body, complete = read_capped(response, _RESPONSE_LIMIT)
        except _TRANSPORT_ERRORS as exc:
            raise translate_transport_error(
                exc, what=what, timeout=self._timeout, duration_ms=ms_since(started)
            ) from None
        status = response.status_code
        duration = ms_since(started)
        document = _json_object(body) if complete else None
        if status != 200:
            message = f"{what} -> {status} {_oauth_error(document, assertion)}".rstrip()
            if is_transient_status(status):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise TransientError(message, status=status, retry_after=retry_after, duration_ms=duration)
            if 300 <= status <= 399:
                message += " (redirects are not followed: check token_url)"
            raise AuthError(message, status=status, duration_ms=duration)
        if document is None:
            raise AuthError(f"{what} -> 200 but no JSON object", status=status, duration_ms=duration)
        value = document.get("access_token")
        token_type = document.get("token_type")
        if not isinstance(value, str) or not _HEADER_SAFE.fullmatch(value):
            raise AuthError(
                f"{what} -> 200 without a usable access_token", status=status, duration_ms=duration
            )
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise AuthError(
                f"{what} -> 200 but token_type is not bearer", status=status, duration_ms=duration
            )
        lifetime = _seconds(document.get("expires_in"))
        margin = min(_REFRESH_MARGIN, lifetime * _REFRESH_SHARE)
        return _Token(value=value, renew_at=requested_at + lifetime - margin)


# ------------------------------------------------------------------------------------ helpers


def _seconds(value: object) -> float:
    """``expires_in`` as seconds; the default when it is absent or not a positive number."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return _DEFAULT_EXPIRES_IN
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        return _DEFAULT_EXPIRES_IN
    return min(seconds, _MAX_EXPIRES_IN)


def _json_object(body: bytes) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        value = jsonio.loads(body)
    except (jsonio.InvalidJson, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _oauth_error(document: Mapping[str, Any] | None, assertion: str) -> str:
    """``error: error_description`` of an OAuth error answer, scrubbed of anything token-like."""
    if document is None:
        return ""
    code = document.get("error")
    text = excerpt(code, 64) if isinstance(code, str) and _OAUTH_ERROR.fullmatch(code) else "error"
    description = document.get("error_description")
    if isinstance(description, str) and description.strip():
        cleaned = description.replace(assertion, "[redacted]")
        cleaned = _LONG_TOKEN.sub("[redacted]", cleaned)
        text += ": " + excerpt(cleaned, _DESCRIPTION_CHARS)
    return text
