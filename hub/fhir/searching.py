"""Search and history of the FHIR store: the searchset and history Bundles, their paging links and
what comes along (``_include``), under the caller's policy."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import simplejson
from sqlalchemy.orm import Session

from hub.errors import BadRequest, NotFound, operation_outcome
from hub.fhir import dates, searchparams
from hub.fhir.policy import StorePolicy
from hub.fhir.search import ParsedSearch
from hub.fhir.stored import Stored, check_type, instant
from hub.store import repository as repo
from hub.store.models import Resource


class SearchBundles:
    """The search and history interactions of :class:`hub.fhir.service.FhirService` (a part of it:
    the store's session, tenant, policy, guards and query parsing are its own)."""

    session: Session
    tenant: str
    base_url: str
    default_count: int
    max_count: int
    clock: Callable[[], datetime]
    policy: StorePolicy | None
    _internal: int

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
                    since = dates.date_range(value.strip().replace(" ", "+"))[0]
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
