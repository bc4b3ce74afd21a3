"""A sandbox EMR: the sandbox FHIR server plus SMART Backend Services and conditional writes.

:class:`SandboxEmr` extends :class:`~sandboxes.fhir.SandboxFhirServer` (everything
there still holds: versioned in-memory resources, search, ``Idempotency-Key`` dedupe, misbehaviour
controls, ``/_requests``, ``/_control``, ``/_reset``) with what a real EMR's backend API has::

    with SandboxEmr(token_lifetime=300) as emr:
        emr.register_client("hub", public_key_pem, "system/*.rs system/Patient.cu", kid="k1")
        connector = FhirEmrConnector({"base_url": emr.url, "client_id": "hub", "key_id": "k1",
                                      "private_key": private_key_pem, ...})

As a process (prints the FHIR base URL; runs until SIGTERM or SIGINT)::

    python -m sandboxes.emr --port 9000 \\
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sandboxes.base import is_number, is_status, serve_until_signalled
from sandboxes.emr_support import (
    ALGORITHMS,
    CLIENT_ASSERTION_TYPE,
    MAX_ASSERTION_LIFETIME,
    SCOPE,
    Client,
    Grant,
    OAuthProblem,
    TokenRequest,
    Window,
    conditional_criteria,
    invalid_client,
    literal_references,
    matches_identifier,
    needed_permission,
    scope_permission,
    token_form,
)
from sandboxes.fhir import FhirSandboxControls, SandboxFhirServer
from sandboxes.fhir_support import (
    DEFAULT_RESOURCE_TYPES,
    PREFIX,
    RESOURCE_ID,
    Problem,
    Reply,
    outcome_reply,
    plain_reply,
    quote,
)

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
        if not is_number(self.token_lifetime) or not 0 < self.token_lifetime <= 86400:
            raise ValueError("token_lifetime must be a number of seconds in (0, 86400]")
        if self.token_status_override is not None and not is_status(self.token_status_override):
            raise ValueError("token_status_override must be null or an HTTP status between 200 and 599")
        if self.rate_limit is not None and (
            isinstance(self.rate_limit, bool) or not isinstance(self.rate_limit, int) or self.rate_limit < 0
        ):
            raise ValueError("rate_limit must be null or a non-negative integer")
        if not is_number(self.rate_window) or not 0 < self.rate_window <= 86400:
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


# ---------------------------------------------------------------------------------------- server


class SandboxEmr(SandboxFhirServer):
    """The sandbox EMR (see the module docstring). ``start()``/``stop()`` or a context manager."""

    controls_class = EmrSandboxControls

    def __init__(
        self,
        port: int = 0,
        *,
        resource_types: Iterable[str] = DEFAULT_RESOURCE_TYPES,
        clock: Callable[[], float] = time.time,
        **controls: Any,
    ) -> None:
        self._clock = clock
        self._clients: dict[str, Client] = {}
        super().__init__(port, resource_types=resource_types, **controls)

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
        permissions = tuple(p for p in map(scope_permission, granted) if p is not None)
        with self._lock:
            client = self._clients.get(client_id)
            keys = dict(client.keys) if client is not None else {}
            keys[kid] = key
            self._clients[client_id] = Client(client_id, keys, granted, permissions)

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
        self._grants: dict[str, Grant] = {}
        self._jtis: dict[tuple[str, str], float] = {}
        self._windows: dict[str, Window] = {}
        self._token_requests: list[TokenRequest] = []

    def summary(self) -> dict[str, Any]:
        data = super().summary()
        with self._lock:
            data["clients"] = sorted(self._clients)
            data["tokens_issued"] = sum(1 for r in self._token_requests if r.error is None)
            data["token_requests"] = [r.to_json() for r in self._token_requests]
        return data

    # -------------------------------------------------------------------------- handling

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply | None:
        path = urlsplit(target).path
        try:
            if path.rstrip("/") == SMART_CONFIGURATION:
                return self._smart_configuration(method)
            if path == TOKEN_PATH:
                return self._token_endpoint(method, headers, body)
            if path == CLIENTS_PATH:
                return self._clients_endpoint(method, body)
        except Exception as exc:  # a sandbox bug: answer like a server would
            return plain_reply(500, {"error": "server_error", "error_description": type(exc).__name__})
        return super().handle(method, target, headers, body)

    def _smart_configuration(self, method: str) -> Reply:
        if method != "GET":
            return plain_reply(405, {"error": "use GET"}, {"Allow": "GET"})
        controls = self.controls
        if not controls.smart_configuration:
            return plain_reply(404, {"error": "not found"})
        return plain_reply(
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

    def _clients_endpoint(self, method: str, body: bytes) -> Reply:
        if method != "POST":
            return plain_reply(405, {"error": "use POST"}, {"Allow": "POST"})
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
            return plain_reply(400, {"error": str(exc)})
        return plain_reply(200, {"registered": data["client_id"]})

    # ---------------------------------------------------------------------- token endpoint

    def _token_endpoint(self, method: str, headers: Mapping[str, str], body: bytes) -> Reply:
        controls = self.controls
        client_id: str | None = None
        scope: str | None = None
        try:
            if method != "POST":
                raise OAuthProblem(
                    405, "invalid_request", "the token endpoint takes POST", {"Allow": "POST"}
                )
            if controls.token_status_override is not None:
                status = controls.token_status_override
                extra = controls.retry_after_headers(status)
                raise OAuthProblem(
                    status, "temporarily_unavailable", "injected by token_status_override", extra
                )
            form = token_form(headers, body)
            if form.get("grant_type") != "client_credentials":
                raise OAuthProblem(400, "unsupported_grant_type", "grant_type must be client_credentials")
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                raise OAuthProblem(
                    400, "invalid_request", f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
                )
            assertion = form.get("client_assertion")
            if not assertion:
                raise OAuthProblem(400, "invalid_request", "client_assertion is missing")
            client_id = self._verify_assertion(assertion, controls)
            scope = form.get("scope")
            grant = self._grant(client_id, scope, controls)
        except OAuthProblem as problem:
            refusal = {"error": problem.error, "error_description": problem.description}
            self._record_token(client_id, problem.status, problem.error, problem.description, scope)
            return plain_reply(problem.status, refusal, {"Cache-Control": "no-store", **problem.headers})
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
        return plain_reply(200, answer, {"Cache-Control": "no-store", "Pragma": "no-cache"})

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
        """The client_id of a valid client assertion; OAuthProblem(invalid_client) otherwise."""
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise invalid_client("client_assertion is not a JWT") from None
        alg = header.get("alg")
        if alg not in controls.signing_algorithms:
            accepted = ", ".join(controls.signing_algorithms)
            raise invalid_client(f"alg {quote(str(alg))} is not accepted (use {accepted})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise invalid_client("the assertion header has no kid")
        iss = unverified.get("iss")
        with self._lock:
            client = self._clients.get(iss) if isinstance(iss, str) else None
        if client is None or not isinstance(iss, str):
            raise invalid_client("iss is not a registered client_id")
        key = client.keys.get(kid, client.keys.get(None))
        if key is None:
            raise invalid_client(f"no key with kid {quote(kid)} is registered for this client")
        if alg == "RS384" and not isinstance(key, rsa.RSAPublicKey):
            raise invalid_client("alg RS384 does not fit the registered key (not RSA)")
        if alg == "ES384" and not (
            isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
        ):
            raise invalid_client("alg ES384 does not fit the registered key (not EC P-384)")
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
            raise invalid_client("signature verification failed: not signed by the registered key") from None
        except jwt.MissingRequiredClaimError as exc:
            raise invalid_client(f"the assertion has no {exc.claim} claim") from None
        except jwt.InvalidAudienceError:
            raise invalid_client(f"aud must be the token endpoint URL {self.token_url}") from None
        except jwt.PyJWTError as exc:
            raise invalid_client(f"invalid client assertion ({type(exc).__name__})") from None
        if claims.get("sub") != iss:
            raise invalid_client("sub must equal iss (the client_id)")
        exp, jti = claims.get("exp"), claims.get("jti")
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not is_number(exp):
            raise invalid_client("exp must be a number")
        if not isinstance(jti, str) or not jti:
            raise invalid_client("jti must be a non-empty string")
        now = self._clock()
        if exp <= now:
            raise invalid_client("the client assertion expired (exp is in the past)")
        if exp > now + MAX_ASSERTION_LIFETIME:
            raise invalid_client("exp is more than 5 minutes in the future")
        with self._lock:
            self._jtis = {k: v for k, v in self._jtis.items() if v > now}
            if (iss, jti) in self._jtis:
                raise invalid_client("jti was already used: a replayed client assertion")
            self._jtis[(iss, jti)] = float(exp)
        return iss

    def _grant(self, client_id: str, scope: str | None, controls: EmrSandboxControls) -> Grant:
        if not scope or not scope.strip():
            raise OAuthProblem(400, "invalid_scope", "scope is required")
        with self._lock:
            client = self._clients[client_id]
        requested = scope.split()
        for token in requested:
            permission = scope_permission(token)
            if permission is None and SCOPE.fullmatch(token):
                raise OAuthProblem(
                    400, "invalid_scope", f"backend services grant system/ scopes only: {quote(token)}"
                )
            allowed = token in client.scopes or (
                permission is not None and any(p.covers(permission) for p in client.permissions)
            )
            if not allowed:
                raise OAuthProblem(
                    400, "invalid_scope", f"scope {quote(token)} is not registered for this client"
                )
        granted = " ".join(dict.fromkeys(requested))
        permissions = tuple(p for p in map(scope_permission, requested) if p is not None)
        return Grant(client_id, granted, permissions, self._clock() + controls.token_lifetime)

    # ---------------------------------------------------------------------- FHIR auth

    def _injected(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        key: str | None,
        controls: FhirSandboxControls,
        fail: bool,
    ) -> Reply | None:
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
    ) -> Reply | None:
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
            problem = Problem(401, "login", reason, {"WWW-Authenticate": challenge})
            return replace(outcome_reply(problem), outcome="rejected")
        interaction = needed_permission(method, path, self.resource_types)
        if interaction is not None:
            resource_type, needed, label = interaction
            if not any(p.allows(resource_type, needed) for p in grant.permissions):
                problem = Problem(
                    403,
                    "forbidden",
                    f"the granted scopes do not allow {label} of {resource_type} "
                    f"(needs system/{resource_type}.{needed})",
                    {"WWW-Authenticate": 'Bearer realm="fhir", error="insufficient_scope"'},
                )
                return replace(outcome_reply(problem), outcome="rejected")
        if controls.rate_limit is not None:
            with self._lock:
                window = self._windows.get(grant.client_id)
                if window is None or now >= window.started + controls.rate_window:
                    window = self._windows[grant.client_id] = Window(started=now)
                window.count += 1
                over = window.count > controls.rate_limit
                wait = max(1, math.ceil(window.started + controls.rate_window - now))
            if over:
                problem = Problem(
                    429,
                    "throttled",
                    f"rate limit of {controls.rate_limit} requests exceeded",
                    {"Retry-After": str(wait)},
                )
                return replace(outcome_reply(problem), outcome="rejected")
        return None

    # ----------------------------------------------------------- referential integrity

    def _parse_body(self, resource_type: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        data = super()._parse_body(resource_type, headers, body)
        if self.controls.check_references:
            itself = (resource_type, data.get("id"))
            with self._lock:
                for path, target_type, target_id in literal_references(data, resource_type):
                    if target_type not in self.resource_types or (target_type, target_id) == itself:
                        continue
                    if target_id not in self._current.get(target_type, {}):
                        raise Problem(400, "processing", f"{path}: {target_type}/{target_id} not found")
        return data

    # ---------------------------------------------------------------- conditional writes

    def _route(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, key: str | None
    ) -> Reply:
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
            if all(matches_identifier(r, system, value) for system, value in criteria)
        ]

    def _conditional_update(
        self, resource_type: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        criteria = conditional_criteria(query, "conditional update")
        data = self._parse_body(resource_type, headers, body)
        if not all(matches_identifier(data, system, value) for system, value in criteria):
            raise Problem(
                400, "processing", "the resource does not carry the identifier(s) of the conditional URL"
            )
        resource_id = data.get("id")
        with self._lock:
            matches = self._matching(resource_type, criteria)
            if len(matches) > 1:
                raise Problem(
                    412, "multiple-matches", f"{len(matches)} {resource_type} resources match the criteria"
                )
            if matches:
                current = matches[0]
                if resource_id is not None and resource_id != current["id"]:
                    raise Problem(
                        400, "invalid", "the resource id differs from the id of the matching resource"
                    )
                if_match = headers.get("if-match")
                if if_match is not None:
                    wanted = if_match.strip().removeprefix("W/").strip('"')
                    if current["meta"]["versionId"] != wanted:
                        raise Problem(412, "conflict", "If-Match does not name the current version")
                stored, _ = self._write(resource_type, current["id"], data)
                return self._resource_reply(200, stored)
            if resource_id is None:
                resource_id = self._new_id()
            elif not isinstance(resource_id, str) or not RESOURCE_ID.fullmatch(resource_id):
                raise Problem(400, "value", "invalid resource id")
            elif resource_id in self._current.get(resource_type, {}):
                raise Problem(409, "conflict", f"{resource_type}/{resource_id} exists but does not match")
            stored, _ = self._write(resource_type, resource_id, data)
            return self._resource_reply(201, stored)

    def _conditional_create(
        self, resource_type: str, condition: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        criteria = conditional_criteria(condition.split("?", 1)[-1], "If-None-Exist")
        data = self._parse_body(resource_type, headers, body)
        with self._lock:
            matches = self._matching(resource_type, criteria)
            if len(matches) > 1:
                raise Problem(
                    412, "multiple-matches", f"{len(matches)} {resource_type} resources match If-None-Exist"
                )
            if matches:
                return self._resource_reply(200, matches[0])
            stored, _ = self._write(resource_type, self._new_id(), data)
            return self._resource_reply(201, stored)


# --------------------------------------------------------------------------------------- helpers


def _json_loads(body: bytes) -> Any:
    return json.loads(body or b"{}")


# --------------------------------------------------------------------------------------- process


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandboxes.emr",
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

