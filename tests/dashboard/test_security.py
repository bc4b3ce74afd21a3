"""Dashboard security: sign-in (admin clients only, the token endpoint's own check), the session cookie
(flags, idle and absolute expiry, revocation, tampering, sign-out), CSRF on every POST, the sign-in
throttle and rate limit, notices that cannot be forged, and the development flag."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pydantic import SecretStr

from hub.dashboard import session as sessions
from hub.security.clients import NewClient
from hub.settings import Settings
from tests.dashboard.conftest import TENANT, Clock, csrf_of, sign_in, signed_in, web_client
from tests.security.conftest import add_client, revoke_client, role_of

PAGES = ["/dashboard", "/dashboard/messages", "/dashboard/messages/some-id", "/dashboard/dead-letters",
         "/dashboard/connectors", "/dashboard/referrals", "/dashboard/billing", "/dashboard/billing/claims/some-id"]
ACTIONS = ["/dashboard/messages/some-id/replay", "/dashboard/jobs/1/retry", "/dashboard/dead-letters/emr/replay",
           "/dashboard/connectors/emr/test", "/dashboard/signout"]
REFUSED = "Sign-in failed: unknown client, wrong secret, or not an administrator client."


def _expect_signin(response, notice: str | None = None) -> None:
    assert response.status_code == 303, response.text
    expected = "/dashboard/signin" + (f"?notice={notice}" if notice else "")
    assert response.headers["location"] == expected
    assert "tenant" not in response.text and "<table" not in response.text


def _session_cookie(response) -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith("hub_session=")]
    return header


# ------------------------------------------------------------------ sign-in required


def test_every_page_and_action_needs_a_session(web: TestClient) -> None:
    for path in PAGES:
        _expect_signin(web.get(path, follow_redirects=False))
    for path in ACTIONS:
        _expect_signin(web.post(path, data={"csrf": "x"}, follow_redirects=False))
    page = web.get("/dashboard", follow_redirects=True)
    assert page.status_code == 200 and 'action="/dashboard/signin"' in page.text


def test_an_admin_signs_in_with_client_id_and_secret(web: TestClient, admin: NewClient) -> None:
    response = sign_in(web, admin.client_id, admin.client_secret or "")
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    page = web.get("/dashboard")
    assert page.status_code == 200
    assert f"{admin.client_id} · tenant {TENANT}" in page.text
    assert "hub_signin" not in web.cookies  # the sign-in form's cookie is spent


def test_wrong_secret_other_roles_unknown_and_revoked_clients_get_the_same_refusal(
    auth_settings: Settings, web: TestClient, admin: NewClient
) -> None:
    clinic = add_client(auth_settings, TENANT, "clinic")
    system = add_client(auth_settings, TENANT, "system")
    referrer = add_client(auth_settings, TENANT, "referrer", fhir_user=role_of("1234567893"))
    revoked = add_client(auth_settings, TENANT, "admin")
    revoke_client(auth_settings, revoked.client_id)
    attempts = [
        (admin.client_id, "not-the-secret"), (admin.client_id, ""), ("no-such-client", "whatever"),
        (clinic.client_id, clinic.client_secret), (system.client_id, system.client_secret),
        (referrer.client_id, referrer.client_secret), (revoked.client_id, revoked.client_secret),
    ]
    for client_id, secret in attempts:
        response = sign_in(web, client_id, secret or "")
        assert response.status_code == 401, (client_id, response.text)
        assert REFUSED in response.text
        assert "hub_session" not in web.cookies
        assert web.get("/dashboard", follow_redirects=False).status_code == 303
    assert secret not in response.text  # the secret is never echoed (the client id is, to fix a typo)


def test_the_session_cookie_flags(web: TestClient, admin: NewClient) -> None:
    response = sign_in(web, admin.client_id, admin.client_secret or "")
    cookie = _session_cookie(response).lower()
    for flag in ("httponly", "samesite=strict", "path=/dashboard", "max-age=1800"):
        assert flag in cookie, cookie
    assert "secure" not in cookie  # http base URL
    assert admin.client_id.lower() not in cookie and TENANT not in cookie.split(";")[0]  # sealed, not readable
    form = [h.lower() for h in web.get("/dashboard/signin").headers.get_list("set-cookie")]
    assert any(h.startswith("hub_signin=") and "httponly" in h and "samesite=strict" in h for h in form)


def test_the_cookie_is_secure_when_the_hub_is_served_over_https(auth_settings: Settings) -> None:
    https = auth_settings.model_copy(update={"base_url": "https://hub.example.org"})
    admin = add_client(https, TENANT, "admin")
    with web_client(https, base_url="https://testserver") as web:
        response = sign_in(web, admin.client_id, admin.client_secret or "")
        assert response.status_code == 303
        assert "; secure" in _session_cookie(response).lower()


def test_sign_out_clears_the_cookie(web: TestClient, admin: NewClient) -> None:
    csrf = signed_in(web, admin)
    assert web.post("/dashboard/signout", data={}, follow_redirects=False).status_code == 403
    response = web.post("/dashboard/signout", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/signin?notice=signed-out"
    cleared = _session_cookie(response).lower()
    assert 'hub_session=""' in cleared and "max-age=0" in cleared and "path=/dashboard" in cleared
    assert "hub_session" not in web.cookies
    _expect_signin(web.get("/dashboard", follow_redirects=False))
    assert "You are signed out." in web.get("/dashboard/signin?notice=signed-out").text


# ------------------------------------------------------------------ expiry, revocation, tampering


def test_idle_expiry_and_renewal(web: TestClient, admin: NewClient, clock: Clock) -> None:
    signed_in(web, admin)
    clock.advance(minutes=29)
    renewed = web.get("/dashboard/connectors", follow_redirects=False)
    assert renewed.status_code == 200 and "hub_session=" in renewed.headers["set-cookie"]  # activity renews
    clock.advance(minutes=29)  # 58 minutes after sign-in, 29 after the last request
    assert web.get("/dashboard/connectors", follow_redirects=False).status_code == 200
    clock.advance(minutes=30, seconds=1)
    _expect_signin(web.get("/dashboard/connectors", follow_redirects=False), "expired")
    assert "Your session ended" in web.get("/dashboard/signin?notice=expired").text


def test_absolute_expiry_after_eight_hours_of_activity(web: TestClient, admin: NewClient, clock: Clock) -> None:
    signed_in(web, admin)
    for _ in range(23):  # a request every 20 minutes: never idle
        clock.advance(minutes=20)
        assert web.get("/dashboard/connectors", follow_redirects=False).status_code == 200
    clock.advance(minutes=20)  # 8 hours after sign-in
    _expect_signin(web.get("/dashboard/connectors", follow_redirects=False), "expired")


def test_revoking_the_client_ends_its_sessions(auth_settings: Settings, web: TestClient, admin: NewClient) -> None:
    signed_in(web, admin)
    revoke_client(auth_settings, admin.client_id)
    _expect_signin(web.get("/dashboard", follow_redirects=False), "expired")


def test_forged_tampered_and_foreign_cookies_are_refused(
    auth_settings: Settings, web: TestClient, admin: NewClient, clock: Clock
) -> None:
    signed_in(web, admin)
    good = web.cookies["hub_session"]
    for value in ("garbage", good[:-4] + "AAAA", good[::-1]):
        web.cookies.set("hub_session", value, domain="testserver.local", path="/dashboard")
        _expect_signin(web.get("/dashboard", follow_redirects=False), "expired")
    other_key = auth_settings.model_copy(update={"secret_key": SecretStr("another-secret-key-of-another-hub")})
    foreign = sessions.new_session(admin.client_id, TENANT, clock()).seal(sessions.box_for(other_key), clock())
    development = sessions.new_session("development", TENANT, clock(), development=True)
    for value in (foreign, development.seal(sessions.box_for(auth_settings), clock())):
        web.cookies.set("hub_session", value, domain="testserver.local", path="/dashboard")
        _expect_signin(web.get("/dashboard", follow_redirects=False), "expired")


def test_a_session_survives_a_key_rotation(auth_settings: Settings, web: TestClient, admin: NewClient,
                                           clock: Clock) -> None:
    signed_in(web, admin)
    cookie = web.cookies["hub_session"]
    rotated = auth_settings.model_copy(update={
        "secret_key": SecretStr("the-new-secret-key-after-rotation"),
        "secret_key_previous": auth_settings.secret_key.get_secret_value()})
    with web_client(rotated, clock) as after:
        after.cookies.set("hub_session", cookie, domain="testserver.local", path="/dashboard")
        assert after.get("/dashboard", follow_redirects=False).status_code == 200


# ------------------------------------------------------------------ CSRF


def test_every_post_needs_the_session_csrf_token(auth_settings: Settings, web: TestClient, admin: NewClient) -> None:
    csrf = signed_in(web, admin)
    other_admin = add_client(auth_settings, TENANT, "admin")
    with web_client(auth_settings) as elsewhere:
        foreign_csrf = signed_in(elsewhere, other_admin)
    assert foreign_csrf != csrf
    for path in ACTIONS:
        for data in ({}, {"csrf": ""}, {"csrf": "wrong"}, {"csrf": foreign_csrf}):
            response = web.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403, (path, data, response.text)
            assert "The form is stale" in response.text
        cross = web.post(path, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
        assert cross.status_code == 403
    ok = web.post("/dashboard/jobs/1/retry", data={"csrf": csrf}, follow_redirects=False)
    assert ok.status_code == 404  # past the CSRF check: there is no such job
    assert web.get("/dashboard", follow_redirects=False).status_code == 200  # still signed in


def test_the_sign_in_form_has_its_own_csrf_token(web: TestClient, admin: NewClient) -> None:
    form = web.get("/dashboard/signin")
    token = csrf_of(form.text)
    credentials = {"client_id": admin.client_id, "client_secret": admin.client_secret}
    wrong = web.post("/dashboard/signin", data={**credentials, "csrf": "wrong"}, follow_redirects=False)
    assert wrong.status_code == 403
    web.cookies.delete("hub_signin", domain="testserver.local", path="/dashboard")
    response = web.post("/dashboard/signin", data={**credentials, "csrf": token}, follow_redirects=False)
    assert response.status_code == 403 and "hub_session" not in web.cookies  # a token without its cookie


def test_a_sign_in_form_expires(web: TestClient, admin: NewClient, clock: Clock) -> None:
    form = web.get("/dashboard/signin")
    clock.advance(minutes=16)
    response = web.post("/dashboard/signin", follow_redirects=False, data={
        "csrf": csrf_of(form.text), "client_id": admin.client_id, "client_secret": admin.client_secret})
    assert response.status_code == 403


def test_notices_cannot_be_forged(auth_settings: Settings, web: TestClient, admin: NewClient, clock: Clock) -> None:
    signed_in(web, admin)
    page = web.get("/dashboard", params={"flash": "Your account is locked, call 555-0100"})
    assert page.status_code == 200 and "555-0100" not in page.text
    stranger = sessions.new_session(admin.client_id, TENANT, clock())
    foreign = sessions.seal_flash(sessions.box_for(auth_settings), stranger, "ok", "call 555-0199", clock())
    assert "555-0199" not in web.get("/dashboard", params={"flash": foreign}).text


# ------------------------------------------------------------------ sign-in is not an unlimited oracle


def test_sign_in_goes_through_the_rate_limit(auth_settings: Settings) -> None:
    limited = auth_settings.model_copy(update={"rate_limit_per_minute": 4})
    with web_client(limited) as web:
        codes = [web.post("/dashboard/signin", data={"client_id": "x", "client_secret": "y"}).status_code
                 for _ in range(6)]
    assert codes[:4] == [403] * 4 and codes[4:] == [429, 429]


def test_failed_sign_ins_are_throttled_per_address_whatever_the_headers(
    web: TestClient, admin: NewClient, clock: Clock
) -> None:
    for attempt in range(10):  # another bearer header each time would be another key of the rate limiter
        form = web.get("/dashboard/signin", headers={"Authorization": f"Bearer guess-{attempt}"})
        response = web.post("/dashboard/signin", headers={"Authorization": f"Bearer guess-{attempt}"},
                            data={"csrf": csrf_of(form.text), "client_id": admin.client_id, "client_secret": "guess"})
        assert response.status_code == 401
    blocked = sign_in(web, admin.client_id, admin.client_secret or "")  # even the right secret now
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "hub_session" not in web.cookies
    clock.advance(minutes=15, seconds=1)
    assert sign_in(web, admin.client_id, admin.client_secret or "").status_code == 303


# ------------------------------------------------------------------ development flag


def test_development_flag_skips_sign_in_like_the_api(client: TestClient) -> None:
    page = client.get("/dashboard", follow_redirects=False)
    assert page.status_code == 200 and "development mode" in page.text
    assert client.get("/dashboard/signin", follow_redirects=False).headers["location"] == "/dashboard"
    assert client.post("/dashboard/jobs/1/retry", data={}, follow_redirects=False).status_code == 403
    csrf = csrf_of(page.text)
    assert client.post("/dashboard/jobs/1/retry", data={"csrf": csrf}, follow_redirects=False).status_code == 404


def test_a_development_session_is_worthless_once_the_flag_is_off(
    settings: Settings, auth_settings: Settings
) -> None:
    with web_client(settings.model_copy(update={"secret_key": auth_settings.secret_key})) as dev:
        assert dev.get("/dashboard").status_code == 200
        cookie = dev.cookies["hub_session"]
    with web_client(auth_settings) as web:
        web.cookies.set("hub_session", cookie, domain="testserver.local", path="/dashboard")
        _expect_signin(web.get("/dashboard", follow_redirects=False), "expired")
