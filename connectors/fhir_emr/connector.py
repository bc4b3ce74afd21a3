"""The FHIR EMR connector: ``fhir_rest`` + SMART Backend Services + writes keyed by business identifiers.

An EMR assigns its own resource ids, so the hub cannot ``PUT`` by its id as ``fhir_rest`` does. It
writes by *business identifier* instead, so that a re-sent or replayed delivery updates the
resource the first one created rather than making a duplicate::

    PUT <base>/<type>?identifier=<emr system>|<value>        (conditional update; the default)
    POST <base>/<type>                                        (conditional create; create_only_types)
    If-None-Exist: identifier=<emr system>|<value>

    Content-Type: application/fhir+json
    Idempotency-Key: <delivery.idempotency_key>
    X-Correlation-ID: <delivery.correlation_id>
    Authorization: Bearer <SMART access token>             (connectors.fhir_emr.auth)

The body is the delivery's resource with, in this order:

1. its references rewritten to the EMR's ids (see *References* below);
2. ``id`` removed (it is the hub's id; a conditional update with an id that differs from the
   matching resource's is a 400) and ``meta.versionId``/``meta.lastUpdated`` removed (the hub's
   version, meaningless to the EMR; the rest of ``meta`` - profiles, tags - is kept);
3. the *key identifier* chosen: the first ``identifier`` with a ``system`` and a ``value`` whose
   system is a key of ``identifier_system_map`` (identifiers both sides know), else the first with a
   system and a value. A resource without one gets ``{"system": hub_identifier_system, "value":
   <hub id>}`` appended and is keyed by it (so its re-sends update it too);
4. every identifier system in the resource mapped through ``identifier_system_map`` (hub system ->
   EMR system): ``identifier``, ``requisition``, ``groupIdentifier`` and ``valueIdentifier``
   anywhere in the tree (``Reference.identifier`` and contained resources included).

Search values are escaped as FHIR requires (``\\``, ``|``, ``,``, ``$``). Outcome: conditional
update 201 -> created, 200 -> updated; conditional create 201 -> created, 200 -> already there
(left unchanged: the EMR owns it after creation). More than one match is the server's 412 ->
``PermanentError`` (the identifier is not unique on the EMR: a human must merge). Other statuses as
``fhir_rest`` (401 -> one token refresh and retry; 403 -> ``AuthError``, e.g. a scope without
``.cu``; 408/429/5xx -> ``TransientError`` with ``retry_after``). ``SendResult.remote_id`` is the
EMR's id (from the returned resource or ``Location``), None if the server shows neither. Messages
name the hub's ``<type>/<id>`` and the identifier *system*, never the identifier value (an MRN is PHI).

Why conditional update rather than If-None-Exist everywhere: a conditional create ignores every later
change, so an updated referral would never reach the EMR. ``create_only_types`` is for types the EMR
takes over after creation (or whose scope is only ``.c``).

References (``reference_mode="resolve"``, the default)
------------------------------------------------------
The EMR's ids are not the hub's, so ``ServiceRequest.subject = Patient/<hub id>`` would point at
nothing on the EMR (or at something else). The connector declares ``context = {"references"}``: the
hub delivers a ``collection`` Bundle (no ``id``) whose first entry is the changed resource, followed
by the resources it references, two levels deep (:mod:`hub.sync.context`). A bare resource is
accepted too (it then has no context). Every literal relative reference ``<Type>/<hub id>`` (a
``/_history/<v>`` suffix dropped) of the body is rewritten - ``#`` local references, ``urn:``,
absolute URLs, conditional references and everything inside ``contained`` are left as they are:

* **target in the context** -> ``<Type>/<EMR id>``. Its key identifier is computed exactly as for a
  write of that resource (above), then looked up: the per-instance cache, else
  ``GET <base>/<Type>?identifier=<emr system>|<value>&_count=2``. One match -> its id (the EMR's copy
  is used as it is, not updated). None -> the target is written first, by the same conditional
  write, its own references resolved the same way (a *dependency*; ``Idempotency-Key`` =
  ``<delivery key>:<Type>/<hub id>``, hashed when longer than 255), and the id the EMR answers
  (body or ``Location``) is used. More than one -> ``PermanentError`` (not unique on the EMR).
  ``display``, ``identifier``, ``extension`` of the Reference are kept; no ``identifier`` is added
  (the literal reference suffices, and copying an MRN into every referencing resource only spreads
  PHI).
* **target not in the context** (not in the hub's store, deleted, more than two levels away or past
  the context limit), **a cycle** (a target whose own write is under way, the resource itself
  included), **deeper than** :data:`MAX_DEPENDENCY_DEPTH` dependency levels, a target that cannot be
  written by identifier (``identifier`` not a list, as Composition's single one) or of a type the
  EMR does not let the hub search or write (403, or 404/405: not served) -> a *logical reference*:
  ``reference`` removed, ``type`` set, ``identifier`` kept when the Reference had one, else
  ``{"system": hub_identifier_system, "value": <hub id>}``; ``display`` kept. The EMR gets no hub id
  it cannot know, and the hub can still tell (on poll) which resource was meant.

Resolved ids are cached per connector instance (:data:`REFERENCE_CACHE_SIZE` entries, least
recently used dropped first) under ``(type, EMR system, value)``, the written resource's own id
included. A write (the resource's or a dependency's) answered 400, 404, 409, 412 or 422 drops every
cache entry that send used, so that a retry looks them up again (e.g. a resource merged away on
the EMR). ``SendResult.detail`` ends with the counts: references resolved (of which from the cache),
dependencies written, logical references.

``reference_mode="keep"`` sends references untouched (hub ids) and polls them untouched: for an EMR
that mirrors the hub's ids.

Poll
----
``fhir_rest``'s (``_lastUpdated`` marks, same cursor); ``external_id`` stays
``<type>/<EMR id>/_history/<v>``. In ``resolve`` mode, every relative reference ``<Type>/<EMR id>``
(or absolute below the configured base) of a polled resource becomes a logical reference the hub can
resolve to its own id: ``GET <base>/<Type>/<EMR id>`` (each target read once per poll call), then
``{"type": Type, "identifier": <its key identifier>}`` (+ ``display``), the key identifier being the
one with ``hub_identifier_system`` if the resource carries it (its value *is* the hub id), else
chosen as for writes. A target the EMR does not show (403/404/410) or that has no identifier is
named by ``{"system": "<base>/<Type>", "value": <EMR id>}``: still no EMR id posing as a hub id.
Then identifier systems are mapped back (EMR system -> hub system) in the whole payload.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast

import httpx
from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator
from pydantic_core.core_schema import ValidationInfo

from connectors.base import ConnectorError, Delivery, PermanentError, PollBatch, PolledItem, SendResult
from connectors.fhir_emr.auth import Algorithm, SmartBackendAuth, load_private_key
from connectors.fhir_rest.auth import FhirAuth
from connectors.fhir_rest.connector import (
    _FHIR_ID,
    FHIR_JSON,
    NOT_A_RESOURCE,
    FhirRestConfig,
    FhirRestConnector,
    _Answer,
    _json_object,
    _matches,
    _raise_for_status,
    _remote_ref,
    _resource_ref,
)
from connectors.fhir_rest.cursor import RESOURCE_TYPE
from connectors.httputil import excerpt
from mappings.fhir import jsonio

__all__ = [
    "DEFAULT_SCOPE",
    "HUB_IDENTIFIER_SYSTEM",
    "MAX_DEPENDENCY_DEPTH",
    "REFERENCE_CACHE_SIZE",
    "FhirEmrConfig",
    "FhirEmrConnector",
    "map_identifier_systems",
]

DEFAULT_SCOPE = "system/*.rs system/Patient.cu system/ServiceRequest.cu system/Task.cu system/CarePlan.cu"
HUB_IDENTIFIER_SYSTEM = "urn:therapy-hub:id"
IDENTIFIER_KEYS = frozenset({"identifier", "requisition", "groupIdentifier", "valueIdentifier"})
#: most resolved ids one connector instance remembers (least recently used dropped first)
REFERENCE_CACHE_SIZE = 10_000
#: dependency levels written before a reference becomes logical (1: the targets of the resource sent)
MAX_DEPENDENCY_DEPTH = 3
#: statuses of a write after which the ids the send used are looked up again on a retry
INVALIDATING_STATUSES = frozenset({400, 404, 409, 412, 422})
#: statuses of a search or a dependency write meaning "not for this client": a logical reference
#: (403: the scopes do not allow it; 404/405: the EMR does not serve the type)
UNAVAILABLE_STATUSES = frozenset({403, 404, 405})
#: statuses of a polled reference's read meaning "the EMR does not show it"
UNREADABLE_STATUSES = frozenset({403, 404, 410})

_SEND_BODY_LIMIT = 1024 * 1024
_VISIBLE = re.compile(r"[\x21-\x7e]{1,255}")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,255}")  # RFC 6749 scope-token
_SYSTEM = re.compile(r"[\x21-\x7e]{1,1024}")
_PAGE_BODY_LIMIT = 4 * 1024 * 1024  # an identifier search: at most two matches are asked for
_RELATIVE = re.compile(r"(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?")
_KEY_LIMIT = 255


class FhirEmrConfig(FhirRestConfig):
    client_id: str = Field(description="The client_id the EMR registered for the hub")
    algorithm: Algorithm = Field(default="RS384", description="RS384 (RSA >= 2048 bits) or ES384 (P-384)")
    key_id: str = Field(description="kid of the key pair, as in the JWK Set given to the EMR")
    private_key: SecretStr = Field(description="PEM private key (unencrypted) matching algorithm")
    scope: str = Field(default=DEFAULT_SCOPE, description="SMART system scopes, space separated")
    token_url: AnyHttpUrl | None = Field(
        default=None, description="Token endpoint when the EMR publishes no .well-known/smart-configuration"
    )
    identifier_system_map: dict[str, str] = Field(
        default_factory=dict, description="Hub identifier system -> the EMR's system for the same identifier"
    )
    hub_identifier_system: str = Field(
        default=HUB_IDENTIFIER_SYSTEM, description="System of the identifier added to resources without one"
    )
    create_only_types: list[str] = Field(
        default_factory=list, description="Types written with a conditional create (never updated)"
    )
    reference_mode: Literal["resolve", "keep"] = Field(
        default="resolve",
        description="resolve: references become the EMR's ids (dependencies written first) and polled "
        "references become identifiers; keep: hub ids sent and polled as they are (an EMR mirroring them)",
    )
    bearer_token: None = Field(default=None, description="Not used: SMART Backend Services gets tokens")

    @field_validator("client_id", "key_id")
    @classmethod
    def _visible(cls, value: str) -> str:
        if not _VISIBLE.fullmatch(value):
            raise ValueError("must be 1-255 visible ASCII characters")
        return value

    @field_validator("private_key")
    @classmethod
    def _usable_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        algorithm = info.data.get("algorithm")
        if algorithm is None:  # already invalid: reported on its own field
            return value
        load_private_key(value.get_secret_value(), algorithm)  # ValueError without key material
        return value

    @field_validator("scope")
    @classmethod
    def _scope_tokens(cls, value: str) -> str:
        tokens = value.split(" ")
        if not all(_SCOPE_TOKEN.fullmatch(token) for token in tokens):
            raise ValueError("scopes are visible ASCII tokens separated by single spaces")
        return value

    @field_validator("token_url")
    @classmethod
    def _plain_token_url(cls, value: AnyHttpUrl | None, info: ValidationInfo) -> AnyHttpUrl | None:
        if value is None:
            return None
        if value.username or value.password or value.fragment:
            raise ValueError("the token URL must not carry credentials or a fragment")
        base = info.data.get("base_url")
        if value.scheme != "https" and (base is None or base.scheme != "http"):
            raise ValueError("token_url must use https (http only for an http FHIR base)")
        return value

    @field_validator("identifier_system_map")
    @classmethod
    def _one_to_one(cls, value: dict[str, str]) -> dict[str, str]:
        if not all(_SYSTEM.fullmatch(s) for pair in value.items() for s in pair):
            raise ValueError("identifier systems are 1-1024 visible ASCII characters")
        if len(set(value.values())) != len(value):
            raise ValueError("two hub systems map to one EMR system: the way back would be ambiguous")
        return value

    @field_validator("hub_identifier_system")
    @classmethod
    def _system(cls, value: str) -> str:
        if not _SYSTEM.fullmatch(value):
            raise ValueError("identifier systems are 1-1024 visible ASCII characters")
        return value

    @field_validator("create_only_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        if not all(RESOURCE_TYPE.fullmatch(t) for t in value):
            raise ValueError("resource types are names like Patient or ServiceRequest")
        return value


@dataclass
class _Send:
    """What one ``send`` learns while resolving references (never shown: hub ids in counts only)."""

    delivery: Delivery
    context: Mapping[tuple[str, str], dict[str, Any]]
    writing: set[tuple[str, str]] = field(default_factory=set)  # (type, hub id) whose write is under way
    done: dict[tuple[str, str], str | None] = field(default_factory=dict)  # -> EMR id, None: logical
    used: set[tuple[str, str, str]] = field(default_factory=set)  # cache keys this send relied on
    resolved: int = 0
    from_cache: int = 0
    written: int = 0
    logical: int = 0
    #: what the EMR now holds from this send, as poll names it (``Type/<EMR id>/_history/<version>``)
    versions: list[str] = field(default_factory=list)


class FhirEmrConnector(FhirRestConnector):
    """A FHIR R4 EMR behind SMART Backend Services. ``clock`` (Unix seconds) is for tests."""

    slug: ClassVar[str] = "fhir_emr"
    Config: ClassVar[type[BaseModel]] = FhirEmrConfig
    context: ClassVar[frozenset[str]] = frozenset({"references"})

    def __init__(
        self,
        config: FhirEmrConfig | Mapping[str, Any],
        *,
        transport: httpx.BaseTransport | None = None,
        auth: FhirAuth | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock or time.time
        super().__init__(config, transport=transport, auth=auth)
        self._forward = dict(self.emr_config.identifier_system_map)
        self._backward = {emr: hub for hub, emr in self._forward.items()}
        #: (type, EMR system, value) -> the EMR's id; insertion order = least recently used first
        self._emr_ids: dict[tuple[str, str, str], str] = {}
        self._emr_ids_lock = threading.Lock()  # one instance serves the worker's threads

    @property
    def emr_config(self) -> FhirEmrConfig:
        return cast(FhirEmrConfig, self.config)

    @property
    def auth(self) -> FhirAuth:
        return self._auth

    @property
    def _resolving(self) -> bool:
        return self.emr_config.reference_mode == "resolve"

    def _build_auth(self) -> FhirAuth:
        config = self.emr_config
        return SmartBackendAuth(
            self._client,
            fhir_base=self._base,
            client_id=config.client_id,
            private_key=config.private_key,
            key_id=config.key_id,
            algorithm=config.algorithm,
            scope=config.scope,
            token_url=str(config.token_url) if config.token_url is not None else None,
            timeout=config.timeout_seconds,
            clock=self._clock,
        )

    # ------------------------------------------------------------------------------- Sender

    def send(self, delivery: Delivery) -> SendResult:
        resource, context = _unpack(delivery.payload)
        resource_type, hub_id = resource["resourceType"], resource["id"]
        state = _Send(delivery, context, writing={(resource_type, hub_id)})
        try:
            if self._resolving:
                resource = self._resolve_references(resource, state, depth=1)
            answer, what, create_only, key = self._write(
                resource, resource_type, hub_id, delivery.idempotency_key, delivery.correlation_id
            )
        except ConnectorError as exc:
            if exc.status in INVALIDATING_STATUSES:
                self._forget(state.used)
            raise
        returned = _json_object(answer.body) if answer.complete else None
        remote_id, version = _remote_ref(returned, answer.headers)
        if remote_id and self._resolving:
            self._remember(key, remote_id)
        if answer.status == 201:
            outcome = "created"
        else:
            outcome = "already there, unchanged" if create_only else "updated"
        detail = f"{what} -> {answer.status} {outcome}"
        if remote_id:
            detail += f" as {resource_type}/{remote_id}"
        if version:
            detail += f" (version {version})"
        if state.resolved or state.logical:
            detail += (
                f"; references: {state.resolved} resolved to EMR ids ({state.from_cache} from cache), "
                f"{state.written} dependencies written, {state.logical} logical"
            )
        if remote_id and version and not (create_only and answer.status == 200):  # 200: nothing written
            state.versions.append(f"{resource_type}/{remote_id}/_history/{version}")
        return SendResult(
            status=answer.status,
            remote_id=remote_id,
            detail=detail,
            duration_ms=answer.duration_ms,
            written=tuple(state.versions),
        )

    def _write(
        self, resource: dict[str, Any], resource_type: str, hub_id: str, idempotency_key: str, correlation_id: str
    ) -> tuple[_Answer, str, bool, tuple[str, str, str]]:
        """One conditional write: (the 2xx answer, its description, create only?, cache key)."""
        body, (system, value) = self._outbound(resource, resource_type, hub_id)
        token = f"{_escape(system)}|{_escape(value)}"
        headers = {
            "Content-Type": FHIR_JSON,
            "Idempotency-Key": idempotency_key,
            "X-Correlation-ID": correlation_id,
        }
        url = f"{self._base}/{resource_type}"
        create_only = resource_type in self.emr_config.create_only_types
        kind = "create" if create_only else "update"
        what = f"FHIR conditional {kind} {self._target} {resource_type}/{hub_id} by {excerpt(system, 120)}"
        if create_only:
            answer = self._exchange(
                "POST",
                url,
                what=what,
                limit=_SEND_BODY_LIMIT,
                content=jsonio.dumpb(body),
                headers={**headers, "If-None-Exist": str(httpx.QueryParams({"identifier": token}))},
            )
        else:
            answer = self._exchange(
                "PUT",
                url,
                what=what,
                limit=_SEND_BODY_LIMIT,
                content=jsonio.dumpb(body),
                headers=headers,
                params={"identifier": token},
            )
        _raise_for_status(answer, what)
        return answer, what, create_only, (resource_type, system, value)

    def _key(self, resource: Mapping[str, Any], resource_type: str, hub_id: str) -> tuple[str, str]:
        """The key identifier a resource is written by, as (hub system, value). See the module docstring."""
        identifiers = resource.get("identifier")
        key = _key_identifier(identifiers, self._forward)
        if key is not None:
            return key
        if identifiers is not None and not isinstance(identifiers, list):
            raise PermanentError(
                f"{resource_type}/{hub_id} has no identifier list to write it by (fhir_emr keys "
                "writes by identifier)"
            )
        return self.emr_config.hub_identifier_system, hub_id

    def _outbound(
        self, resource: dict[str, Any], resource_type: str, hub_id: str
    ) -> tuple[dict[str, Any], tuple[str, str]]:
        """(the body to send, the key identifier as EMR system and value). See the module docstring."""
        body = {k: v for k, v in resource.items() if k != "id"}
        meta = body.get("meta")
        if isinstance(meta, dict):
            kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
            if kept:
                body["meta"] = kept
            else:
                del body["meta"]
        key = self._key(body, resource_type, hub_id)
        if _key_identifier(body.get("identifier"), self._forward) is None:
            body["identifier"] = [*(body.get("identifier") or []), {"system": key[0], "value": key[1]}]
        body = map_identifier_systems(body, self._forward)
        return body, (self._forward.get(key[0], key[0]), key[1])

    # ------------------------------------------------------------------- outbound references

    def _resolve_references(self, resource: dict[str, Any], state: _Send, *, depth: int) -> dict[str, Any]:
        """A copy of ``resource`` whose relative references name EMR ids (or are logical)."""

        def rewrite(reference: dict[str, Any], target_type: str, hub_id: str) -> dict[str, Any]:
            emr_id = self._emr_id(target_type, hub_id, state, depth=depth)
            if emr_id is None:
                state.logical += 1
                return self._logical(reference, target_type, hub_id)
            state.resolved += 1
            return {**reference, "reference": f"{target_type}/{emr_id}"}

        return cast(dict[str, Any], _rewrite_references(resource, _relative, rewrite))

    def _logical(self, reference: Mapping[str, Any], target_type: str, hub_id: str) -> dict[str, Any]:
        logical = {k: v for k, v in reference.items() if k != "reference"}
        logical["type"] = target_type
        if not isinstance(logical.get("identifier"), dict):
            logical["identifier"] = {"system": self.emr_config.hub_identifier_system, "value": hub_id}
        return logical

    def _emr_id(self, target_type: str, hub_id: str, state: _Send, *, depth: int) -> str | None:
        """The EMR's id of the hub's ``<target_type>/<hub_id>``; None: make the reference logical."""
        where = (target_type, hub_id)
        if where in state.done:
            return state.done[where]
        target = state.context.get(where)
        if target is None or where in state.writing or depth > MAX_DEPENDENCY_DEPTH:
            return None  # not in the context, a cycle, or too deep: not remembered, may differ later
        try:
            system, value = self._key(target, target_type, hub_id)
        except PermanentError:
            return None  # e.g. a Composition's single identifier: it cannot be written by identifier
        key = (target_type, self._forward.get(system, system), value)
        state.used.add(key)
        emr_id = self._cached(key)
        if emr_id is not None:
            state.from_cache += 1
        else:
            emr_id = self._find(key, target_type, hub_id)
            if emr_id == "":
                emr_id = self._write_dependency(target, target_type, hub_id, state, depth=depth)
            if emr_id is not None:
                self._remember(key, emr_id)
        state.done[where] = emr_id
        return emr_id

    def _find(self, key: tuple[str, str, str], target_type: str, hub_id: str) -> str | None:
        """The id of the one EMR resource with the key identifier; "" for none; None: not searchable."""
        _, system, value = key
        what = f"FHIR search {self._target} {target_type} for {target_type}/{hub_id} by {excerpt(system, 120)}"
        params = {"identifier": f"{_escape(system)}|{_escape(value)}", "_count": "2"}
        try:
            bundle = self._search_page(f"{self._base}/{target_type}", params, what)
        except ConnectorError as exc:
            if exc.status in UNAVAILABLE_STATUSES:
                return None
            raise
        ids = [r.get("id") for r in _matches(bundle, target_type, what)]
        total = bundle.get("total")
        count = max(len(ids), total if isinstance(total, int) and not isinstance(total, bool) else 0)
        if count > 1:
            raise PermanentError(
                f"{what}: {count} {target_type} resources carry that identifier on the EMR "
                "(not unique: a human must merge them)"
            )
        if not ids:
            return ""
        if not isinstance(ids[0], str) or not _FHIR_ID.fullmatch(ids[0]):
            raise PermanentError(f"{what}: the match has no valid id")
        return ids[0]

    def _write_dependency(
        self, target: dict[str, Any], target_type: str, hub_id: str, state: _Send, *, depth: int
    ) -> str | None:
        """Write a referenced resource the EMR lacks; its EMR id (None: the EMR refused the type)."""
        where = (target_type, hub_id)
        state.writing.add(where)
        try:
            resolved = self._resolve_references(target, state, depth=depth + 1)
            idempotency_key = _derived_key(state.delivery.idempotency_key, target_type, hub_id)
            try:
                answer, what, _, key = self._write(
                    resolved, target_type, hub_id, idempotency_key, state.delivery.correlation_id
                )
            except ConnectorError as exc:
                if exc.status in UNAVAILABLE_STATUSES:
                    return None  # a type this client may not write, or the EMR does not serve
                raise
        finally:
            state.writing.discard(where)
        returned = _json_object(answer.body) if answer.complete else None
        remote_id, version = _remote_ref(returned, answer.headers)
        if remote_id and version:
            state.versions.append(f"{target_type}/{remote_id}/_history/{version}")
        if remote_id is None or not _FHIR_ID.fullmatch(remote_id):
            found = self._find(key, target_type, hub_id)  # the EMR showed no id: look it up
            if not found:
                raise PermanentError(f"{what} -> {answer.status}, but the EMR shows no id for it")
            remote_id = found
        state.written += 1
        return remote_id

    # ------------------------------------------------------------------------------ cache

    def _cached(self, key: tuple[str, str, str]) -> str | None:
        with self._emr_ids_lock:
            emr_id = self._emr_ids.pop(key, None)
            if emr_id is not None:
                self._emr_ids[key] = emr_id  # most recently used last
            return emr_id

    def _remember(self, key: tuple[str, str, str], emr_id: str) -> None:
        with self._emr_ids_lock:
            self._emr_ids.pop(key, None)
            while self._emr_ids and len(self._emr_ids) >= REFERENCE_CACHE_SIZE:
                del self._emr_ids[next(iter(self._emr_ids))]
            self._emr_ids[key] = emr_id

    def _forget(self, keys: set[tuple[str, str, str]]) -> None:
        with self._emr_ids_lock:
            for key in keys:
                self._emr_ids.pop(key, None)

    # ------------------------------------------------------------------------------- Poller

    def poll(self, cursor: str | None, limit: int) -> PollBatch:
        batch = super().poll(cursor, limit)
        if not self._backward and not self._resolving:
            return batch
        targets: dict[tuple[str, str], dict[str, str]] = {}  # (type, EMR id) -> identifier, per poll call
        items = []
        for item in batch.items:
            resource = jsonio.loads(item.payload)
            if self._resolving:
                resource = self._inbound_references(resource, targets)
            resource = map_identifier_systems(resource, self._backward)
            items.append(PolledItem(item.external_id, jsonio.dumpb(resource), item.content_type))
        return PollBatch(items=items, next_cursor=batch.next_cursor)

    def _inbound_references(self, resource: Any, targets: dict[tuple[str, str], dict[str, str]]) -> Any:
        """``resource`` with each reference to an EMR id made logical (see the module docstring)."""

        def parse(text: str) -> tuple[str, str] | None:
            if text.startswith(self._base + "/"):
                text = text[len(self._base) + 1 :]
            return _relative(text)

        def rewrite(reference: dict[str, Any], target_type: str, emr_id: str) -> dict[str, Any]:
            where = (target_type, emr_id)
            if where not in targets:
                targets[where] = self._polled_identifier(target_type, emr_id)
            logical = {k: v for k, v in reference.items() if k != "reference"}
            logical["type"] = target_type
            logical["identifier"] = dict(targets[where])
            return logical

        return _rewrite_references(resource, parse, rewrite)

    def _polled_identifier(self, target_type: str, emr_id: str) -> dict[str, str]:
        what = f"FHIR GET {self._target} {target_type}/{emr_id} (a polled reference)"
        answer = self._exchange("GET", f"{self._base}/{target_type}/{emr_id}", what=what, limit=_SEND_BODY_LIMIT)
        fallback = {"system": f"{self._base}/{target_type}", "value": emr_id}
        if answer.status in UNREADABLE_STATUSES:
            return fallback
        _raise_for_status(answer, what)
        target = _json_object(answer.body) if answer.complete else None
        identifiers = target.get("identifier") if target is not None else None
        hub_system = self.emr_config.hub_identifier_system
        key = _identifier_of(identifiers, hub_system) or _key_identifier(identifiers, self._backward)
        return {"system": key[0], "value": key[1]} if key is not None else fallback


# ---------------------------------------------------------------------------------- helpers


def map_identifier_systems(value: Any, mapping: Mapping[str, str]) -> Any:
    """A copy of ``value`` with the ``system`` of every Identifier (see IDENTIFIER_KEYS) mapped."""
    if isinstance(value, list):
        return [map_identifier_systems(v, mapping) for v in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key in IDENTIFIER_KEYS:
            item = _map_identifiers(item, mapping)
        result[key] = map_identifier_systems(item, mapping)
    return result


def _map_identifiers(value: Any, mapping: Mapping[str, str]) -> Any:
    if isinstance(value, list):
        return [_map_identifiers(v, mapping) for v in value]
    if isinstance(value, dict):
        system = value.get("system")
        if isinstance(system, str) and system in mapping:
            return {**value, "system": mapping[system]}
    return value


def _key_identifier(identifiers: Any, mapped: Mapping[str, str]) -> tuple[str, str] | None:
    """The identifier a resource is written by (hub system, value), or None."""
    usable = [
        (i["system"], i["value"])
        for i in (identifiers if isinstance(identifiers, list) else [])
        if isinstance(i, dict)
        and isinstance(i.get("system"), str)
        and i["system"]
        and isinstance(i.get("value"), str)
        and i["value"]
    ]
    for system, value in usable:
        if system in mapped:
            return system, value
    return usable[0] if usable else None


def _escape(text: str) -> str:
    """FHIR search escaping of a token part: backslash, pipe, comma and dollar."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")


def _identifier_of(identifiers: Any, system: str) -> tuple[str, str] | None:
    """(system, value) of the first identifier with ``system`` and a value, or None."""
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if isinstance(identifier, dict) and identifier.get("system") == system:
            value = identifier.get("value")
            if isinstance(value, str) and value:
                return system, value
    return None


def _relative(text: str) -> tuple[str, str] | None:
    """(type, id) of a relative literal reference ``Type/id[/_history/v]``; None for anything else."""
    match = _RELATIVE.fullmatch(text)
    return (match["type"], match["id"]) if match else None


def _rewrite_references(
    node: Any,
    parse: Callable[[str], tuple[str, str] | None],
    rewrite: Callable[[dict[str, Any], str, str], dict[str, Any]],
) -> Any:
    """A copy of ``node`` with each Reference whose ``reference`` ``parse`` understands replaced by
    ``rewrite(reference, type, id)``; ``contained`` resources and the narrative are left alone."""
    if isinstance(node, list):
        return [_rewrite_references(item, parse, rewrite) for item in node]
    if not isinstance(node, dict):
        return node
    text = node.get("reference")
    parsed = parse(text) if isinstance(text, str) else None
    if parsed is not None:
        return rewrite(node, *parsed)
    return {
        key: value if key in ("contained", "text") else _rewrite_references(value, parse, rewrite)
        for key, value in node.items()
    }


def _unpack(payload: bytes) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    """(the resource to send, the resources it references by (type, hub id)) of a delivery payload:
    a resource, or the hub's context Bundle (``collection``, no ``id``, the resource first)."""
    document = _json_object(payload)
    if (
        document is None
        or document.get("resourceType") != "Bundle"
        or document.get("type") != "collection"
        or "id" in document
    ):
        _resource_ref(payload)  # PermanentError unless a resource with a type and an id
        assert document is not None
        return document, {}
    entries = document.get("entry")
    resources = [
        e["resource"]
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    if not resources or not _has_type_and_id(resources[0]):
        raise PermanentError(NOT_A_RESOURCE + " (first entry of the context Bundle)")
    context = {(r["resourceType"], r["id"]): r for r in resources[1:] if _has_type_and_id(r)}
    return resources[0], context


def _has_type_and_id(resource: Mapping[str, Any]) -> bool:
    resource_type, resource_id = resource.get("resourceType"), resource.get("id")
    return (
        isinstance(resource_type, str)
        and RESOURCE_TYPE.fullmatch(resource_type) is not None
        and isinstance(resource_id, str)
        and _FHIR_ID.fullmatch(resource_id) is not None
    )


def _derived_key(idempotency_key: str, resource_type: str, hub_id: str) -> str:
    """The Idempotency-Key of a dependency write: the delivery's, plus what is written."""
    key = f"{idempotency_key}:{resource_type}/{hub_id}"
    if len(key) <= _KEY_LIMIT:
        return key
    return "dependency-" + hashlib.sha256(key.encode()).hexdigest()
