"""Sign-in and sign-out of the dashboard, and its stylesheet.

Sign-in takes the client id and secret of an ``admin`` client of the hub and checks them exactly as
``POST /auth/token`` does (:meth:`hub.security.clients.ClientService.token`), behind the sign-in
throttle; the session is recorded in the store at sign-in and deleted at sign-out, so that a copied
cookie dies with its session on every replica."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hub.dashboard import session as sessions
from hub.dashboard.pages import (
    HERE,
    FormDep,
    T,
    UserDep,
    clear_cookie,
    client_address,
    render,
    run,
    set_cookie,
)
from hub.dashboard.session import SESSION_COOKIE, SIGNIN_COOKIE, DashboardSession
from hub.deps import ClockDep, SettingsDep
from hub.security import tokens
from hub.security.clients import AuthFailed, ClientService
from hub.security.principal import Principal
from hub.settings import Settings
from hub.store.dashboard_repository import end_session, start_session
from hub.unit_of_work import unit_of_work

log = logging.getLogger("hub.dashboard")
NOTICES = {"expired": "Your session ended; please sign in again.", "signed-out": "You are signed out."}
REFUSED = "Sign-in failed: unknown client, wrong secret, or not an administrator client."


def _start(settings: Settings, session: DashboardSession, now: datetime) -> None:
    with unit_of_work(settings) as db:
        start_session(db, sid=session.sid, client_id=session.client_id, tenant=session.tenant, now=now,
                      started_after=now - sessions.ABSOLUTE)


def _end(settings: Settings, session: DashboardSession) -> None:
    with unit_of_work(settings) as db:
        end_session(db, sid=session.sid)


@cache
def _stylesheet() -> bytes:
    return (HERE / "static" / "dashboard.css").read_bytes()


async def stylesheet() -> Response:
    return Response(_stylesheet(), media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


def _signin_page(request: Request, settings: Settings, now: datetime, *, status: int = 200,
                 error: str | None = None, client_id: str = "") -> HTMLResponse:
    cookie, token = sessions.signin_form(sessions.box_for(settings), now)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    response = render(request, "signin.html", status=status, csrf=token, error=error, notice=notice,
                      client_id=client_id)
    set_cookie(request, response, SIGNIN_COOKIE, cookie, sessions.SIGNIN_FORM_TTL)
    return response


async def signin_form(request: Request, settings: SettingsDep, clock: ClockDep) -> Response:
    request.state.dashboard_settings = settings
    if settings.auth_disabled:
        return RedirectResponse("/dashboard", status_code=303)
    return _signin_page(request, settings, clock())


def _verify_admin(settings: Settings, client_id: str, secret: str, now: datetime) -> Principal | None:
    """The admin principal of these credentials, checked by the token endpoint's own code; else None.

    The access token that check returns stays here: it only tells the client's tenant and role."""
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


async def signin(request: Request, settings: SettingsDep, clock: ClockDep) -> Response:
    request.state.dashboard_settings = settings
    now = clock()
    if settings.auth_disabled:
        return RedirectResponse("/dashboard", status_code=303)
    throttle = SIGNIN_GUARD  # its state is in the store: shared by every API replica
    address = client_address(request)
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
    clear_cookie(response, SIGNIN_COOKIE)
    set_cookie(request, response, SESSION_COOKIE, session.seal(box, now), sessions.IDLE)
    return response


async def signout(request: Request, user: UserDep, form: FormDep) -> Response:
    request.state.dashboard_cookie = None
    if not user.session.development:  # the cookie is cleared here; the session ends everywhere
        await run_in_threadpool(_end, user.settings, user.session)
    target = "/dashboard" if user.settings.auth_disabled else "/dashboard/signin?notice=signed-out"
    response = RedirectResponse(target, status_code=303)
    clear_cookie(response, SESSION_COOKIE)
    return response
