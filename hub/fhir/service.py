"""The FHIR store service: interactions of the RESTful API over one session (one transaction).

Resources are kept as the JSON the client sent (after validation), with ``meta.versionId`` and
``meta.lastUpdated`` set by the hub; nothing is re-serialised through ``fhir.resources``, so
extensions, contained resources, narrative and decimal precision come back exactly as sent.

This module holds the reads and writes (CRUD) and the access checks; search and history bundles are
built in :mod:`hub.fhir.searching`, Bundles processed in :mod:`hub.fhir.bundles`. Every write
records a change event in the transaction's :class:`hub.fhir.events.ChangeLog`; the reactions to
it (routing, workflow) run when the top-level operation that wrote it is done.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.errors import (
    BadRequest,
    Conflict,
    Gone,
    InvalidResource,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
)
from hub.fhir import searchparams
from hub.fhir.bundles import BundleProcessing
from hub.fhir.events import Change, ChangeLog, Reaction
from hub.fhir.policy import StorePolicy
from hub.fhir.search import ParsedSearch, parse_search
from hub.fhir.searching import SearchBundles
from hub.fhir.stored import (
    ID_PATTERN,
    Stored,
    WriteResult,
    check_id,
    check_type,
    etag,
    instant,
    parse_etag,
)
from hub.kit import utcnow
from hub.store import repository as repo
from hub.store.models import Resource
from mappings.fhir import jsonio
from mappings.fhir.validation import Issue, validate_resource

F = TypeVar("F", bound=Callable[..., Any])


def _operation(method: F) -> F:
    """A top-level store operation: when it is done, the change events it recorded (and those their
    reactions record) are reacted to, in order. Called from a reaction, it only records: its events
    wait their turn at the end of the log. If it fails, what it recorded is forgotten."""

    @functools.wraps(method)
    def run(self: FhirService, *args: Any, **kwargs: Any) -> Any:
        if self.events.draining:
            return method(self, *args, **kwargs)
        try:
            result = method(self, *args, **kwargs)
        except BaseException:
            self.events.discard()
            raise
        self.events.drain()
        return result

    return run  # type: ignore[return-value]


class FhirService(SearchBundles, BundleProcessing):
    def __init__(
        self,
        session: Session,
        *,
        tenant: str,
        base_url: str,
        default_count: int = 20,
        max_count: int = 500,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        listeners: Sequence[Reaction] = (),
        policy: StorePolicy | None = None,
    ) -> None:
        self.session = session
        #: the reactions to every change event, in this order (routing into the outbox first, then the
        #: workflow rules), run after the write inside the transaction (see :mod:`hub.fhir.events`)
        self.listeners = list(listeners)
        #: the transaction's ordered change events (shared by every store on the session)
        self.events = ChangeLog.of(session)
        #: the caller's access policy (scopes, compartment); None = the hub itself (no checks)
        self.policy: StorePolicy | None = policy
        self._internal = 0
        self.tenant = tenant
        self.base_url = base_url  # ends with /fhir
        self.default_count = default_count
        self.max_count = max_count
        self.clock = clock
        self.new_id = new_id

    def under(self, policy: StorePolicy | None) -> FhirService:
        """The same store (session, tenant, clock, reactions) for another caller: ``policy``."""
        return FhirService(self.session, tenant=self.tenant, base_url=self.base_url,
                           default_count=self.default_count, max_count=self.max_count, clock=self.clock,
                           new_id=self.new_id, listeners=self.listeners, policy=policy)

    # ------------------------------------------------------------ access

    @contextmanager
    def internal(self) -> Iterator[None]:
        """Work the hub does on its own behalf (reactions, services): no caller policy applies."""
        self._internal += 1
        try:
            yield
        finally:
            self._internal -= 1

    def _guard(self, resource_type: str, permission: str) -> None:
        if self.policy is not None and not self._internal:
            self.policy.check(resource_type, permission)

    def _hidden(self, stored: Stored) -> bool:
        if self.policy is None or self._internal or not self.policy.restricted or stored.content is None:
            return False
        return not self.policy.visible(stored.resource_type, jsonio.loads(stored.content))

    def _hidden_row(self, row: Resource | None) -> bool:
        """Whether a stored resource is outside the caller's compartment; a deleted one is judged
        by its last content (a referrer may not see the history of, nor revive, someone else's)."""
        if row is None or self.policy is None or self._internal or not self.policy.restricted:
            return False
        if not row.deleted:
            return self._hidden(Stored.of(row))
        last = repo.get_version(self.session, tenant=self.tenant, resource_type=row.resource_type,
                                resource_id=row.id, version_id=row.version_id - 1)
        return last is not None and self._hidden(Stored.of(last))

    def _check_write(self, resource_type: str, resource: dict[str, Any]) -> None:
        if self.policy is not None and not self._internal:
            self.policy.check_write(resource_type, resource)

    def record_audit(self, event: dict[str, Any]) -> None:
        """Store an AuditEvent in this transaction (no routing, no policy)."""
        with self.internal():
            self._write(None, "AuditEvent", event["id"], event, "POST", route=False)

    # ------------------------------------------------------------ validation

    def validate(self, resource: Any, expected_type: str | None = None) -> list[Issue]:
        return validate_resource(resource, expected_type)

    def _require_valid(self, resource: Any, expected_type: str | None) -> None:
        issues = validate_resource(resource, expected_type)
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            if any(i.code == "not-supported" and i.expression == "resourceType" for i in errors):
                raise BadRequest(issues=errors)
            raise InvalidResource(issues=errors)

    # ------------------------------------------------------------ reads

    def read(self, resource_type: str, resource_id: str) -> Stored:
        check_type(resource_type)
        self._guard(resource_type, "r")
        row = repo.get_resource(
            self.session, tenant=self.tenant, resource_type=resource_type, resource_id=resource_id
        )
        if row is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        stored = Stored.of(row)
        if self._hidden_row(row):
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        if row.deleted:
            raise Gone(f"{resource_type}/{resource_id} was deleted", headers={"ETag": stored.etag})
        return stored

    def vread(self, resource_type: str, resource_id: str, version: str) -> Stored:
        check_type(resource_type)
        self._guard(resource_type, "r")
        # ASCII digits only, and small enough for the INTEGER column (no overflow -> 500)
        if not (version.isascii() and version.isdigit()) or int(version) > 2**31 - 1:
            raise NotFound("That version is not known")
        row = repo.get_version(
            self.session,
            tenant=self.tenant,
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=int(version),
        )
        if row is None or (row.content is None and self._hidden_row(repo.get_resource(
                self.session, tenant=self.tenant, resource_type=resource_type, resource_id=resource_id))):
            raise NotFound(f"{resource_type}/{resource_id}/_history/{version} is not known")
        if row.content is None:
            raise Gone(f"{resource_type}/{resource_id} version {version} is a deletion")
        stored = Stored.of(row)
        if self._hidden(stored):
            raise NotFound(f"{resource_type}/{resource_id}/_history/{version} is not known")
        return stored

    # ------------------------------------------------------------ writes

    def _write(
        self,
        current: Resource | None,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any] | None,
        method: str,
        route: bool = True,
    ) -> Stored:
        now = self.clock()
        current_deleted = current is not None and current.deleted
        previous = current.content if current is not None and not current_deleted else None
        version_id = (current.version_id + 1) if current is not None else 1
        content = None
        if resource is not None:
            meta = dict(resource.get("meta") or {})
            meta["versionId"] = str(version_id)
            meta["lastUpdated"] = instant(now)
            resource["id"] = resource_id
            resource["meta"] = meta
            ordered = {"resourceType": resource_type, "id": resource_id, "meta": meta}
            ordered.update((k, v) for k, v in resource.items() if k not in ordered)
            content = jsonio.dumps(ordered)
        row = repo.save_version(
            self.session,
            current=current,
            tenant=self.tenant,
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=version_id,
            now=now,
            method=method,
            content=content,
        )
        repo.replace_index(
            self.session,
            tenant=self.tenant,
            resource_type=resource_type,
            resource_id=resource_id,
            values=searchparams.extract(resource_type, resource) if resource is not None else None,
            fresh=current is None,
        )
        stored = Stored.of(row)
        if self.listeners and route:
            created = current is None or current_deleted
            interaction = "delete" if resource is None else ("create" if created else "update")
            change = Change(
                resource_type, resource_id, stored.version_id, interaction, resource, stored.content, previous
            )
            self.events.record(change, self._react)
        return stored

    def _react(self, change: Change) -> None:
        """The reactions to one change, in order, as the hub's own work (no caller policy)."""
        with self.internal():
            for listener in self.listeners:
                listener(change)

    @_operation
    def create(
        self,
        resource_type: str,
        resource: Any,
        *,
        if_none_exist: str | None = None,
        resource_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        check_type(resource_type)
        self._guard(resource_type, "c")
        self._require_valid(resource, resource_type)
        self._check_write(resource_type, resource)
        request_hash = hashlib.sha256(jsonio.dumpb([resource_type, resource])).hexdigest()
        if idempotency_key:
            earlier = self._idempotent_replay(idempotency_key, request_hash)
            if earlier is not None:
                return earlier
        if if_none_exist:
            existing = self._conditional_match(resource_type, if_none_exist)
            if existing is not None:
                return WriteResult(existing, 200)
        new_id = resource_id or self.new_id()
        if idempotency_key:
            try:  # claimed before the write, so a concurrent retry of the same request cannot create twice
                with self.session.begin_nested():
                    repo.save_idempotency_key(
                        self.session, tenant=self.tenant, key=idempotency_key, request_hash=request_hash,
                        resource_type=resource_type, resource_id=new_id, version_id=1, status=201, now=self.clock(),
                    )
            except IntegrityError:
                raise Conflict(
                    "A request with this Idempotency-Key is in progress; retry it", expression="Idempotency-Key"
                ) from None
        return WriteResult(self._write(None, resource_type, new_id, resource, "POST"), 201)

    def _idempotent_replay(self, key: str, request_hash: str) -> WriteResult | None:
        """The result of an earlier create with the same Idempotency-Key (same body), if any."""
        if len(key) > 255:
            raise BadRequest("Idempotency-Key is longer than 255 characters", expression="Idempotency-Key")
        row = repo.get_idempotency_key(self.session, tenant=self.tenant, key=key)
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise Conflict(
                "This Idempotency-Key was used with a different request body", expression="Idempotency-Key"
            )
        version = repo.get_version(
            self.session, tenant=self.tenant, resource_type=row.resource_type, resource_id=row.resource_id,
            version_id=row.version_id,
        )
        if version is None:
            return None
        return WriteResult(Stored.of(version), row.status)

    def _conditional_match(self, resource_type: str, query: str) -> Stored | None:
        items = parse_qsl(query.lstrip("?"), keep_blank_values=True)
        if not items:
            raise BadRequest("If-None-Exist needs search parameters", expression="If-None-Exist")
        parsed = self._parse(resource_type, items, strict=True)
        if not parsed.criteria:
            raise BadRequest("If-None-Exist needs search parameters", expression="If-None-Exist")
        if self.policy is not None and not self._internal and self.policy.restricted:
            # matched within what the caller may see: never answer with someone else's resource
            parsed = self._parse(resource_type, self.policy.search_items(resource_type, items), strict=True)
        rows, _ = repo.search(
            self.session, query=self._query(resource_type, parsed, limit=2, offset=0), with_total=False
        )
        if len(rows) > 1:
            raise PreconditionFailed(
                "The conditional create matched more than one resource", expression="If-None-Exist"
            )
        return Stored.of(rows[0]) if rows else None

    @_operation
    def update(
        self, resource_type: str, resource_id: str, resource: Any, *, if_match: str | None = None
    ) -> WriteResult:
        check_type(resource_type)
        check_id(resource_id)
        self._guard(resource_type, "u")
        self._require_valid(resource, resource_type)
        body_id = resource.get("id")
        if body_id is None:
            raise BadRequest("The resource in an update must carry its id", expression=f"{resource_type}.id")
        if body_id != resource_id:
            raise BadRequest(
                "The id in the resource does not match the id in the URL", expression=f"{resource_type}.id"
            )
        current = repo.get_resource(
            self.session, tenant=self.tenant, resource_type=resource_type, resource_id=resource_id, for_update=True
        )
        if self._hidden_row(current):
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        self._check_write(resource_type, resource)
        self._check_if_match(current, if_match)
        created = current is None or current.deleted
        stored = self._write(current, resource_type, resource_id, resource, "PUT")
        return WriteResult(stored, 201 if created else 200)

    def _check_if_match(self, current: Resource | None, if_match: str | None) -> None:
        if if_match is None:
            return
        wanted = parse_etag(if_match)
        if wanted is None:
            raise BadRequest('If-Match must be a version ETag such as W/"3"', expression="If-Match")
        if current is None or current.version_id != wanted:
            have = "none" if current is None else str(current.version_id)
            raise PreconditionFailed(
                f"Version conflict: If-Match asked for version {wanted}, the current version is {have}",
                expression="If-Match",
            )

    @_operation
    def delete(self, resource_type: str, resource_id: str, *, if_match: str | None = None) -> Stored | None:
        """Delete; returns the deletion version, or None when there was nothing to delete."""
        check_type(resource_type)
        self._guard(resource_type, "d")
        current = repo.get_resource(
            self.session, tenant=self.tenant, resource_type=resource_type, resource_id=resource_id, for_update=True
        )
        if current is None or self._hidden_row(current):
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        self._check_if_match(current, if_match)
        if current.deleted:
            return None
        return self._write(current, resource_type, resource_id, None, "DELETE")

    # ------------------------------------------------------------ search and history

    def _parse(self, resource_type: str, items: Sequence[tuple[str, str]], *, strict: bool) -> ParsedSearch:
        return parse_search(
            resource_type,
            items,
            base_url=self.base_url,
            strict=strict,
            default_count=self.default_count,
            max_count=self.max_count,
        )

    def _query(self, resource_type: str, parsed: ParsedSearch, *, limit: int, offset: int) -> repo.SearchQuery:
        return repo.SearchQuery(
            tenant=self.tenant,
            resource_type=resource_type,
            criteria=parsed.criteria,
            sort=parsed.sort,
            limit=limit,
            offset=offset,
        )


__all__ = ["FhirService", "Stored", "WriteResult", "instant", "etag", "parse_etag", "check_id", "check_type",
           "ID_PATTERN", "Conflict", "MethodNotAllowed"]
