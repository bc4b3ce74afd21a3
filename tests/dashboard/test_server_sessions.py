"""Dashboard sessions live in the store: signing out ends a session on every replica, so a copy of
its cookie is refused at once (not only when it idles out)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hub.security.clients import NewClient
from hub.settings import Settings
from hub.store.models import DashboardSessionRecord
from hub.unit_of_work import unit_of_work
from tests.dashboard.conftest import Clock, signed_in, web_client

SESSION = "hub_session"


def _browser_with(settings: Settings, clock: Clock, cookie: str) -> TestClient:
    """Another browser (on another replica: a second app on the same store) holding ``cookie``."""
    browser = web_client(settings, clock)
    browser.cookies.set(SESSION, cookie, domain="testserver.local", path="/dashboard")
    return browser


def _recorded(settings: Settings) -> int:
    with unit_of_work(settings) as session:
        return int(session.scalar(select(func.count()).select_from(DashboardSessionRecord)) or 0)


def test_a_copied_cookie_dies_with_its_signed_out_session_on_every_replica(
    auth_settings: Settings, web: TestClient, admin: NewClient, clock: Clock
) -> None:
    csrf = signed_in(web, admin)
    copied = web.cookies[SESSION]
    with _browser_with(auth_settings, clock, copied) as thief:
        assert thief.get("/dashboard/connectors", follow_redirects=False).status_code == 200  # a live session
        signed_out = web.post("/dashboard/signout", data={"csrf": csrf}, follow_redirects=False)
        assert signed_out.status_code == 303
        clock.advance(seconds=5)  # well within the 30 minutes the cookie itself would still be accepted
        refused = thief.get("/dashboard/connectors", follow_redirects=False)
        assert refused.status_code == 303 and refused.headers["location"] == "/dashboard/signin?notice=expired"
        assert thief.post("/dashboard/jobs/1/retry", data={"csrf": csrf}, follow_redirects=False
                          ).headers["location"].startswith("/dashboard/signin")


def test_signing_out_ends_only_that_session(
    auth_settings: Settings, web: TestClient, admin: NewClient, clock: Clock
) -> None:
    csrf = signed_in(web, admin)
    with web_client(auth_settings, clock) as laptop:
        signed_in(laptop, admin)
        assert web.post("/dashboard/signout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        assert laptop.get("/dashboard/connectors", follow_redirects=False).status_code == 200


def test_a_sealed_cookie_without_a_session_record_is_refused(
    auth_settings: Settings, web: TestClient, admin: NewClient, clock: Clock
) -> None:
    """A cookie sealed with the hub's key but naming a session the store does not hold is refused:
    the cookie alone is no proof of a sign-in."""
    from hub.dashboard import session as sessions

    signed_in(web, admin)
    unknown = sessions.new_session(admin.client_id, "default", clock())
    with _browser_with(auth_settings, clock, unknown.seal(sessions.box_for(auth_settings), clock())) as forged:
        assert forged.get("/dashboard", follow_redirects=False).status_code == 303


def test_expired_sessions_are_purged_at_the_next_sign_in(
    auth_settings: Settings, web: TestClient, admin: NewClient, clock: Clock
) -> None:
    signed_in(web, admin)
    with web_client(auth_settings, clock) as other:
        signed_in(other, admin)
    assert _recorded(auth_settings) == 2
    clock.advance(hours=8, seconds=1)
    with web_client(auth_settings, clock) as later:
        signed_in(later, admin)
    assert _recorded(auth_settings) == 1
