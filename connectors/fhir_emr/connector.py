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

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

import httpx
from pydantic import BaseModel

from connectors.base import ConnectorError, Delivery, PermanentError, PollBatch, PolledItem, SendResult
from connectors.fhir_emr.auth import SmartBackendAuth
from connectors.fhir_emr.config import FhirEmrConfig
from connectors.fhir_emr.identifiers import identifier_of, key_identifier, map_identifier_systems
from connectors.fhir_emr.payload import SendState, derived_key, relative_reference, unpack
from connectors.fhir_rest.auth import FhirAuth
from connectors.fhir_rest.connector import FhirRestConnector
from connectors.fhirclient import (
    FHIR_ID,
    FHIR_JSON,
    Answer,
    escape_search_value,
    json_object,
    matches,
    raise_for_status,
    remote_ref,
)
from connectors.httputil import excerpt
from mappings.fhir import jsonio
from mappings.fhir.references import rewrite_references

__all__ = ["MAX_DEPENDENCY_DEPTH", "REFERENCE_CACHE_SIZE", "FhirEmrConnector"]

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
#: kept as they are when references are rewritten: contained resources and the narrative
_NOT_WALKED = ("contained", "text")


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
        resource, context = unpack(delivery.payload)
        resource_type, hub_id = resource["resourceType"], resource["id"]
        state = SendState(delivery, context, writing={(resource_type, hub_id)})
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
        returned = json_object(answer.body) if answer.complete else None
        remote_id, version = remote_ref(returned, answer.headers)
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
    ) -> tuple[Answer, str, bool, tuple[str, str, str]]:
        """One conditional write: (the 2xx answer, its description, create only?, cache key)."""
        body, (system, value) = self._outbound(resource, resource_type, hub_id)
        token = f"{escape_search_value(system)}|{escape_search_value(value)}"
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
            answer = self._fhir.exchange(
                "POST",
                url,
                what=what,
                limit=_SEND_BODY_LIMIT,
                content=jsonio.dumpb(body),
                headers={**headers, "If-None-Exist": str(httpx.QueryParams({"identifier": token}))},
            )
        else:
            answer = self._fhir.exchange(
                "PUT",
                url,
                what=what,
                limit=_SEND_BODY_LIMIT,
                content=jsonio.dumpb(body),
                headers=headers,
                params={"identifier": token},
            )
        raise_for_status(answer, what)
        return answer, what, create_only, (resource_type, system, value)

    def _key(self, resource: Mapping[str, Any], resource_type: str, hub_id: str) -> tuple[str, str]:
        """The key identifier a resource is written by, as (hub system, value). See the module docstring."""
        identifiers = resource.get("identifier")
        key = key_identifier(identifiers, self._forward)
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
        if key_identifier(body.get("identifier"), self._forward) is None:
            body["identifier"] = [*(body.get("identifier") or []), {"system": key[0], "value": key[1]}]
        body = map_identifier_systems(body, self._forward)
        return body, (self._forward.get(key[0], key[0]), key[1])

    # ------------------------------------------------------------------- outbound references

    def _resolve_references(self, resource: dict[str, Any], state: SendState, *, depth: int) -> dict[str, Any]:
        """A copy of ``resource`` whose relative references name EMR ids (or are logical)."""

        def rewrite(reference: dict[str, Any], target_type: str, hub_id: str) -> dict[str, Any]:
            emr_id = self._emr_id(target_type, hub_id, state, depth=depth)
            if emr_id is None:
                state.logical += 1
                return self._logical(reference, target_type, hub_id)
            state.resolved += 1
            return {**reference, "reference": f"{target_type}/{emr_id}"}

        def known(reference: dict[str, Any], text: str) -> dict[str, Any] | None:
            parsed = relative_reference(text)
            return rewrite(reference, *parsed) if parsed is not None else None

        return cast(dict[str, Any], rewrite_references(resource, known, skip=_NOT_WALKED))

    def _logical(self, reference: Mapping[str, Any], target_type: str, hub_id: str) -> dict[str, Any]:
        logical = {k: v for k, v in reference.items() if k != "reference"}
        logical["type"] = target_type
        if not isinstance(logical.get("identifier"), dict):
            logical["identifier"] = {"system": self.emr_config.hub_identifier_system, "value": hub_id}
        return logical

    def _emr_id(self, target_type: str, hub_id: str, state: SendState, *, depth: int) -> str | None:
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
        params = {"identifier": f"{escape_search_value(system)}|{escape_search_value(value)}", "_count": "2"}
        try:
            bundle = self._search_page(f"{self._base}/{target_type}", params, what)
        except ConnectorError as exc:
            if exc.status in UNAVAILABLE_STATUSES:
                return None
            raise
        ids = [r.get("id") for r in matches(bundle, target_type, what)]
        total = bundle.get("total")
        count = max(len(ids), total if isinstance(total, int) and not isinstance(total, bool) else 0)
        if count > 1:
            raise PermanentError(
                f"{what}: {count} {target_type} resources carry that identifier on the EMR "
                "(not unique: a human must merge them)"
            )
        if not ids:
            return ""
        if not isinstance(ids[0], str) or not FHIR_ID.fullmatch(ids[0]):
            raise PermanentError(f"{what}: the match has no valid id")
        return ids[0]

    def _write_dependency(
        self, target: dict[str, Any], target_type: str, hub_id: str, state: SendState, *, depth: int
    ) -> str | None:
        """Write a referenced resource the EMR lacks; its EMR id (None: the EMR refused the type)."""
        where = (target_type, hub_id)
        state.writing.add(where)
        try:
            resolved = self._resolve_references(target, state, depth=depth + 1)
            idempotency_key = derived_key(state.delivery.idempotency_key, target_type, hub_id)
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
        returned = json_object(answer.body) if answer.complete else None
        remote_id, version = remote_ref(returned, answer.headers)
        if remote_id and version:
            state.versions.append(f"{target_type}/{remote_id}/_history/{version}")
        if remote_id is None or not FHIR_ID.fullmatch(remote_id):
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

        def rewrite(reference: dict[str, Any], text: str) -> dict[str, Any] | None:
            if text.startswith(self._base + "/"):
                text = text[len(self._base) + 1 :]
            parsed = relative_reference(text)
            if parsed is None:
                return None
            target_type, emr_id = where = parsed
            if where not in targets:
                targets[where] = self._polled_identifier(target_type, emr_id)
            logical = {k: v for k, v in reference.items() if k != "reference"}
            logical["type"] = target_type
            logical["identifier"] = dict(targets[where])
            return logical

        return rewrite_references(resource, rewrite, skip=_NOT_WALKED)

    def _polled_identifier(self, target_type: str, emr_id: str) -> dict[str, str]:
        what = f"FHIR GET {self._target} {target_type}/{emr_id} (a polled reference)"
        answer = self._fhir.exchange("GET", f"{self._base}/{target_type}/{emr_id}", what=what, limit=_SEND_BODY_LIMIT)
        fallback = {"system": f"{self._base}/{target_type}", "value": emr_id}
        if answer.status in UNREADABLE_STATUSES:
            return fallback
        raise_for_status(answer, what)
        target = json_object(answer.body) if answer.complete else None
        identifiers = target.get("identifier") if target is not None else None
        hub_system = self.emr_config.hub_identifier_system
        key = identifier_of(identifiers, hub_system) or key_identifier(identifiers, self._backward)
        return {"system": key[0], "value": key[1]} if key is not None else fallback

