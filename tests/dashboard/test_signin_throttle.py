"""The sign-in throttle keys on client id and address: one who guesses from a shared address locks
only what they guessed at, never the other administrators behind that address."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from hub.app import create_app
from hub.dashboard import session as sessions
from hub.deps import get_clock
from hub.security.clients import NewClient
from hub.settings import Settings
from hub.store.models import SignInFailure
from hub.unit_of_work import unit_of_work
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
    with unit_of_work(auth_settings) as db:
        for number in range(5):
            assert guard.retry_after(db, f"guess-{number}", SHARED[0], now) is None
            guard.failed(db, f"guess-{number}", SHARED[0], now)
        assert guard.retry_after(db, admin.client_id, SHARED[0], now) == 15 * 60 + 1  # the address waits now
        assert guard.retry_after(db, admin.client_id, ELSEWHERE[0], now) is None


def test_a_success_clears_its_pair_only(auth_settings: Settings, clock: Clock) -> None:
    guard = sessions.SignInGuard(per_pair=3, per_address=100)
    now = clock()
    with unit_of_work(auth_settings) as db:
        for _ in range(2):
            guard.failed(db, "admin-1", SHARED[0], now)
            guard.failed(db, "admin-2", SHARED[0], now)
        guard.succeeded(db, "admin-1", SHARED[0])
        guard.failed(db, "admin-1", SHARED[0], now)
        guard.failed(db, "admin-2", SHARED[0], now)
        assert guard.retry_after(db, "admin-1", SHARED[0], now) is None  # 1 failure since its success
        assert guard.retry_after(db, "admin-2", SHARED[0], now) is not None  # 3 failures


def test_failures_expire_after_the_window_and_are_purged(auth_settings: Settings, clock: Clock) -> None:
    guard = sessions.SignInGuard(per_pair=2, per_address=100)
    with unit_of_work(auth_settings) as db:
        guard.failed(db, "a", SHARED[0], clock())
        assert guard.retry_after(db, "a", SHARED[0], clock()) is None
        guard.failed(db, "a", SHARED[0], clock())
        assert guard.retry_after(db, "a", SHARED[0], clock()) == 15 * 60 + 1
        clock.advance(minutes=15)
        assert guard.retry_after(db, "a", SHARED[0], clock()) is None
        guard.failed(db, "b", SHARED[0], clock())  # a failure purges the expired rows
        keys = db.execute(select(SignInFailure.key_hash, SignInFailure.failed_at)).all()
        assert len(keys) == 2 and all(at == clock() for _, at in keys)  # b's pair and the address
        assert not any("a" == k or SHARED[0] in k for k, _ in keys)  # hashes, not client ids or addresses


def test_two_replicas_share_one_budget(auth_settings: Settings, clock: Clock) -> None:
    """Two API processes on one database: the guesses sent to either count together, and the lock
    holds on both (each replica alone used to allow the full budget)."""
    target = add_client(auth_settings, TENANT, "admin")
    replicas = [create_app(auth_settings), create_app(auth_settings)]
    for app in replicas:
        app.dependency_overrides[get_clock] = lambda: clock
    with TestClient(replicas[0], client=SHARED) as one, TestClient(replicas[1], client=SHARED) as two:
        half = sessions.PAIR_LIMIT // 2
        _guess(one, target.client_id, half)
        _guess(two, target.client_id, sessions.PAIR_LIMIT - half)
        for browser in (one, two):
            blocked = sign_in(browser, target.client_id, target.client_secret or "")
            assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        clock.advance(minutes=15, seconds=1)
        assert sign_in(two, target.client_id, target.client_secret or "").status_code == 303
        _guess(one, target.client_id, 1)  # the success on one replica cleared the pair for both
        assert sign_in(one, target.client_id, target.client_secret or "").status_code == 303
