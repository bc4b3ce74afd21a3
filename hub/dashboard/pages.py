"""What every dashboard page shares: the HTML route (sign-in redirect, error page, the dashboard's
Content-Security-Policy, the renewed session cookie), the templates, cookies and transactions, the
signed-in administrator (:class:`User`, whose session record and client revocation are checked on
every request) and the CSRF check of every POST, with the sealed notice an action answers with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hub.dashboard import session as sessions
from hub.dashboard.session import COOKIE_PATH, SESSION_COOKIE, DashboardSession
from hub.deps import ClockDep, SettingsDep
from hub.errors import HubError
from hub.security import tokens
from hub.security.principal import DEVELOPMENT, Principal
from hub.settings import Settings
from hub.store.dashboard_repository import session_is_live
from hub.unit_of_work import unit_of_work

HERE = Path(__file__).parent
T = TypeVar("T")
MAX_INT = 2**31 - 1
PAGE_SIZES = (25, 50, 100, 200)
#: the app's policy (nothing from anywhere) plus the dashboard's own stylesheet and forms
CSP = "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True,
)
templates.filters["ts"] = lambda v: (v or "").replace("T", " ").replace(".000Z", "Z") or "—"
templates.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.1f} %"
templates.filters["q"] = lambda v: quote(str(v), safe="")
templates.filters["usd"] = lambda cents: "—" if cents is None else (
    f"{'-' if cents < 0 else ''}${abs(cents) // 100:,}.{abs(cents) % 100:02d}")
templates.filters["day"] = lambda v: v.isoformat() if v is not None else "—"


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
                clear_cookie(response, SESSION_COOKIE)
                request.state.dashboard_cookie = None
            except HubError as exc:
                response = render(request, "error.html", status=exc.status_code, error=str(exc))
            except RequestValidationError:
                response = render(request, "error.html", status=400, error="Invalid request")
            renewed = getattr(request.state, "dashboard_cookie", None)
            if renewed:
                set_cookie(request, response, SESSION_COOKIE, renewed, sessions.IDLE)
            response.headers["Content-Security-Policy"] = CSP
            return response

        return route


# ------------------------------------------------------------------ cookies, rendering, transactions


def _secure(request: Request) -> bool:
    settings: Settings = request.state.dashboard_settings
    if settings.base_url:
        return settings.base_url.startswith("https://")
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, lifetime: timedelta) -> None:
    response.set_cookie(name, value, max_age=int(lifetime.total_seconds()), path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=_secure(request))


def clear_cookie(response: Response, name: str) -> None:
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


def client_address(request: Request) -> str:
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
    try:
        tokens.refuse_revoked(settings.database_url, session.client_id)
    except tokens.TokenError:
        return False
    with unit_of_work(settings, readonly=True) as db:  # never waits for the SQLite writer
        return session_is_live(db, sid=session.sid, client_id=session.client_id, tenant=session.tenant)


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


def done(path: str, user: User, kind: str, text: str) -> RedirectResponse:
    """The answer of an action: 303 to ``path``, with the action's notice sealed for this session."""
    return RedirectResponse(f"{path}?{urlencode({'flash': user.flash(kind, text)})}", status_code=303)


def notice(request: Request, user: User) -> dict[str, str] | None:
    """The notice an action sealed for this page (its ``flash`` parameter), if it is this session's."""
    return sessions.open_flash(sessions.box_for(user.settings), user.session, request.query_params.get("flash"),
                               user.now)
