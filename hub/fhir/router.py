"""FHIR R4 REST endpoints under ``/fhir``: parse the HTTP request, call the service, render.

Routers stay thin: no query, no translation. Each request runs in the thread pool because the store
is synchronous: a write in one transaction with its AuditEvent (:func:`hub.deps.unit_of_work`), a read
in a read-only transaction followed by its AuditEvent's own (see :func:`run`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from hub.deps import SettingsDep, TenantDep, get_clock, read_only_work, unit_of_work
from hub.errors import (
    BadRequest,
    HubError,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
    describe,
    information_outcome,
)
from hub.fhir.capability import capability_statement
from hub.fhir.service import FhirService, Stored, WriteResult, check_type, instant, parse_etag
from hub.settings import Settings
from hub.sync.inbox import Inbox
from mappings.fhir import jsonio
from mappings.fhir.validation import Issue, validate_resource

FHIR_JSON = "application/fhir+json; charset=utf-8"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")

router = APIRouter(prefix="/fhir", tags=["FHIR R4"])
T = TypeVar("T")


# ------------------------------------------------------------------ helpers


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = body if isinstance(body, bytes | str) else jsonio.dumpb(body)
    return Response(content=content, status_code=status, headers=headers, media_type=FHIR_JSON)


def check_accept(request: Request) -> None:
    # _format overrides Accept (FHIR http.html#mime-type); search checks it too, reads must as well
    fmt = (request.query_params.get("_format") or "").lower()
    if "xml" in fmt or "turtle" in fmt or "ttl" in fmt:
        raise NotAcceptable("This server speaks JSON only (_format=json)", expression="_format")
    if fmt in ("json", *JSON_TYPES):
        return
    accept = request.headers.get("accept")
    if not accept:
        return
    wanted = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if any(w in JSON_TYPES or w in ("*/*", "application/*", "") for w in wanted):
        return
    raise NotAcceptable("This server speaks JSON only (application/fhir+json)")


def prefer(request: Request, key: str, default: str) -> str:
    for header in request.headers.getlist("prefer"):
        # preferences are comma-separated (RFC 7240): "return=minimal, handling=strict"
        for part in header.replace(",", ";").split(";"):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == key:
                return value.strip().strip('"')
    return default


async def read_json_body(request: Request, settings: Settings) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; send application/fhir+json or application/json"
        )
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request.state.raw_body = body
    if not body.strip():
        raise BadRequest("The request body is empty; a FHIR resource is expected")
    try:
        return jsonio.loads(body)
    except jsonio.InvalidJson as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None


def fhir_base(request: Request, settings: Settings) -> str:
    """The FHIR base URL: HUB_BASE_URL when configured, else the URL this request came to."""
    if settings.base_url:
        return settings.fhir_base
    return str(request.base_url).rstrip("/") + "/fhir"


def _service(session: Any, settings: Settings, tenant: str, base: str, clock: Any = None) -> FhirService:
    from hub.services import fhir_service

    return fhir_service(session, settings, tenant, base, clock)


async def keep_rejected(request: Request, settings: Settings, tenant: str, event: str, exc: HubError) -> None:
    """Store a refused write for inspection (payload encrypted), in a transaction of its own."""
    raw = getattr(request.state, "raw_body", None)
    if raw is None or exc.status_code not in (400, 409, 412, 422):
        return
    reason = describe(exc)

    def store() -> None:
        with unit_of_work(settings) as session:
            Inbox(session, tenant=tenant, settings=settings).record_rejected(
                source="fhir-api", event=event, raw=raw, reason=f"HTTP {exc.status_code}: {reason}"
            )

    await run_in_threadpool(store)


INTERACTIONS = {
    "search": "search-type", "search_post": "search-type", "read": "read", "vread": "vread", "create": "create",
    "update": "update", "delete": "delete", "instance_history": "history-instance",
    "type_history": "history-type", "system_history": "history-system", "transaction": "transaction",
}
#: interactions that only read the store (FhirService.read, vread, search, history): run() serves them
#: from a read-only transaction. capabilities (/metadata) and $validate do not touch the store.
READ_INTERACTIONS = frozenset(
    {"read", "vread", "search-type", "history-instance", "history-type", "history-system"}
)


async def run(request: Request, settings: Settings, tenant: str, work: Callable[[FhirService], T]) -> T:
    """Run ``work`` under the caller's access policy, and audit it.

    - Writes (and any interaction not known to be a read): ``work`` and its success AuditEvent in one
      transaction: both are stored, or neither.
    - Reads (:data:`READ_INTERACTIONS`): ``work`` in a read-only transaction, then the success
      AuditEvent in a short transaction of its own. On SQLite the read then neither waits for nor
      holds the single write lock (only the audit insert does), so reads no longer queue behind each
      other and behind writes. The trade-off: the read and its audit are no longer atomic. The audit
      is committed before the response is sent, and if it cannot be stored the request fails (500
      and an outcome-8 audit attempt): no read is served without its AuditEvent. What can happen is
      an audited read whose response never reached the client (as when the connection drops).
    - A failed request is audited in a transaction of its own (outcome 4 for a ``HubError``, 8 for
      anything else), reads and writes alike.
    """
    from hub.security.audit import audit_event
    from hub.security.policy import AccessPolicy

    base = fhir_base(request, settings)
    clock = request.app.dependency_overrides.get(get_clock, get_clock)()
    principal = request.state.principal
    route = request.scope.get("route")
    interaction = INTERACTIONS.get(getattr(getattr(route, "endpoint", None), "__name__", ""), "operation")
    resource_type = request.path_params.get("resource_type")
    address = request.client.host if request.client else None
    query = request.url.query if interaction == "search-type" else None

    def event(svc: FhirService, outcome: int, resource_id: str | None, why: str | None = None) -> dict[str, Any]:
        return audit_event(principal=principal, interaction=interaction, now=svc.clock(), outcome=outcome,
                           address=address, resource_type=resource_type, resource_id=resource_id, query=query,
                           description=why)

    def service(session: Any) -> FhirService:
        svc = _service(session, settings, tenant, base, clock)
        svc.policy = AccessPolicy(principal, svc)
        return svc

    def resource_id_of(result: Any) -> str | None:
        stored = getattr(result, "stored", None)
        return request.path_params.get("resource_id") or (stored.id if stored else None)

    def audit_alone(outcome: int, resource_id: str | None, why: str | None = None) -> None:
        with unit_of_work(settings) as session:
            svc = _service(session, settings, tenant, base, clock)
            svc.record_audit(event(svc, outcome, resource_id, why))

    def job() -> T:
        try:
            if interaction in READ_INTERACTIONS:
                with read_only_work(settings) as session:
                    result = work(service(session))
                audit_alone(0, resource_id_of(result))  # raises if it cannot be stored: then no response
                return result
            with unit_of_work(settings) as session:
                svc = service(session)
                result = work(svc)
                svc.record_audit(event(svc, 0, resource_id_of(result)))
                return result
        except HubError as exc:
            audit_alone(4, request.path_params.get("resource_id"), f"HTTP {exc.status_code} {exc.code}")
            raise
        except Exception:
            audit_alone(8, request.path_params.get("resource_id"), "HTTP 500")  # audited too
            raise

    return await run_in_threadpool(job)


def _version_headers(stored: Stored, settings: Settings) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_updated.replace(tzinfo=UTC), usegmt=True),
    }


def write_response(request: Request, result: WriteResult, settings: Settings) -> Response:
    stored = result.stored
    headers = _version_headers(stored, settings)
    headers["Location"] = f"{fhir_base(request, settings)}/{stored.location}"
    preference = prefer(request, "return", "representation")
    if preference == "minimal":
        return Response(status_code=result.status, headers=headers)
    if preference == "OperationOutcome":
        if result.status == 201:
            text = "Created"
        elif request.method == "POST":  # a conditional create that matched: nothing was written
            text = "A matching resource exists (If-None-Exist); nothing was created"
        else:
            text = "Updated"
        return fhir_response(information_outcome(text), result.status, headers)
    return fhir_response(stored.content or "", result.status, headers)


def _etag_matches(if_none_match: str, stored: Stored) -> bool:
    """Weak comparison (RFC 9110 13.1.2): ``*``, or any listed tag naming the current version."""
    if if_none_match.strip() == "*":
        return True
    return any(parse_etag(tag) == stored.version_id for tag in if_none_match.split(","))


def query_items(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def strict(request: Request) -> bool:
    return prefer(request, "handling", "lenient").lower() == "strict"


# ------------------------------------------------------------------ system level


@router.get("/metadata", summary="CapabilityStatement")
async def metadata(request: Request, settings: SettingsDep) -> Response:
    check_accept(request)
    published = getattr(request.app.state, "started_at", None) or instant(datetime.now(UTC).replace(tzinfo=None))
    return fhir_response(capability_statement(fhir_base(request, settings), published))


# fhirclient and fhirpy post Bundles to "[base]/": serve that too, not a 307 (some clients drop the body)
@router.post("", summary="Transaction or batch Bundle")
@router.post("/", include_in_schema=False)
async def transaction(request: Request, settings: SettingsDep, tenant: TenantDep) -> Response:
    check_accept(request)
    preference = prefer(request, "return", "representation")
    try:
        bundle = await read_json_body(request, settings)
        result = await run(
            request, settings, tenant, lambda svc: svc.process_bundle(bundle, return_preference=preference)
        )
    except HubError as exc:
        await keep_rejected(request, settings, tenant, "Bundle.transaction", exc)
        raise
    return fhir_response(result)


@router.get("/_history", summary="System history")
async def system_history(request: Request, settings: SettingsDep, tenant: TenantDep) -> Response:
    check_accept(request)
    items = query_items(request)
    return fhir_response(await run(request, settings, tenant, lambda svc: svc.history(None, None, items)))


# ------------------------------------------------------------------ type level


@router.get("/{resource_type}", summary="Search")
async def search(resource_type: str, request: Request, settings: SettingsDep, tenant: TenantDep) -> Response:
    check_accept(request)
    items, is_strict = query_items(request), strict(request)
    bundle = await run(
        request, settings, tenant, lambda svc: svc.search(resource_type, items, strict=is_strict)
    )
    return fhir_response(bundle)


@router.post("/{resource_type}/_search", summary="Search (form-encoded POST)")
async def search_post(resource_type: str, request: Request, settings: SettingsDep, tenant: TenantDep) -> Response:
    check_accept(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("", "application/x-www-form-urlencoded"):
        raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded parameters")
    form = await request.form()
    items = query_items(request) + [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    is_strict = strict(request)
    bundle = await run(
        request, settings, tenant, lambda svc: svc.search(resource_type, items, strict=is_strict)
    )
    return fhir_response(bundle)


@router.post("/{resource_type}", summary="Create (conditional with If-None-Exist)")
async def create(resource_type: str, request: Request, settings: SettingsDep, tenant: TenantDep) -> Response:
    check_accept(request)
    if_none_exist = request.headers.get("if-none-exist")
    idempotency_key = request.headers.get("idempotency-key")
    try:
        resource = await read_json_body(request, settings)
        result = await run(
            request,
            settings,
            tenant,
            lambda svc: svc.create(
                resource_type, resource, if_none_exist=if_none_exist, idempotency_key=idempotency_key
            ),
        )
    except HubError as exc:
        await keep_rejected(request, settings, tenant, f"{resource_type}.create", exc)
        raise
    return write_response(request, result, settings)


@router.get("/{resource_type}/_history", summary="Type history")
async def type_history(resource_type: str, request: Request, settings: SettingsDep, tenant: TenantDep) -> Response:
    check_accept(request)
    items = query_items(request)
    return fhir_response(await run(request, settings, tenant, lambda svc: svc.history(resource_type, None, items)))


@router.post("/{resource_type}/$validate", summary="Validate a resource")
async def validate(resource_type: str, request: Request, settings: SettingsDep, tenant: TenantDep) -> Response:
    check_accept(request)
    body = await read_json_body(request, settings)
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        params = [p for p in body.get("parameter") or [] if isinstance(p, dict) and p.get("name") == "resource"]
        if not params or "resource" not in params[0]:
            raise BadRequest("Parameters must carry a 'resource' parameter", expression="Parameters.parameter")
        body = params[0]["resource"]
    check_type(resource_type)
    issues = await run_in_threadpool(validate_resource, body, resource_type)
    if not issues:
        issues = [Issue("information", "informational", "The resource is valid FHIR R4")]
    return fhir_response({"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]})


# ------------------------------------------------------------------ instance level


@router.get("/{resource_type}/{resource_id}", summary="Read")
async def read(
    resource_type: str, resource_id: str, request: Request, settings: SettingsDep, tenant: TenantDep
) -> Response:
    check_accept(request)
    stored = await run(request, settings, tenant, lambda svc: svc.read(resource_type, resource_id))
    headers = _version_headers(stored, settings)
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and _etag_matches(if_none_match, stored):
        return Response(status_code=304, headers=headers)
    return fhir_response(stored.content or "", 200, headers)


@router.put("/{resource_type}/{resource_id}", summary="Update (or create with a client id)")
async def update(
    resource_type: str, resource_id: str, request: Request, settings: SettingsDep, tenant: TenantDep
) -> Response:
    check_accept(request)
    if_match = request.headers.get("if-match")
    try:
        resource = await read_json_body(request, settings)
        result = await run(
            request, settings, tenant, lambda svc: svc.update(resource_type, resource_id, resource, if_match=if_match)
        )
    except HubError as exc:
        await keep_rejected(request, settings, tenant, f"{resource_type}.update", exc)
        raise
    return write_response(request, result, settings)


@router.delete("/{resource_type}/{resource_id}", summary="Delete")
async def delete(
    resource_type: str, resource_id: str, request: Request, settings: SettingsDep, tenant: TenantDep
) -> Response:
    if_match = request.headers.get("if-match")
    stored = await run(request, settings, tenant, lambda svc: svc.delete(resource_type, resource_id, if_match=if_match))
    headers = {"ETag": stored.etag} if stored else {}
    return Response(status_code=204, headers=headers)


@router.get("/{resource_type}/{resource_id}/_history", summary="Instance history")
async def instance_history(
    resource_type: str, resource_id: str, request: Request, settings: SettingsDep, tenant: TenantDep
) -> Response:
    check_accept(request)
    items = query_items(request)
    bundle = await run(request, settings, tenant, lambda svc: svc.history(resource_type, resource_id, items))
    return fhir_response(bundle)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}", summary="Version read")
async def vread(
    resource_type: str,
    resource_id: str,
    version_id: str,
    request: Request,
    settings: SettingsDep,
    tenant: TenantDep,
) -> Response:
    check_accept(request)
    stored = await run(request, settings, tenant, lambda svc: svc.vread(resource_type, resource_id, version_id))
    return fhir_response(stored.content or "", 200, _version_headers(stored, settings))
