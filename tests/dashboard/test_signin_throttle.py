"""The sign-in throttle keys on client id and address: one who guesses from a shared address locks
only what they guessed at, never the other administrators behind that address."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hub.app import create_app
from hub.dashboard import session as sessions
from hub.deps import get_clock
from hub.security.clients import NewClient
from hub.settings import Settings
from tests.dashboard.conftest import TENANT, Clock, sign_in
from tests.security.conftest import add_client

SHARED = ("203.0.113.7", 40000)  # a clinic's NAT: the attacker and the administrators
ELSEWHERE = ("198.51.100.9", 40000)


def _guess(browser: TestClient, client_id: str, times: int) -> None:
    for _ in range(times):
        assert sign_in(browser, client_id, "a-wrong-guess").status_code == 401


def test_a_guesser_on_a_shared_address_does_not_lock_out_another_administrator(
    auth_settings: Settings, clock: Clock
) -> None:
    target = add_client(auth_settings, TENANT, "admin")
    colleague = add_client(auth_settings, TENANT, "admin")
    app = create_app(auth_settings)
    app.dependency_overrides[get_clock] = lambda: clock
    with (TestClient(app, client=SHARED) as attacker, TestClient(app, client=SHARED) as office,
          TestClient(app, client=ELSEWHERE) as home):
        _guess(attacker, target.client_id, sessions.PAIR_LIMIT)
        assert sign_in(attacker, target.client_id, target.client_secret or "").status_code == 429  # locked pair
        assert sign_in(office, colleague.client_id, colleague.client_secret or "").status_code == 303
        assert sign_in(home, target.client_id, target.client_secret or "").status_code == 303


def test_spraying_client_ids_from_one_address_is_stopped(auth_settings: Settings, clock: Clock) -> None:
    admin: NewClient = add_client(auth_settings, TENANT, "admin")
    guard = sessions.SignInGuard(per_pair=3, per_address=5)
    now = clock()
    for number in range(5):
        assert guard.retry_after(f"guess-{number}", SHARED[0], now) is None
        guard.failed(f"guess-{number}", SHARED[0], now)
    assert guard.retry_after(admin.client_id, SHARED[0], now) == 15 * 60 + 1  # the address waits now
    assert guard.retry_after(admin.client_id, ELSEWHERE[0], now) is None


def test_a_success_clears_its_pair_only(clock: Clock) -> None:
    guard = sessions.SignInGuard(per_pair=3, per_address=100)
    now = clock()
    for _ in range(2):
        guard.failed("admin-1", SHARED[0], now)
        guard.failed("admin-2", SHARED[0], now)
    guard.succeeded("admin-1", SHARED[0])
    guard.failed("admin-1", SHARED[0], now)
    guard.failed("admin-2", SHARED[0], now)
    assert guard.retry_after("admin-1", SHARED[0], now) is None  # 1 failure since its success
    assert guard.retry_after("admin-2", SHARED[0], now) is not None  # 3 failures
