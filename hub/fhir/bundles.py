"""Bundle processing of the FHIR store: ``POST /fhir`` with a transaction (all or nothing, urn:uuid
references resolved, entries in the order DELETE, POST, PUT, GET) or a batch (each entry in a
savepoint of its own). Each entry is one store operation: its change events are reacted to before
the next entry runs (see :mod:`hub.fhir.events`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import simplejson
from sqlalchemy.orm import Session

from hub.errors import BadRequest, HubError, operation_outcome
from hub.fhir.stored import Stored, check_type, instant
from hub.unit_of_work import savepoint
from mappings.fhir.references import replace_references
from mappings.fhir.validation import Issue

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


class BundleProcessing:
    """The Bundle interactions of :class:`hub.fhir.service.FhirService` (a part of it: each entry runs
    through the store's own read, search, create, update and delete)."""

    session: Session
    base_url: str
    new_id: Callable[[], str]

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
                    plan.resource = replace_references(plan.resource, mapping)
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
            part = savepoint(self.session)
            try:
                entries.append(self._run_entry(plan, preference))
                part.commit()
            except HubError as exc:
                part.rollback()
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
