"""The FHIR store service: interactions of the RESTful API over one session (one transaction).

Resources are kept as the JSON the client sent (after validation), with ``meta.versionId`` and
``meta.lastUpdated`` set by the hub; nothing is re-serialised through ``fhir.resources``, so
extensions, contained resources, narrative and decimal precision come back exactly as sent.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import simplejson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.errors import (
    BadRequest,
    Conflict,
    Gone,
    HubError,
    InvalidResource,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    UnsupportedType,
    operation_outcome,
)
from hub.fhir import searchparams
from hub.fhir.events import Change
from hub.fhir.search import ParsedSearch, parse_search
from hub.kit import utcnow
from hub.store import repository as repo
from hub.store.models import Resource, ResourceVersion
from mappings.fhir import SUPPORTED_TYPES, jsonio
from mappings.fhir.validation import Issue, validate_resource

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def instant(value: datetime) -> str:
    """FHIR instant (UTC, microseconds) of a naive UTC datetime."""
    return value.isoformat(timespec="microseconds") + "Z"


def etag(version_id: int) -> str:
    return f'W/"{version_id}"'


def parse_etag(value: str) -> int | None:
    match = re.fullmatch(r'\s*(?:W/)?"?(\d+)"?\s*', value)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of a resource as stored."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    content: str | None  # None: deleted

    @classmethod
    def of(cls, row: Resource | ResourceVersion) -> Stored:
        return cls(row.resource_type, row.id, row.version_id, row.last_updated, row.content)

    @property
    def location(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"

    @property
    def etag(self) -> str:
        return etag(self.version_id)


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: Stored
    status: int  # 200 updated/exists, 201 created


def check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED_TYPES:
        raise UnsupportedType(f"Resource type {resource_type!r} is not supported by this server")


def check_id(resource_id: str) -> None:
    if not ID_PATTERN.match(resource_id):
        raise BadRequest("Resource id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'", expression="id")


_REQUEST_HEADERS = {"If-Match": "request.ifMatch", "If-None-Exist": "request.ifNoneExist"}


def _relocate(issues: Sequence[Issue], resource_type: str, where: str, other: str = "request.url") -> list[Issue]:
    """Point issue expressions into the Bundle entry ``where`` (``Bundle.entry[i]``).

    ``Type.x`` becomes ``{where}.resource.x``, request headers become ``{where}.request.*``, other
    expressions (search parameters, the id in the url) become ``{where}.{other}``; an issue without
    an expression points at the entry. Expressions that already start with ``Bundle.`` are kept.
    """
    out = []
    for issue in issues:
        expression = issue.expression
        if not expression:
            expression = where
        elif expression.startswith("Bundle."):
            pass
        elif expression == resource_type or expression.startswith(resource_type + "."):
            expression = f"{where}.resource{expression[len(resource_type) :]}"
        elif expression == "resourceType":
            expression = f"{where}.resource.resourceType"
        elif expression in _REQUEST_HEADERS:
            expression = f"{where}.{_REQUEST_HEADERS[expression]}"
        else:
            expression = f"{where}.{other}"
        out.append(Issue(issue.severity, issue.code, issue.diagnostics, expression))
    return out


class FhirService:
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
        listeners: Sequence[Callable[[Change], object]] = (),
    ) -> None:
        self.session = session
        #: called with every write, inside the transaction (routing into the outbox)
        self.listeners = list(listeners)
        #: the caller's access policy (scopes, compartment); None = the hub itself (no checks)
        self.policy: Any = None
        self._internal = 0
        self.tenant = tenant
        self.base_url = base_url  # ends with /fhir
        self.default_count = default_count
        self.max_count = max_count
        self.clock = clock
        self.new_id = new_id

    # ------------------------------------------------------------ access

    @contextmanager
    def internal(self) -> Iterator[None]:
        """Work the hub does on its own behalf (listeners, services): no caller policy applies."""
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
            with self.internal():
                for listener in self.listeners:
                    listener(change)
        return stored

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

    def _full_url(self, resource_type: str, resource_id: str) -> str:
        return f"{self.base_url}/{resource_type}/{resource_id}"

    def _link(self, resource_type: str, applied: Sequence[tuple[str, str]], offset: int | None) -> str:
        items = list(applied)
        if offset:
            items.append(("_offset", str(offset)))
        query = urlencode(items, safe="|:,/")
        return f"{self.base_url}/{resource_type}" + (f"?{query}" if query else "")

    def search(self, resource_type: str, items: Sequence[tuple[str, str]], *, strict: bool = False) -> dict[str, Any]:
        check_type(resource_type)
        self._guard(resource_type, "s")
        if self.policy is not None and not self._internal:
            items = self.policy.search_items(resource_type, items)
        parsed = self._parse(resource_type, items, strict=strict)
        count = parsed.count if parsed.count is not None else self.default_count
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": instant(self.clock())},
            "type": "searchset",
        }
        if parsed.summary_count:
            bundle["total"] = repo.count(self.session, query=self._query(resource_type, parsed, limit=0, offset=0))
            bundle["link"] = [{"relation": "self", "url": self._link(resource_type, parsed.applied, None)}]
            return bundle
        query = self._query(resource_type, parsed, limit=count + 1, offset=parsed.offset)
        rows, total = repo.search(self.session, query=query, with_total=parsed.total != "none")
        has_next = count > 0 and len(rows) > count  # _count=0: no page to go to, only the total
        rows = rows[:count]
        if total is not None:
            bundle["total"] = total
        links = [{"relation": "self", "url": self._link(resource_type, parsed.applied, parsed.offset)}]
        if parsed.offset or has_next:
            links.append({"relation": "first", "url": self._link(resource_type, parsed.applied, None)})
        if parsed.offset and count:
            links.append(
                {"relation": "previous",
                 "url": self._link(resource_type, parsed.applied, max(0, parsed.offset - count))}
            )
        if has_next:
            links.append({"relation": "next", "url": self._link(resource_type, parsed.applied, parsed.offset + count)})
        bundle["link"] = links
        entries = [self._entry(Stored.of(row), {"mode": "match"}) for row in rows]
        entries.extend(self._included(resource_type, rows, parsed))
        if parsed.ignored:
            entries.append({"resource": operation_outcome(parsed.ignored), "search": {"mode": "outcome"}})
        if entries:
            bundle["entry"] = entries
        return bundle

    def _entry(self, stored: Stored, search: dict[str, Any] | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"fullUrl": self._full_url(stored.resource_type, stored.id)}
        if stored.content is not None:
            entry["resource"] = simplejson.RawJSON(stored.content)
        if search:
            entry["search"] = search
        return entry

    def _included(self, resource_type: str, rows: Sequence[Resource], parsed: ParsedSearch) -> Iterator[dict[str, Any]]:
        if not parsed.includes or not rows:
            return
        params = searchparams.params_for(resource_type)
        seen = {(r.resource_type, r.id) for r in rows}
        targets: list[tuple[str, str]] = []
        for _source, name, target in parsed.includes:
            names = [p.name for p in params.values() if p.type == "reference"] if name == "*" else [name]
            refs = repo.outgoing_references(
                self.session,
                tenant=self.tenant,
                resource_type=resource_type,
                resource_ids=[r.id for r in rows],
                params=names,
            )
            for ref_type, ref_id in refs:
                if ref_type and (target is None or ref_type == target) and (ref_type, ref_id) not in seen:
                    seen.add((ref_type, ref_id))
                    targets.append((ref_type, ref_id))
        for row in repo.get_resources(self.session, tenant=self.tenant, keys=targets):
            if self.policy is not None and not self._internal and not self.policy.may_read(row.resource_type):
                continue  # what the caller's scopes (or role) do not let them read does not come along
            if not self._hidden(Stored.of(row)):
                yield self._entry(Stored.of(row), {"mode": "include"})

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        items: Sequence[tuple[str, str]],
    ) -> dict[str, Any]:
        if resource_type:
            check_type(resource_type)
            self._guard(resource_type, "r")
        if self.policy is not None and not self._internal:
            if self.policy.restricted and not resource_id:
                raise self.policy.forbidden("type and system history")
            if not resource_type and self.policy.principal.role != "admin":
                raise self.policy.forbidden("system history")
            if resource_type and resource_id and self._hidden_row(repo.get_resource(
                    self.session, tenant=self.tenant, resource_type=resource_type, resource_id=resource_id)):
                raise NotFound(f"{resource_type}/{resource_id} is not known")
        count, offset, since = self.default_count, 0, None
        for key, value in items:
            try:
                if key == "_count":
                    count = int(value)
                    if count < 0:  # as in search: a negative page size is an error, not an empty page
                        raise ValueError(value)
                    count = min(count, self.max_count)
                elif key == "_offset":
                    offset = min(max(0, int(value)), 2**31 - 1)  # past any result; a database integer
                elif key == "_since":  # a '+' of the offset that was not percent-encoded arrives as a space
                    since = searchparams.date_range(value.strip().replace(" ", "+"))[0]
            except ValueError:
                raise BadRequest(f"Invalid value for {key}", expression=key) from None
        if resource_id and resource_type:
            exists = repo.get_resource(
                self.session, tenant=self.tenant, resource_type=resource_type, resource_id=resource_id
            )
            if exists is None:
                raise NotFound(f"{resource_type}/{resource_id} is not known")
        rows, total = repo.history(
            self.session,
            tenant=self.tenant,
            resource_type=resource_type,
            resource_id=resource_id,
            since=since,
            limit=count,
            offset=offset,
        )
        path = "/".join(p for p in (resource_type, resource_id, "_history") if p)
        base_items = [("_count", str(count))] + ([("_since", instant(since))] if since else [])
        page = urlencode(base_items + [("_offset", str(offset))])
        links = [{"relation": "self", "url": f"{self.base_url}/{path}?{page}"}]
        if count > 0 and offset + count < total:  # _count=0 must not link back to itself
            links.append(
                {"relation": "next",
                 "url": f"{self.base_url}/{path}?{urlencode(base_items + [('_offset', str(offset + count))])}"}
            )
        entries = []
        for row in rows:
            stored = Stored.of(row)
            if self._hidden(stored):  # a version from before the resource entered the compartment
                continue
            entry = self._entry(stored)
            url = f"{row.resource_type}/{row.id}" if row.method != "POST" else row.resource_type
            status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[row.method]
            if row.method == "PUT" and row.version_id == 1:
                status = "201 Created"
            entry["request"] = {"method": row.method, "url": url}
            entry["response"] = {"status": status, "etag": stored.etag, "lastModified": instant(row.last_updated)}
            entries.append(entry)
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": instant(self.clock())},
            "type": "history",
            "total": total,
            "link": links,
        }
        if entries:
            bundle["entry"] = entries
        return bundle

    # ------------------------------------------------------------ bundles

    def process_bundle(self, bundle: Any, *, return_preference: str = "representation") -> dict[str, Any]:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequest("POST /fhir takes a Bundle of type transaction or batch", expression="resourceType")
        kind = bundle.get("type")
        if kind not in ("transaction", "batch"):
            raise BadRequest("Bundle.type must be transaction or batch", expression="Bundle.type")
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise BadRequest("Bundle.entry must be a list", expression="Bundle.entry")
        plans = [self._plan_entry(index, entry) for index, entry in enumerate(entries)]
        if kind == "transaction":
            return self._transaction(plans, return_preference)
        return self._batch(plans, return_preference)

    def _plan_entry(self, index: int, entry: Any) -> _EntryPlan:
        where = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
            return _EntryPlan(index, error=BadRequest("Each entry needs a request", expression=f"{where}.request"))
        request = entry["request"]
        method = request.get("method")
        url = request.get("url")
        if method not in ("GET", "POST", "PUT", "DELETE") or not isinstance(url, str) or not url:
            return _EntryPlan(
                index,
                error=BadRequest(
                    "request.method must be GET, POST, PUT or DELETE and request.url is required",
                    expression=f"{where}.request",
                ),
            )
        if url.startswith(self.base_url + "/"):
            url = url[len(self.base_url) + 1 :]
        path, _, query = url.partition("?")
        parts = [p for p in path.split("/") if p]
        return _EntryPlan(
            index,
            method=method,
            parts=parts,
            query=query,
            full_url=entry.get("fullUrl"),
            resource=entry.get("resource"),
            if_none_exist=request.get("ifNoneExist"),
            if_match=request.get("ifMatch"),
        )

    def _run_entry(self, plan: _EntryPlan, return_preference: str) -> dict[str, Any]:
        where = f"Bundle.entry[{plan.index}]"
        if plan.error:
            raise plan.error
        parts, method = plan.parts, plan.method
        if not parts:
            raise BadRequest("request.url must name a resource type", expression=f"{where}.request.url")
        resource_type = parts[0]
        try:
            check_type(resource_type)
            if method == "GET":
                if len(parts) == 1:
                    result = self.search(resource_type, parse_qsl(plan.query, keep_blank_values=True))
                    return {"resource": result, "response": {"status": "200 OK"}}
                if len(parts) == 2:
                    stored = self.read(resource_type, parts[1])
                elif len(parts) == 4 and parts[2] == "_history":
                    stored = self.vread(resource_type, parts[1], parts[3])
                else:
                    raise BadRequest("Unsupported GET url", expression=f"{where}.request.url")
                return self._entry_response(stored, "200 OK", "representation")
            if method == "POST":
                if len(parts) != 1:
                    raise BadRequest("POST url must be a resource type", expression=f"{where}.request.url")
                self._require_entry_resource(plan, resource_type)
                result = self.create(
                    resource_type, plan.resource, if_none_exist=plan.if_none_exist, resource_id=plan.assigned_id
                )
                status = "201 Created" if result.status == 201 else "200 OK"
                return self._entry_response(result.stored, status, return_preference)
            if len(parts) != 2:
                raise BadRequest(f"{method} url must be Type/id", expression=f"{where}.request.url")
            if method == "PUT":
                self._require_entry_resource(plan, resource_type)
                result = self.update(resource_type, parts[1], plan.resource, if_match=plan.if_match)
                status = "201 Created" if result.status == 201 else "200 OK"
                return self._entry_response(result.stored, status, return_preference)
            deleted = self.delete(resource_type, parts[1], if_match=plan.if_match)
            response: dict[str, Any] = {"status": "204 No Content"}
            if deleted is not None:
                response["etag"] = deleted.etag
            return {"response": response}
        except HubError as exc:
            other = "request.ifNoneExist" if method == "POST" and plan.if_none_exist else "request.url"
            exc.issues = _relocate(exc.issues, resource_type, where, other)
            raise

    def _require_entry_resource(self, plan: _EntryPlan, resource_type: str) -> None:
        if not isinstance(plan.resource, dict):
            raise BadRequest("The entry needs a resource", expression=f"Bundle.entry[{plan.index}].resource")

    def _entry_response(self, stored: Stored, status: str, preference: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "fullUrl": self._full_url(stored.resource_type, stored.id),
            "response": {
                "status": status,
                "location": stored.location,
                "etag": stored.etag,
                "lastModified": instant(stored.last_updated),
            },
        }
        if preference == "representation" and stored.content is not None:
            entry["resource"] = simplejson.RawJSON(stored.content)
        elif preference == "OperationOutcome":
            entry["response"]["outcome"] = operation_outcome([Issue("information", "informational", "OK")])
        return entry

    def _transaction(self, plans: list[_EntryPlan], preference: str) -> dict[str, Any]:
        for plan in plans:
            if plan.error:
                raise plan.error
        # assign ids to created resources first so that urn:uuid references can be resolved
        mapping: dict[str, str] = {}
        seen_full_urls: set[str] = set()
        for plan in plans:
            if plan.full_url:
                if plan.full_url in seen_full_urls:
                    raise BadRequest(
                        "fullUrl appears twice in the Bundle", expression=f"Bundle.entry[{plan.index}].fullUrl"
                    )
                seen_full_urls.add(plan.full_url)
            if plan.method == "POST" and len(plan.parts) == 1:
                plan.assigned_id = self.new_id()
                if plan.full_url:
                    mapping[plan.full_url] = f"{plan.parts[0]}/{plan.assigned_id}"
            elif plan.method == "PUT" and len(plan.parts) == 2 and plan.full_url:
                mapping[plan.full_url] = f"{plan.parts[0]}/{plan.parts[1]}"
        # conditional creates that match an existing resource point references at it
        for plan in plans:
            if plan.method == "POST" and plan.if_none_exist and len(plan.parts) == 1:
                try:
                    check_type(plan.parts[0])
                    existing = self._conditional_match(plan.parts[0], plan.if_none_exist)
                except HubError as exc:
                    where = f"Bundle.entry[{plan.index}]"
                    exc.issues = _relocate(exc.issues, plan.parts[0], where, "request.ifNoneExist")
                    raise
                if existing is not None and plan.full_url:
                    mapping[plan.full_url] = f"{existing.resource_type}/{existing.id}"
        if mapping:
            for plan in plans:
                if isinstance(plan.resource, dict):
                    _rewrite_references(plan.resource, mapping)
        order = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
        responses: dict[int, dict[str, Any]] = {}
        for plan in sorted(plans, key=lambda p: order[p.method or "GET"]):
            responses[plan.index] = self._run_entry(plan, preference)
        return {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "transaction-response",
            "entry": [responses[plan.index] for plan in plans],
        }

    def _batch(self, plans: list[_EntryPlan], preference: str) -> dict[str, Any]:
        entries = []
        for plan in plans:
            savepoint = self.session.begin_nested()
            try:
                entries.append(self._run_entry(plan, preference))
                savepoint.commit()
            except HubError as exc:
                savepoint.rollback()
                entries.append(
                    {"response": {"status": f"{exc.status_code} {exc.title}", "outcome": exc.outcome()}}
                )
        return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "batch-response", "entry": entries}


@dataclass
class _EntryPlan:
    index: int
    method: str | None = None
    parts: list[str] | None = None  # type: ignore[assignment]
    query: str = ""
    full_url: str | None = None
    resource: Any = None
    if_none_exist: str | None = None
    if_match: str | None = None
    assigned_id: str | None = None
    error: HubError | None = None

    def __post_init__(self) -> None:
        if self.parts is None:
            self.parts = []


def _rewrite_references(node: Any, mapping: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in mapping:
                node[key] = mapping[value]
            else:
                _rewrite_references(value, mapping)
    elif isinstance(node, list):
        for item in node:
            _rewrite_references(item, mapping)


__all__ = ["FhirService", "Stored", "WriteResult", "instant", "etag", "parse_etag", "Conflict", "MethodNotAllowed"]
