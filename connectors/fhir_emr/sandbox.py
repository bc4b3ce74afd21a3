"""A sandbox EMR: the sandbox FHIR server plus SMART Backend Services and conditional writes.

:class:`SandboxEmr` extends :class:`~connectors.fhir_rest.sandbox.SandboxFhirServer` (everything
there still holds: versioned in-memory resources, search, ``Idempotency-Key`` dedupe, misbehaviour
controls, ``/_requests``, ``/_control``, ``/_reset``) with what a real EMR's backend API has::

    with SandboxEmr(token_lifetime=300) as emr:
        emr.register_client("hub", public_key_pem, "system/*.rs system/Patient.cu", kid="k1")
        connector = FhirEmrConnector({"base_url": emr.url, "client_id": "hub", "key_id": "k1",
                                      "private_key": private_key_pem, ...})

As a process (prints the FHIR base URL; runs until SIGTERM or SIGINT)::

    python -m connectors.fhir_emr.sandbox --port 9000 \\
        [--client-id hub --public-key hub.pub.pem --kid k1 --scopes "system/*.cruds"] \\
        [--token-lifetime 300 --rate-limit 100 --rate-window 60]

SMART (``<root>`` = ``http://127.0.0.1:<port>``, ``<base>`` = ``<root>/fhir``):

* ``GET <base>/.well-known/smart-configuration`` - ``token_endpoint`` (``<root>/auth/token``),
  ``private_key_jwt`` with the ``signing_algorithms`` control (RS384, ES384), ``client_credentials``.
  404 when the ``smart_configuration`` control is off (clients fall back to a configured URL).
* ``POST <root>/auth/token`` (form) - ``grant_type=client_credentials``, ``scope``,
  ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and
  ``client_assertion``, which is really verified: a JWT whose ``alg`` is an accepted one and fits
  the registered key (RSA for RS384, P-384 for ES384), ``kid`` naming a registered key of the client
  (a client registered without a kid accepts any), a valid signature, ``iss`` = ``sub`` = a
  registered client_id, ``aud`` = the token URL, ``exp`` not passed and at most 5 minutes ahead,
  a ``jti`` not seen before (remembered until its ``exp``). Failures answer 401 ``invalid_client``
  with an ``error_description`` that says which check failed; a scope beyond the client's
  registered scopes is 400 ``invalid_scope``; other form problems 400 ``invalid_request`` /
  ``unsupported_grant_type``. Success: an opaque bearer token, ``expires_in`` = ``token_lifetime``,
  and the granted ``scope`` (= the requested one). ``token_status_override`` answers every token
  request with that status (``Retry-After`` for 429/503 when ``retry_after`` is set).
* Scopes: ``system/<Type|*>.<perms>`` with SMART v2 permissions (``c r u d s`` in that order) or v1
  ``read`` (= rs), ``write`` (= cud), ``*``. A requested scope is allowed when a registered scope of
  the same or the ``*`` type has all its permissions.

FHIR calls (``/metadata`` excepted) need ``Authorization: Bearer <token issued here, unexpired>``:
401 (``WWW-Authenticate: Bearer error="invalid_token"``) otherwise; 403 when no granted scope allows
the interaction: search ``s``, read/vread ``r``, create (POST) ``c``, update (PUT, either form) ``c``
and ``u`` (an update may create), delete ``d``. ``require_token=False`` turns this off. With
``rate_limit`` = N, each client may make N FHIR requests per ``rate_window`` seconds (fixed
windows); the next get 429 with ``Retry-After`` = the seconds until the window ends. ``status_override``
and the other base controls behave as in the base sandbox (``status_override=429`` plus
``retry_after`` also gives a 429 with ``Retry-After``).

Conditional writes (criteria: ``identifier`` only, ``system|value``, ``|value`` or ``value``, FHIR
escapes ``\\|``, ``\\,``, ``\\$``, ``\\\\``; several ``identifier`` parameters are ANDed):

* ``PUT <base>/<type>?identifier=...`` - no match: create (201; the body's id if it has one, else a
  server id); one match: update it (200; a body id that differs is a 400; ``If-Match`` honoured);
  more: 412. The body must itself carry the identifiers it is matched by (400 otherwise, as HAPI
  does): it catches a client that maps systems in the URL but not in the resource.
* ``POST <base>/<type>`` with ``If-None-Exist: identifier=...`` - no match: create (201); one match:
  nothing written, 200 with the existing resource; more: 412.

Referential integrity (as HAPI with enforce-referential-integrity-on-write): every create or update
(``PUT``/``POST``, conditional or not) whose body has a literal relative reference ``<Type>/<id>``
(``/_history/<v>`` allowed) to a type the sandbox serves that it does not hold is refused with 400,
an OperationOutcome with issue code ``processing`` and diagnostics naming the element, e.g.
``ServiceRequest.subject: Patient/x not found``. Not checked: ``#`` local and ``urn:`` references,
absolute URLs, logical references (``identifier`` only), references inside ``contained`` and a
resource's reference to itself. The ``check_references`` control (default on) turns it off;
``seed()`` never checks.

Discovery and token calls are not in ``requests`` (FHIR calls only): ``token_requests`` records each
token request (client, status, OAuth error and description, scope), ``tokens_issued`` counts the
successes, ``revoke_tokens()`` forgets every issued token (an EMR restart: clients then get 401).

Time (token expiry, assertion ``exp``, ``jti`` memory, rate windows) comes from ``clock`` (Unix
seconds; ``time.time`` unless a test passes a fake). Extra endpoint: ``POST <root>/_clients`` with
``{"client_id", "public_key_pem", "scopes", "kid"?}`` registers a client (process mode).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connectors.fhir_rest.sandbox import (
    _ID,
    DEFAULT_RESOURCE_TYPES,
    PREFIX,
    FhirSandboxControls,
    SandboxFhirServer,
    _is_number,
    _is_status,
    _outcome_reply,
    _plain,
    _Problem,
    _quote,
    _Reply,
)
from connectors.sandboxing import serve_until_signalled

__all__ = [
    "ALGORITHMS",
    "CLIENT_ASSERTION_TYPE",
    "EmrSandboxControls",
    "SandboxEmr",
    "TokenRequest",
    "main",
]

TOKEN_PATH = "/auth/token"
CLIENTS_PATH = "/_clients"
SMART_CONFIGURATION = PREFIX + "/.well-known/smart-configuration"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300  # SMART: exp no more than five minutes in the future

_SCOPE = re.compile(r"(?P<context>system|user|patient)/(?P<type>\*|[A-Z][A-Za-z]{1,63})\.(?P<perms>\S+)")
_V2_PERMS = re.compile(r"c?r?u?d?s?")
_V1_PERMS = {"read": "rs", "write": "cud", "*": "cruds"}
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


# ------------------------------------------------------------------------------------ controls


@dataclass(frozen=True)
class EmrSandboxControls(FhirSandboxControls):
    """The base controls plus the EMR's auth behaviour (see the module docstring)."""

    token_lifetime: float = 300.0  # expires_in of issued tokens, seconds
    token_status_override: int | None = None  # answer every token request with this status
    rate_limit: int | None = None  # FHIR requests per client per rate_window, then 429
    rate_window: float = 60.0
    require_token: bool = True  # FHIR calls need a token issued by the token endpoint
    smart_configuration: bool = True  # serve .well-known/smart-configuration (else 404)
    signing_algorithms: tuple[str, ...] = ALGORITHMS  # accepted client assertion algorithms
    check_references: bool = True  # refuse writes with relative references to resources not held

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _is_number(self.token_lifetime) or not 0 < self.token_lifetime <= 86400:
            raise ValueError("token_lifetime must be a number of seconds in (0, 86400]")
        if self.token_status_override is not None and not _is_status(self.token_status_override):
            raise ValueError("token_status_override must be null or an HTTP status between 200 and 599")
        if self.rate_limit is not None and (
            isinstance(self.rate_limit, bool) or not isinstance(self.rate_limit, int) or self.rate_limit < 0
        ):
            raise ValueError("rate_limit must be null or a non-negative integer")
        if not _is_number(self.rate_window) or not 0 < self.rate_window <= 86400:
            raise ValueError("rate_window must be a number of seconds in (0, 86400]")
        for name in ("require_token", "smart_configuration", "check_references"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")
        algorithms = self.signing_algorithms
        if isinstance(algorithms, str) or not isinstance(algorithms, Iterable):
            raise ValueError("signing_algorithms must be a list")
        algorithms = tuple(algorithms)
        if not algorithms or not set(algorithms) <= set(ALGORITHMS):
            raise ValueError(f"signing_algorithms must be a non-empty subset of {', '.join(ALGORITHMS)}")
        object.__setattr__(self, "signing_algorithms", algorithms)


# --------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TokenRequest:
    """One request to the token endpoint. ``error`` is the OAuth error code (None: token issued)."""

    client_id: str | None
    status: int
    error: str | None
    description: str | None
    scope: str | None
    received_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "status": self.status,
            "error": self.error,
            "description": self.description,
            "scope": self.scope,
            "received_at": self.received_at,
        }


@dataclass(frozen=True)
class _Permission:
    resource_type: str  # a type or "*"
    perms: frozenset[str]

    def covers(self, other: _Permission) -> bool:
        return self.resource_type in ("*", other.resource_type) and other.perms <= self.perms

    def allows(self, resource_type: str, needed: str) -> bool:
        return self.resource_type in ("*", resource_type) and set(needed) <= self.perms


@dataclass
class _Client:
    client_id: str
    keys: dict[str | None, PublicKey]  # kid -> key; None: a key that answers to any kid
    scopes: frozenset[str]
    permissions: tuple[_Permission, ...]


@dataclass(frozen=True)
class _Grant:
    client_id: str
    scope: str
    permissions: tuple[_Permission, ...]
    expires_at: float


@dataclass
class _Window:
    started: float
    count: int = 0


class _OAuthProblem(Exception):
    def __init__(self, status: int, error: str, description: str, headers: Mapping[str, str] | None = None):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = dict(headers or {})


def _invalid_client(description: str) -> _OAuthProblem:
    return _OAuthProblem(401, "invalid_client", description)


# ---------------------------------------------------------------------------------------- server


class SandboxEmr(SandboxFhirServer):
    """The sandbox EMR (see the module docstring). ``start()``/``stop()`` or a context manager."""

    def __init__(
        self,
        port: int = 0,
        *,
        resource_types: Iterable[str] = DEFAULT_RESOURCE_TYPES,
        clock: Callable[[], float] = time.time,
        **controls: Any,
    ) -> None:
        self._clock = clock
        self._clients: dict[str, _Client] = {}
        super().__init__(port, resource_types=resource_types)
        self._initial = EmrSandboxControls().updated(controls)
        self._set_controls(self._initial)

    def start(self) -> SandboxEmr:
        super().start()
        return self

    def __enter__(self) -> SandboxEmr:
        return self.start()

    # --------------------------------------------------------------------------- clients

    @property
    def controls(self) -> EmrSandboxControls:
        return cast(EmrSandboxControls, super().controls)

    @property
    def token_url(self) -> str:
        return self.root + TOKEN_PATH

    def register_client(
        self,
        client_id: str,
        public_key_pem: str | bytes,
        scopes: str | Iterable[str],
        *,
        kid: str | None = None,
    ) -> None:
        """Register (or add a key to) a backend client; ``scopes`` replace its earlier ones."""
        if not isinstance(client_id, str) or not re.fullmatch(r"[\x21-\x7e]{1,255}", client_id):
            raise ValueError("client_id must be 1-255 visible ASCII characters")
        data = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        try:
            key = serialization.load_pem_public_key(data)
        except Exception:
            raise ValueError("public_key_pem must be a PEM public key") from None
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ValueError("the public key must be RSA or EC")
        granted = frozenset(scopes.split() if isinstance(scopes, str) else scopes)
        permissions = tuple(p for p in map(_permission, granted) if p is not None)
        with self._lock:
            client = self._clients.get(client_id)
            keys = dict(client.keys) if client is not None else {}
            keys[kid] = key
            self._clients[client_id] = _Client(client_id, keys, granted, permissions)

    def revoke_tokens(self) -> int:
        """Forget every issued access token (clients then get 401); returns how many there were."""
        with self._lock:
            count = len(self._grants)
            self._grants.clear()
            return count

    @property
    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._token_requests)

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return sum(1 for r in self._token_requests if r.error is None)

    def _clear(self) -> None:  # reset(): forget tokens and records too; registered clients stay
        super()._clear()
        self._grants: dict[str, _Grant] = {}
        self._jtis: dict[tuple[str, str], float] = {}
        self._windows: dict[str, _Window] = {}
        self._token_requests: list[TokenRequest] = []

    def summary(self) -> dict[str, Any]:
        data = super().summary()
        with self._lock:
            data["clients"] = sorted(self._clients)
            data["tokens_issued"] = sum(1 for r in self._token_requests if r.error is None)
            data["token_requests"] = [r.to_json() for r in self._token_requests]
        return data

    # -------------------------------------------------------------------------- handling

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        path = urlsplit(target).path
        try:
            if path.rstrip("/") == SMART_CONFIGURATION:
                return self._smart_configuration(method)
            if path == TOKEN_PATH:
                return self._token_endpoint(method, headers, body)
            if path == CLIENTS_PATH:
                return self._clients_endpoint(method, body)
        except Exception as exc:  # a sandbox bug: answer like a server would
            return _plain(500, {"error": "server_error", "error_description": type(exc).__name__})
        return super().handle(method, target, headers, body)

    def _smart_configuration(self, method: str) -> _Reply:
        if method != "GET":
            return _plain(405, {"error": "use GET"}, {"Allow": "GET"})
        controls = self.controls
        if not controls.smart_configuration:
            return _plain(404, {"error": "not found"})
        return _plain(
            200,
            {
                "token_endpoint": self.token_url,
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": list(controls.signing_algorithms),
                "grant_types_supported": ["client_credentials"],
                "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write"],
                "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
            },
        )

    def _clients_endpoint(self, method: str, body: bytes) -> _Reply:
        if method != "POST":
            return _plain(405, {"error": "use POST"}, {"Allow": "POST"})
        try:
            data = _json_loads(body)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            self.register_client(
                data.get("client_id"),  # type: ignore[arg-type]  # checked by register_client
                data.get("public_key_pem"),  # type: ignore[arg-type]
                data.get("scopes", ""),
                kid=data.get("kid"),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            return _plain(400, {"error": str(exc)})
        return _plain(200, {"registered": data["client_id"]})

    # ---------------------------------------------------------------------- token endpoint

    def _token_endpoint(self, method: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        controls = self.controls
        client_id: str | None = None
        scope: str | None = None
        try:
            if method != "POST":
                raise _OAuthProblem(
                    405, "invalid_request", "the token endpoint takes POST", {"Allow": "POST"}
                )
            if controls.token_status_override is not None:
                status = controls.token_status_override
                extra = {}
                if status in (429, 503) and controls.retry_after is not None:
                    extra["Retry-After"] = _retry_after_text(controls.retry_after)
                raise _OAuthProblem(
                    status, "temporarily_unavailable", "injected by token_status_override", extra
                )
            form = _form(headers, body)
            if form.get("grant_type") != "client_credentials":
                raise _OAuthProblem(400, "unsupported_grant_type", "grant_type must be client_credentials")
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                raise _OAuthProblem(
                    400, "invalid_request", f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
                )
            assertion = form.get("client_assertion")
            if not assertion:
                raise _OAuthProblem(400, "invalid_request", "client_assertion is missing")
            client_id = self._verify_assertion(assertion, controls)
            scope = form.get("scope")
            grant = self._grant(client_id, scope, controls)
        except _OAuthProblem as problem:
            refusal = {"error": problem.error, "error_description": problem.description}
            self._record_token(client_id, problem.status, problem.error, problem.description, scope)
            return _plain(problem.status, refusal, {"Cache-Control": "no-store", **problem.headers})
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._grants[token] = grant
        self._record_token(client_id, 200, None, None, grant.scope)
        lifetime = controls.token_lifetime
        answer: dict[str, Any] = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(lifetime) if float(lifetime).is_integer() else lifetime,
            "scope": grant.scope,
        }
        return _plain(200, answer, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _record_token(
        self,
        client_id: str | None,
        status: int,
        error: str | None,
        description: str | None,
        scope: str | None,
    ) -> None:
        with self._lock:
            self._token_requests.append(
                TokenRequest(client_id, status, error, description, scope, received_at=time.time())
            )

    def _verify_assertion(self, assertion: str, controls: EmrSandboxControls) -> str:
        """The client_id of a valid client assertion; _OAuthProblem(invalid_client) otherwise."""
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _invalid_client("client_assertion is not a JWT") from None
        alg = header.get("alg")
        if alg not in controls.signing_algorithms:
            accepted = ", ".join(controls.signing_algorithms)
            raise _invalid_client(f"alg {_quote(str(alg))} is not accepted (use {accepted})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid_client("the assertion header has no kid")
        iss = unverified.get("iss")
        with self._lock:
            client = self._clients.get(iss) if isinstance(iss, str) else None
        if client is None or not isinstance(iss, str):
            raise _invalid_client("iss is not a registered client_id")
        key = client.keys.get(kid, client.keys.get(None))
        if key is None:
            raise _invalid_client(f"no key with kid {_quote(kid)} is registered for this client")
        if alg == "RS384" and not isinstance(key, rsa.RSAPublicKey):
            raise _invalid_client("alg RS384 does not fit the registered key (not RSA)")
        if alg == "ES384" and not (
            isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
        ):
            raise _invalid_client("alg ES384 does not fit the registered key (not EC P-384)")
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                audience=self.token_url,
                issuer=iss,
                options={
                    "require": ["iss", "sub", "aud", "exp", "jti"],
                    "verify_exp": False,  # checked below against the sandbox clock
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise _invalid_client("signature verification failed: not signed by the registered key") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid_client(f"the assertion has no {exc.claim} claim") from None
        except jwt.InvalidAudienceError:
            raise _invalid_client(f"aud must be the token endpoint URL {self.token_url}") from None
        except jwt.PyJWTError as exc:
            raise _invalid_client(f"invalid client assertion ({type(exc).__name__})") from None
        if claims.get("sub") != iss:
            raise _invalid_client("sub must equal iss (the client_id)")
        exp, jti = claims.get("exp"), claims.get("jti")
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not _is_number(exp):
            raise _invalid_client("exp must be a number")
        if not isinstance(jti, str) or not jti:
            raise _invalid_client("jti must be a non-empty string")
        now = self._clock()
        if exp <= now:
            raise _invalid_client("the client assertion expired (exp is in the past)")
        if exp > now + MAX_ASSERTION_LIFETIME:
            raise _invalid_client("exp is more than 5 minutes in the future")
        with self._lock:
            self._jtis = {k: v for k, v in self._jtis.items() if v > now}
            if (iss, jti) in self._jtis:
                raise _invalid_client("jti was already used: a replayed client assertion")
            self._jtis[(iss, jti)] = float(exp)
        return iss

    def _grant(self, client_id: str, scope: str | None, controls: EmrSandboxControls) -> _Grant:
        if not scope or not scope.strip():
            raise _OAuthProblem(400, "invalid_scope", "scope is required")
        with self._lock:
            client = self._clients[client_id]
        requested = scope.split()
        for token in requested:
            permission = _permission(token)
            if permission is None and _SCOPE.fullmatch(token):
                raise _OAuthProblem(
                    400, "invalid_scope", f"backend services grant system/ scopes only: {_quote(token)}"
                )
            allowed = token in client.scopes or (
                permission is not None and any(p.covers(permission) for p in client.permissions)
            )
            if not allowed:
                raise _OAuthProblem(
                    400, "invalid_scope", f"scope {_quote(token)} is not registered for this client"
                )
        granted = " ".join(dict.fromkeys(requested))
        permissions = tuple(p for p in map(_permission, requested) if p is not None)
        return _Grant(client_id, granted, permissions, self._clock() + controls.token_lifetime)

    # ---------------------------------------------------------------------- FHIR auth

    def _injected(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        key: str | None,
        controls: FhirSandboxControls,
        fail: bool,
    ) -> _Reply | None:
        emr_controls = cast(EmrSandboxControls, controls)
        if (
            controls.status_override is None
            and emr_controls.require_token
            and path.rstrip("/") != PREFIX + "/metadata"
        ):
            rejected = self._authorize(method, path, headers, emr_controls)
            if rejected is not None:
                return rejected
        return super()._injected(method, path, headers, key, controls, fail)

    def _authorize(
        self, method: str, path: str, headers: Mapping[str, str], controls: EmrSandboxControls
    ) -> _Reply | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        now = self._clock()
        with self._lock:
            grant = self._grants.get(token) if scheme.lower() == "bearer" and token else None
        if grant is None or grant.expires_at <= now:
            if not token:
                reason, challenge = "missing bearer token", 'Bearer realm="fhir"'
            elif grant is None:
                reason = "unknown or revoked access token"
                challenge = 'Bearer realm="fhir", error="invalid_token"'
            else:
                reason = "the access token expired"
                challenge = 'Bearer realm="fhir", error="invalid_token"'
            problem = _Problem(401, "login", reason, {"WWW-Authenticate": challenge})
            return replace(_outcome_reply(problem), outcome="rejected")
        interaction = _interaction(method, path, self.resource_types)
        if interaction is not None:
            resource_type, needed, label = interaction
            if not any(p.allows(resource_type, needed) for p in grant.permissions):
                problem = _Problem(
                    403,
                    "forbidden",
                    f"the granted scopes do not allow {label} of {resource_type} "
                    f"(needs system/{resource_type}.{needed})",
                    {"WWW-Authenticate": 'Bearer realm="fhir", error="insufficient_scope"'},
                )
                return replace(_outcome_reply(problem), outcome="rejected")
        if controls.rate_limit is not None:
            with self._lock:
                window = self._windows.get(grant.client_id)
                if window is None or now >= window.started + controls.rate_window:
                    window = self._windows[grant.client_id] = _Window(started=now)
                window.count += 1
                over = window.count > controls.rate_limit
                wait = max(1, math.ceil(window.started + controls.rate_window - now))
            if over:
                problem = _Problem(
                    429,
                    "throttled",
                    f"rate limit of {controls.rate_limit} requests exceeded",
                    {"Retry-After": str(wait)},
                )
                return replace(_outcome_reply(problem), outcome="rejected")
        return None

    # ----------------------------------------------------------- referential integrity

    def _parse_body(self, resource_type: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        data = super()._parse_body(resource_type, headers, body)
        if self.controls.check_references:
            itself = (resource_type, data.get("id"))
            with self._lock:
                for path, target_type, target_id in _literal_references(data, resource_type):
                    if target_type not in self.resource_types or (target_type, target_id) == itself:
                        continue
                    if target_id not in self._current.get(target_type, {}):
                        raise _Problem(400, "processing", f"{path}: {target_type}/{target_id} not found")
        return data

    # ---------------------------------------------------------------- conditional writes

    def _route(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, key: str | None
    ) -> _Reply:
        if path.startswith(PREFIX + "/"):
            segments = [unquote(s) for s in path[len(PREFIX) :].strip("/").split("/") if s]
            if len(segments) == 1 and segments[0] in self.resource_types:
                resource_type = segments[0]
                if method == "PUT":
                    update = partial(self._conditional_update, resource_type, query, headers, body)
                    return self._idempotent(method, f"{path}?{query}", body, key, update)
                condition = headers.get("if-none-exist")
                if method == "POST" and condition is not None:
                    create = partial(self._conditional_create, resource_type, condition, headers, body)
                    return self._idempotent(method, f"{path}?{condition}", body, key, create)
        return super()._route(method, path, query, headers, body, key)

    def _matching(
        self, resource_type: str, criteria: Sequence[tuple[str | None, str]]
    ) -> list[dict[str, Any]]:
        """Current resources matching every criterion (lock held)."""
        return [
            r
            for r in self._current.get(resource_type, {}).values()
            if all(_has_identifier(r, system, value) for system, value in criteria)
        ]

    def _conditional_update(
        self, resource_type: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        criteria = _criteria(query, "conditional update")
        data = self._parse_body(resource_type, headers, body)
        if not all(_has_identifier(data, system, value) for system, value in criteria):
            raise _Problem(
                400, "processing", "the resource does not carry the identifier(s) of the conditional URL"
            )
        resource_id = data.get("id")
        with self._lock:
            matches = self._matching(resource_type, criteria)
            if len(matches) > 1:
                raise _Problem(
                    412, "multiple-matches", f"{len(matches)} {resource_type} resources match the criteria"
                )
            if matches:
                current = matches[0]
                if resource_id is not None and resource_id != current["id"]:
                    raise _Problem(
                        400, "invalid", "the resource id differs from the id of the matching resource"
                    )
                if_match = headers.get("if-match")
                if if_match is not None:
                    wanted = if_match.strip().removeprefix("W/").strip('"')
                    if current["meta"]["versionId"] != wanted:
                        raise _Problem(412, "conflict", "If-Match does not name the current version")
                stored, _ = self._write(resource_type, current["id"], data)
                return self._resource_reply(200, stored)
            if resource_id is None:
                resource_id = self._new_id()
            elif not isinstance(resource_id, str) or not _ID.fullmatch(resource_id):
                raise _Problem(400, "value", "invalid resource id")
            elif resource_id in self._current.get(resource_type, {}):
                raise _Problem(409, "conflict", f"{resource_type}/{resource_id} exists but does not match")
            stored, _ = self._write(resource_type, resource_id, data)
            return self._resource_reply(201, stored)

    def _conditional_create(
        self, resource_type: str, condition: str, headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        criteria = _criteria(condition.split("?", 1)[-1], "If-None-Exist")
        data = self._parse_body(resource_type, headers, body)
        with self._lock:
            matches = self._matching(resource_type, criteria)
            if len(matches) > 1:
                raise _Problem(
                    412, "multiple-matches", f"{len(matches)} {resource_type} resources match If-None-Exist"
                )
            if matches:
                return self._resource_reply(200, matches[0])
            stored, _ = self._write(resource_type, self._new_id(), data)
            return self._resource_reply(201, stored)


# --------------------------------------------------------------------------------------- helpers


def _permission(scope: str) -> _Permission | None:
    """The permission of a ``system/`` scope; None for other contexts and non-resource scopes."""
    match = _SCOPE.fullmatch(scope)
    if match is None or match["context"] != "system":
        return None
    perms = _V1_PERMS.get(match["perms"])
    if perms is None:
        perms = match["perms"]
        if not perms or not _V2_PERMS.fullmatch(perms):
            return None
    return _Permission(match["type"], frozenset(perms))


def _interaction(method: str, path: str, types: frozenset[str]) -> tuple[str, str, str] | None:
    """(resource type, SMART permissions needed, label) of a FHIR request; None: not type-level."""
    if not path.startswith(PREFIX + "/"):
        return None
    segments = [s for s in path[len(PREFIX) :].strip("/").split("/") if s]
    if not segments or segments[0] not in types:
        return None
    resource_type = segments[0]
    if method == "GET":
        return (resource_type, "s", "search") if len(segments) == 1 else (resource_type, "r", "read")
    if method == "POST" and len(segments) == 1:
        return resource_type, "c", "create"
    if method == "PUT":
        return resource_type, "cu", "update"
    if method == "DELETE":
        return resource_type, "d", "delete"
    return None


def _criteria(query: str, what: str) -> list[tuple[str | None, str]]:
    """``identifier`` criteria of a conditional interaction as (system or None, value)."""
    params = parse_qsl(query, keep_blank_values=True)
    if not params:
        raise _Problem(400, "invalid", f"{what} needs identifier criteria")
    unknown = sorted({name for name, _ in params if name != "identifier"})
    if unknown:
        raise _Problem(
            400, "not-supported", f"{what} supports identifier only (not {', '.join(map(_quote, unknown))})"
        )
    return [_split_token(value, what) for _, value in params]


def _split_token(text: str, what: str) -> tuple[str | None, str]:
    """``system|value`` with FHIR escapes -> (system, value); ``value`` -> (None, value)."""
    parts: list[str] = [""]
    escaped = False
    for char in text:
        if escaped:
            parts[-1] += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|" and len(parts) == 1:
            parts.append("")
        elif char in ",|$":
            raise _Problem(
                400, "not-supported", f"{what}: unescaped {char!r} (several values are not supported)"
            )
        else:
            parts[-1] += char
    if escaped:
        raise _Problem(400, "value", f"{what}: a trailing backslash")
    value = parts[-1]
    if not value:
        raise _Problem(400, "value", f"{what}: an identifier criterion needs a value")
    return (parts[0], value) if len(parts) == 2 else (None, value)


def _has_identifier(resource: Mapping[str, Any], system: str | None, value: str) -> bool:
    """An exact match: ``system`` None matches any system, "" only identifiers without one."""
    identifiers = resource.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if not isinstance(identifier, dict) or identifier.get("value") != value:
            continue
        if system is None or (identifier.get("system") or "") == system:
            return True
    return False


_RELATIVE_REFERENCE = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


def _literal_references(node: Any, path: str) -> Iterator[tuple[str, str, str]]:
    """(element path, type, id) of each relative literal reference, ``contained`` and narrative skipped."""
    if isinstance(node, list):
        for item in node:
            yield from _literal_references(item, path)
    elif isinstance(node, dict):
        text = node.get("reference")
        match = _RELATIVE_REFERENCE.fullmatch(text) if isinstance(text, str) else None
        if match is not None:
            yield path, match[1], match[2]
        for key, value in node.items():
            if key not in ("contained", "text", "reference"):
                yield from _literal_references(value, f"{path}.{key}")


def _form(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _OAuthProblem(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise _OAuthProblem(400, "invalid_request", "the body is not a form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise _OAuthProblem(400, "invalid_request", f"parameter {_quote(name)} repeated")
        form[name] = value
    return form


def _retry_after_text(value: float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json_loads(body: bytes) -> Any:
    return json.loads(body or b"{}")


# --------------------------------------------------------------------------------------- process


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.fhir_emr.sandbox",
        description="Sandbox FHIR R4 EMR with SMART Backend Services on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--client-id", default=None, help="register this backend client")
    parser.add_argument("--public-key", type=Path, default=None, help="its PEM public key file")
    parser.add_argument("--kid", default=None, help="its key id (default: any)")
    parser.add_argument("--scopes", default="system/*.cruds", help="its registered scopes")
    parser.add_argument("--token-lifetime", type=float, default=300.0)
    parser.add_argument("--rate-limit", type=int, default=None)
    parser.add_argument("--rate-window", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument(
        "--no-check-references", action="store_true", help="accept references to resources it does not hold"
    )
    args = parser.parse_args(argv)
    if (args.client_id is None) != (args.public_key is None):
        parser.error("--client-id and --public-key go together")
    try:
        emr = SandboxEmr(
            port=args.port,
            token_lifetime=args.token_lifetime,
            rate_limit=args.rate_limit,
            rate_window=args.rate_window,
            seed=args.seed,
            fail_rate=args.fail_rate,
            check_references=not args.no_check_references,
        )
        if args.client_id is not None:
            emr.register_client(args.client_id, args.public_key.read_bytes(), args.scopes, kid=args.kid)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))

    return serve_until_signalled(emr)


if __name__ == "__main__":
    sys.exit(main())
