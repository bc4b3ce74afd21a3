"""The dashboard (``/dashboard``): server-rendered pages for administrators over the same services as
the admin API (:class:`hub.sync.admin.AdminViews`, :class:`hub.sync.actions.SyncActions`, the referral
services), each read or action in one transaction, scoped to the signed-in client's tenant.

Sign-in takes the client id and secret of an ``admin`` client of the hub and checks them exactly as
``POST /auth/token`` does (:meth:`hub.security.clients.ClientService.token`); the session is the
``hub_session`` cookie (:mod:`hub.dashboard.session`), recorded in the store at sign-in and deleted at
sign-out, so that a copied cookie dies with its session on every replica. Every request checks that
record and the client's revocation as the API checks bearer tokens (:mod:`hub.security.revocation`),
so revoking the client ends its sessions. Every
POST carries the session's CSRF token; actions answer 303 with a sealed notice. Pages show ids,
statuses, counts, times and error texts, never names or payloads. No script runs: the pages need
nothing but the static stylesheet, and their Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hub.dashboard import session as sessions
from hub.dashboard.session import COOKIE_PATH, SESSION_COOKIE, SIGNIN_COOKIE, DashboardSession
from hub.deps import ClockDep, SettingsDep
from hub.errors import BadRequest, Conflict, HubError
from hub.security.principal import DEVELOPMENT, Principal
from hub.settings import Settings
from hub.sync import events as ev
from hub.unit_of_work import unit_of_work

log = logging.getLogger("hub.dashboard")
HERE = Path(__file__).parent
T = TypeVar("T")
MAX_INT = 2**31 - 1
PAGE_SIZES = (25, 50, 100, 200)
#: the app's policy (nothing from anywhere) plus the dashboard's own stylesheet and forms
CSP = "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
NOTICES = {"expired": "Your session ended; please sign in again.", "signed-out": "You are signed out."}
REFUSED = "Sign-in failed: unknown client, wrong secret, or not an administrator client."

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True,
)
templates.filters["ts"] = lambda v: (v or "").replace("T", " ").replace(".000Z", "Z") or "—"
templates.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.1f} %"
templates.filters["q"] = lambda v: quote(str(v), safe="")


# ------------------------------------------------------------------ signals of the dependencies


class SignInRequired(Exception):
    """No valid session: the request is answered with a redirect to the sign-in page."""

    def __init__(self, notice: str | None = None) -> None:
        super().__init__(notice or "sign in")
        self.notice = notice


class CsrfRefused(HubError):
    status_code = 403
    code = "forbidden"
    title = "The form is stale or did not come from this dashboard; reload the page and try again"


class DashboardRoute(APIRoute):
    """Answers in HTML: a missing session redirects to sign-in, an error is an error page; the
    Content-Security-Policy is the dashboard's, and an active session's cookie is renewed."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired as exc:
                target = "/dashboard/signin" + (f"?notice={exc.notice}" if exc.notice else "")
                response = RedirectResponse(target, status_code=303)
                _clear(response, SESSION_COOKIE)
                request.state.dashboard_cookie = None
            except HubError as exc:
                response = render(request, "error.html", status=exc.status_code, error=str(exc))
            except RequestValidationError:
                response = render(request, "error.html", status=400, error="Invalid request")
            renewed = getattr(request.state, "dashboard_cookie", None)
            if renewed:
                _set_cookie(request, response, SESSION_COOKIE, renewed, sessions.IDLE)
            response.headers["Content-Security-Policy"] = CSP
            return response

        return route


router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)


# ------------------------------------------------------------------ cookies, rendering, transactions


def _secure(request: Request) -> bool:
    settings: Settings = request.state.dashboard_settings
    if settings.base_url:
        return settings.base_url.startswith("https://")
    return request.url.scheme == "https"


def _set_cookie(request: Request, response: Response, name: str, value: str, lifetime: timedelta) -> None:
    response.set_cookie(name, value, max_age=int(lifetime.total_seconds()), path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=_secure(request))


def _clear(response: Response, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict")


def render(request: Request, name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    user: User | None = getattr(request.state, "dashboard_user", None)
    html = templates.get_template(name).render(user=user, path=request.url.path, **context)
    return HTMLResponse(html, status_code=status)


async def run(settings: Settings, work: Callable[[Session], T]) -> T:
    def job() -> T:
        with unit_of_work(settings) as session:
            return work(session)

    return await run_in_threadpool(job)


def _address(request: Request) -> str:
    return request.client.host if request.client else "?"


# ------------------------------------------------------------------ who is signed in


class User:
    """The signed-in administrator: the principal of the request and its session."""

    def __init__(self, principal: Principal, session: DashboardSession, settings: Settings,
                 clock: Callable[[], datetime], now: datetime) -> None:
        self.principal = principal
        self.session = session
        self.settings = settings
        self.clock = clock
        self.now = now

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    @property
    def client_id(self) -> str:
        return self.principal.client_id

    @property
    def csrf(self) -> str:
        return self.session.csrf

    def flash(self, kind: str, text: str) -> str:
        return sessions.seal_flash(sessions.box_for(self.settings), self.session, kind, text, self.now)


def _still_valid(settings: Settings, session: DashboardSession) -> bool:
    """The session is recorded in the store (not signed out, on any replica), and its client passes the
    API's own check of bearer tokens: registered and not revoked (a revocation in this process counts
    at once, one in another process within seconds: :mod:`hub.security.revocation`)."""
    from hub.security import tokens
    from hub.store.dashboard_repository import session_is_live

    try:
        tokens.refuse_revoked(settings.database_url, session.client_id)
    except tokens.TokenError:
        return False
    with unit_of_work(settings, readonly=True) as db:  # never waits for the SQLite writer
        return session_is_live(db, sid=session.sid, client_id=session.client_id, tenant=session.tenant)


def _start(settings: Settings, session: DashboardSession, now: datetime) -> None:
    from hub.store.dashboard_repository import start_session

    with unit_of_work(settings) as db:
        start_session(db, sid=session.sid, client_id=session.client_id, tenant=session.tenant, now=now,
                      started_after=now - sessions.ABSOLUTE)


def _end(settings: Settings, session: DashboardSession) -> None:
    from hub.store.dashboard_repository import end_session

    with unit_of_work(settings) as db:
        end_session(db, sid=session.sid)


async def current_user(request: Request, settings: SettingsDep, clock: ClockDep) -> User:
    now = clock()
    request.state.dashboard_settings = settings
    box = sessions.box_for(settings)
    token = request.cookies.get(SESSION_COOKIE)
    session = sessions.open_session(box, token, now)
    if settings.auth_disabled:  # development: like the API, everyone is an admin of the default tenant
        if session is None or not session.development or session.tenant != settings.default_tenant:
            session = sessions.new_session(DEVELOPMENT.client_id, settings.default_tenant, now,
                                           scope=DEVELOPMENT.scope, development=True)
            request.state.dashboard_cookie = session.seal(box, now)
        principal = Principal.of(DEVELOPMENT.client_id, settings.default_tenant, "admin", DEVELOPMENT.scope, None)
    else:
        if session is None or session.development:
            raise SignInRequired("expired" if token else None)
        if not await run_in_threadpool(_still_valid, settings, session):
            raise SignInRequired("expired")
        principal = Principal.of(session.client_id, session.tenant, "admin", session.scope, None)
    if session.needs_refresh(now) and not getattr(request.state, "dashboard_cookie", None):
        request.state.dashboard_cookie = session.touched(now).seal(box, now)
    user = User(principal, session, settings, clock, now)
    request.state.dashboard_user = user
    return user


UserDep = Annotated[User, Depends(current_user)]


async def checked_form(request: Request, user: UserDep) -> dict[str, str]:
    """The form of a POST, after its CSRF token was checked against the session (403 otherwise)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CsrfRefused()
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if not user.session.csrf_ok(form.get("csrf")):
        raise CsrfRefused()
    return form


FormDep = Annotated[dict[str, str], Depends(checked_form)]


def _done(path: str, user: User, kind: str, text: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode({'flash': user.flash(kind, text)})}", status_code=303)


def _notice(request: Request, user: User) -> dict[str, str] | None:
    return sessions.open_flash(sessions.box_for(user.settings), user.session, request.query_params.get("flash"),
                               user.now)


# ------------------------------------------------------------------ sign-in and sign-out


@cache
def _stylesheet() -> bytes:
    return (HERE / "static" / "dashboard.css").read_bytes()


@router.get("/static/dashboard.css")
async def stylesheet() -> Response:
    return Response(_stylesheet(), media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


def _signin_page(request: Request, settings: Settings, now: datetime, *, status: int = 200,
                 error: str | None = None, client_id: str = "") -> HTMLResponse:
    cookie, token = sessions.signin_form(sessions.box_for(settings), now)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    response = render(request, "signin.html", status=status, csrf=token, error=error, notice=notice,
                      client_id=client_id)
    _set_cookie(request, response, SIGNIN_COOKIE, cookie, sessions.SIGNIN_FORM_TTL)
    return response


@router.get("/signin")
async def signin_form(request: Request, settings: SettingsDep, clock: ClockDep) -> Response:
    request.state.dashboard_settings = settings
    if settings.auth_disabled:
        return RedirectResponse("/dashboard", status_code=303)
    return _signin_page(request, settings, clock())


def _verify_admin(settings: Settings, client_id: str, secret: str, now: datetime) -> Principal | None:
    """The admin principal of these credentials, checked by the token endpoint's own code; else None.

    The access token that check returns stays here: it only tells the client's tenant and role."""
    from hub.security import tokens
    from hub.security.clients import AuthFailed, ClientService

    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    try:
        with unit_of_work(settings) as db:
            issued = ClientService(db, settings=settings, now=now).token(form, audiences=[], basic=None)
        claims = tokens.verify(issued["access_token"], secrets=[settings.secret_key.get_secret_value()], now=now)
    except (AuthFailed, tokens.TokenError):
        return None
    if claims.role != "admin":
        return None
    return Principal.of(claims.client_id, claims.tenant, claims.role, claims.scope, None)


#: the dashboard's sign-in throttle (limits and window; the counts are rows in the store)
SIGNIN_GUARD = sessions.SignInGuard()


@router.post("/signin")
async def signin(request: Request, settings: SettingsDep, clock: ClockDep) -> Response:
    request.state.dashboard_settings = settings
    now = clock()
    if settings.auth_disabled:
        return RedirectResponse("/dashboard", status_code=303)
    throttle = SIGNIN_GUARD  # its state is in the store: shared by every API replica
    address = _address(request)
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    client_id, secret = form.get("client_id", "").strip()[:200], form.get("client_secret", "")[:500]

    def in_store(work: Callable[[Session], T]) -> Awaitable[T]:
        return run(settings, work)

    wait = await in_store(lambda db: throttle.retry_after(db, client_id, address, now))
    if wait is not None:
        response = render(request, "error.html", status=429,
                          error=f"Too many failed sign-ins from this address; try again in {wait} seconds.")
        response.headers["Retry-After"] = str(wait)
        return response
    box = sessions.box_for(settings)
    if not sessions.signin_form_ok(box, request.cookies.get(SIGNIN_COOKIE), form.get("csrf"), now):
        return _signin_page(request, settings, now, status=403, client_id=client_id,
                            error="The sign-in form expired or did not come from this dashboard; try again.")
    principal = await run_in_threadpool(_verify_admin, settings, client_id, secret, now)
    if principal is None:
        await in_store(lambda db: throttle.failed(db, client_id, address, now))
        log.info("hub.dashboard.signin_refused")
        return _signin_page(request, settings, now, status=401, client_id=client_id, error=REFUSED)
    await in_store(lambda db: throttle.succeeded(db, client_id, address))
    session = sessions.new_session(principal.client_id, principal.tenant, now, scope=principal.scope)
    await run_in_threadpool(_start, settings, session, now)
    log.info("hub.dashboard.signin", extra={"client_id": principal.client_id, "tenant": principal.tenant})
    response = RedirectResponse("/dashboard", status_code=303)
    _clear(response, SIGNIN_COOKIE)
    _set_cookie(request, response, SESSION_COOKIE, session.seal(box, now), sessions.IDLE)
    return response


@router.post("/signout")
async def signout(request: Request, user: UserDep, form: FormDep) -> Response:
    request.state.dashboard_cookie = None
    if not user.session.development:  # the cookie is cleared here; the session ends everywhere
        await run_in_threadpool(_end, user.settings, user.session)
    target = "/dashboard" if user.settings.auth_disabled else "/dashboard/signin?notice=signed-out"
    response = RedirectResponse(target, status_code=303)
    _clear(response, SESSION_COOKIE)
    return response


# ------------------------------------------------------------------ overview


def _referral_work(request: Request, user: User, work: Callable[[Any], T]) -> Callable[[Session], T]:
    """``work(plan_service)`` in the caller's transaction, audited like the referral API's reads."""
    from hub.fhir.router import fhir_base
    from hub.referrals.plans import PlanService
    from hub.security.audit import audit_event
    from hub.services import fhir_service

    base = fhir_base(request, user.settings)
    address = request.client.host if request.client else None

    def job(session: Session) -> T:
        from hub.security.policy import AccessPolicy

        # the scopes GET /referrals and /fhir apply
        fhir = fhir_service(session, user.settings, user.tenant, base, user.clock,
                            policy=AccessPolicy(user.principal, session=session, tenant=user.tenant))
        result = work(PlanService(fhir, payer_rules=user.settings.certification_rules, clinics=user.settings.clinics))
        fhir.record_audit(audit_event(principal=user.principal, interaction="search-type", now=fhir.clock(), outcome=0,
                                      address=address, resource_type="Task",
                                      description=f"{request.method} {request.url.path}"))
        return result

    return job


#: what the referral views search: their Tasks (the referral and obligation Tasks) and ServiceRequests
REFERRAL_VIEW_TYPES = ("Task", "ServiceRequest")
NO_REFERRAL_SCOPE = ("The signed-in client's scopes do not allow searching Task and ServiceRequest, "
                     "so referrals and obligations are not shown.")


def _sees_referrals(user: User) -> bool:
    return all(user.principal.can(t, "s") and user.principal.can(t, "r") for t in REFERRAL_VIEW_TYPES)


@router.get("")
async def overview(request: Request, user: UserDep) -> Response:
    from hub.sync.admin import AdminViews

    since = user.now - timedelta(hours=24)

    def work(session: Session) -> dict[str, Any]:
        views = AdminViews(session, tenant=user.tenant)
        counts = {s: views.messages(status=s, since=since, limit=1)["total"] for s in ev.MESSAGE_STATUSES}
        return {"connectors": views.connectors(), "counts": counts}

    def referrals(plans: Any) -> dict[str, Any]:
        return {"referrals": plans.list_referrals(), "obligations": plans.certifications()}

    data = await run(user.settings, work)
    loop = (await run(user.settings, _referral_work(request, user, referrals)) if _sees_referrals(user)
            else {"referrals": [], "obligations": []})
    by_status = Counter(r["status"] or "unknown" for r in loop["referrals"])
    overdue = sum(1 for o in loop["obligations"] if o["overdue"])
    return render(request, "overview.html", connectors=data["connectors"], counts=data["counts"],
                  total=sum(data["counts"].values()), since=since.isoformat(timespec="seconds"),
                  referrals=sorted(by_status.items()), referral_total=len(loop["referrals"]),
                  due=len(loop["obligations"]) - overdue, overdue=overdue, notice=_notice(request, user),
                  referrals_hidden=None if _sees_referrals(user) else NO_REFERRAL_SCOPE)


# ------------------------------------------------------------------ messages


def _when(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be a date and time like 2026-03-02T09:30 (UTC)") from None


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value else default
    except ValueError:
        return default
    return min(max(number, low), high)


@router.get("/messages")
async def messages(request: Request, user: UserDep) -> Response:
    from hub.sync.admin import AdminViews

    query = request.query_params
    filters = {k: (query.get(k) or "").strip()[:200]
               for k in ("status", "connector", "resource_type", "correlation_id", "since", "until")}
    limit = _int(query.get("limit"), 50, 1, 500)
    offset = _int(query.get("offset"), 0, 0, MAX_INT)
    error, page, names = None, {"total": 0, "items": []}, []
    try:
        since, until = _when("since", filters["since"]), _when("until", filters["until"])

        def work(session: Session) -> tuple[dict[str, Any], list[str]]:
            views = AdminViews(session, tenant=user.tenant)
            names = sorted(views.connector_names().values())
            return views.messages(
                status=filters["status"] or None, connector=filters["connector"] or None,
                correlation_id=filters["correlation_id"] or None, resource_type=filters["resource_type"] or None,
                since=since, until=until, limit=limit, offset=offset,
            ), names

        page, names = await run(user.settings, work)
    except HubError as exc:  # a filter the views refused: show the form again with the reason
        error = str(exc)
    kept = {k: v for k, v in filters.items() if v}
    if limit != 50:
        kept["limit"] = str(limit)

    def link(at: int) -> str:
        return "/dashboard/messages?" + urlencode({**kept, "offset": str(at)})

    previous = link(max(0, offset - limit)) if offset > 0 else None
    following = link(offset + limit) if offset + limit < page["total"] else None
    return render(request, "messages.html", status=400 if error else 200, page=page, filters=filters,
                  limit=limit, offset=offset, statuses=ev.MESSAGE_STATUSES, connectors=names,
                  page_sizes=PAGE_SIZES, previous=previous, following=following, error=error)


@router.get("/messages/{message_id}")
async def message(message_id: str, request: Request, user: UserDep) -> Response:
    from hub.sync.admin import AdminViews

    view = await run(user.settings, lambda s: AdminViews(s, tenant=user.tenant).message(message_id))
    return render(request, "message.html", message=view, notice=_notice(request, user),
                  retryable=(ev.DEAD, ev.RETRYING))


@router.post("/messages/{message_id}/replay")
async def replay(message_id: str, user: UserDep, form: FormDep) -> Response:
    from hub.sync.actions import SyncActions

    try:
        new_id = await run(user.settings, lambda s: SyncActions(
            s, tenant=user.tenant, settings=user.settings).replay_message(message_id).id)
    except Conflict as exc:
        return _done(f"/dashboard/messages/{quote(message_id, safe='')}", user, "error", str(exc))
    return _done(f"/dashboard/messages/{quote(new_id, safe='')}", user, "ok",
                 f"Replayed message {message_id} as this new message.")


@router.post("/jobs/{job_id}/retry")
async def retry(job_id: int, user: UserDep, form: FormDep) -> Response:
    from hub.sync.actions import SyncActions
    from hub.sync.admin import AdminViews

    if not 1 <= job_id <= MAX_INT:
        raise BadRequest("No such delivery job")

    def work(session: Session) -> tuple[str, str | None]:
        owner = AdminViews(session, tenant=user.tenant).job(job_id)["message_id"]  # 404 for another tenant
        try:
            SyncActions(session, tenant=user.tenant, settings=user.settings).retry_job(job_id)
        except Conflict as exc:
            return owner, str(exc)
        return owner, None

    message_id, refused = await run(user.settings, work)
    target = f"/dashboard/messages/{quote(message_id, safe='')}"
    if refused:
        return _done(target, user, "error", refused)
    return _done(target, user, "ok", f"Delivery job {job_id} will be tried again now.")


@router.post("/jobs/{job_id}/discard")
async def discard(job_id: int, user: UserDep, form: FormDep) -> Response:
    from hub.sync.actions import SyncActions
    from hub.sync.admin import AdminViews

    if not 1 <= job_id <= MAX_INT:
        raise BadRequest("No such delivery job")

    def work(session: Session) -> tuple[str, str | None]:
        owner = AdminViews(session, tenant=user.tenant).job(job_id)["message_id"]  # 404 for another tenant
        try:
            SyncActions(session, tenant=user.tenant, settings=user.settings).discard_job(
                job_id, reason=form.get("reason", ""), actor=user.principal.client_id)
        except (BadRequest, Conflict) as exc:
            return owner, str(exc)
        return owner, None

    message_id, refused = await run(user.settings, work)
    target = f"/dashboard/messages/{quote(message_id, safe='')}"
    if refused:
        return _done(target, user, "error", refused)
    return _done(target, user, "ok", f"Dead letter {job_id} is discarded: it will not be delivered.")


# ------------------------------------------------------------------ dead letters


@router.get("/dead-letters")
async def dead_letters(request: Request, user: UserDep) -> Response:
    from hub.sync.admin import AdminViews

    def work(session: Session) -> list[dict[str, Any]]:
        views = AdminViews(session, tenant=user.tenant)
        return [{"connector": c, "dead": views.jobs(dead="outstanding", connector=c["name"], limit=100)}
                for c in views.connectors()]

    groups = await run(user.settings, work)
    return render(request, "dead_letters.html", groups=groups, notice=_notice(request, user))


@router.post("/dead-letters/{connector}/replay")
async def replay_dead(connector: str, user: UserDep, form: FormDep) -> Response:
    from hub.sync.actions import SyncActions

    replays = await run(user.settings, lambda s: SyncActions(
        s, tenant=user.tenant, settings=user.settings).replay_dead(connector=connector))
    text = (f"Replayed {len(replays)} message(s) with dead letters at {connector}." if replays
            else f"Nothing to replay at {connector}: its dead letters were replayed already.")
    return _done("/dashboard/dead-letters", user, "ok", text)


# ------------------------------------------------------------------ connectors


@router.get("/connectors")
async def connectors(request: Request, user: UserDep) -> Response:
    from hub.sync.admin import AdminViews

    items = await run(user.settings, lambda s: AdminViews(s, tenant=user.tenant).connectors())
    return render(request, "connectors.html", connectors=items, with_test=True, notice=_notice(request, user))


@router.post("/connectors/{name}/test")
async def test_connector(name: str, user: UserDep, form: FormDep) -> Response:
    from hub.sync.connectors import check_health

    result = await run_in_threadpool(check_health, user.settings, user.tenant, name)
    text = f"Test of {name}: {'OK' if result['ok'] else 'FAILED'} in {result['duration_ms']} ms — {result['detail']}"
    return _done("/dashboard/connectors", user, "ok" if result["ok"] else "error", text)


# ------------------------------------------------------------------ referrals


@router.get("/referrals")
async def referrals(request: Request, user: UserDep) -> Response:
    status = (request.query_params.get("status") or "").strip()[:40]
    include_done = request.query_params.get("include_done") == "1"

    def work(plans: Any) -> dict[str, Any]:
        return {"referrals": plans.list_referrals(status=status or None),
                "obligations": plans.certifications(include_done=include_done)}

    if not _sees_referrals(user):  # as GET /referrals answers this token: 403, explained
        return render(request, "error.html", status=403, error=NO_REFERRAL_SCOPE)
    data = await run(user.settings, _referral_work(request, user, work))
    return render(request, "referrals.html", status_filter=status, include_done=include_done,
                  task_statuses=("requested", "received", "accepted", "rejected", "in-progress", "on-hold",
                                 "completed", "cancelled"), **data)
