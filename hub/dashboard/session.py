"""Dashboard sessions: the ``hub_session`` cookie, its CSRF token, flash notices and the sign-in throttle.

The cookie is a Fernet token (AES-128-CBC + HMAC-SHA256, as :mod:`hub.crypto` uses for data at rest)
under a key of its own, derived from ``HUB_SECRET_KEY`` (older keys from ``HUB_SECRET_KEY_PREVIOUS``
are still read). It is authenticated, so it cannot be forged or altered, and encrypted, so the CSRF
secret it carries stays unreadable wherever the cookie value might end up. Fernet's own timestamp is
the time of the last activity: a token older than :data:`IDLE` is refused (idle expiry) and an active
session gets a fresh token; :data:`ABSOLUTE` after sign-in it is refused whatever the activity.

The cookie is not enough on its own: each session is also recorded in the store at sign-in (by the
SHA-256 of its ``sid``) and deleted at sign-out, and a cookie whose record is gone is refused, on every
API replica (:mod:`hub.store.dashboard_repository`).

Every token says what it is (``typ``): a session token is not accepted as a flash notice or as a
sign-in form token, nor the other way round. No token holds patient data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from hub.settings import Settings
from hub.store.dashboard_repository import forget_failures, recent_failures, record_failure

SESSION_COOKIE = "hub_session"
SIGNIN_COOKIE = "hub_signin"
COOKIE_PATH = "/dashboard"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=8)
REFRESH_AFTER = timedelta(minutes=1)  # an active session gets a new token at most once a minute
SIGNIN_FORM_TTL = timedelta(minutes=15)
FLASH_TTL = timedelta(minutes=5)


def _fernet(secret: str) -> Fernet:
    digest = hashlib.sha256(b"therapy-hub/dashboard-session/v1\x00" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


@cache
def _box(secret: str, previous: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(secret), *(_fernet(p) for p in previous)])


def box_for(settings: Settings) -> MultiFernet:
    return _box(settings.secret_key.get_secret_value(), settings.previous_keys)


def epoch(now: datetime) -> int:
    """Seconds since 1970 of the hub's clock (naive UTC)."""
    return int((now.replace(tzinfo=UTC) if now.tzinfo is None else now).timestamp())


def _seal(box: MultiFernet, data: dict[str, Any], now: datetime) -> str:
    return box.encrypt_at_time(json.dumps(data, separators=(",", ":")).encode(), epoch(now)).decode("ascii")


def _open(box: MultiFernet, token: str | None, kind: str, ttl: timedelta, now: datetime) -> dict[str, Any] | None:
    if not token or len(token) > 4096:
        return None
    try:
        raw = box.decrypt_at_time(token.encode("ascii"), int(ttl.total_seconds()), epoch(now))
        data = json.loads(raw)
    except (InvalidToken, UnicodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("typ") != kind:
        return None
    return data


@dataclass(frozen=True, slots=True)
class DashboardSession:
    client_id: str
    tenant: str
    sid: str  # binds flash notices to this session
    csrf: str  # the form token of every POST of this session
    signed_in_at: int  # epoch seconds
    last_seen: int  # epoch seconds of the token (its Fernet timestamp)
    scope: str = ""  # the SMART scopes granted to the client at sign-in
    development: bool = False  # made by HUB_AUTH_DISABLED, not by a sign-in

    def seal(self, box: MultiFernet, now: datetime) -> str:
        return _seal(box, {"typ": "session", "sub": self.client_id, "ten": self.tenant, "sid": self.sid,
                           "csrf": self.csrf, "auth": self.signed_in_at, "scp": self.scope,
                           "dev": self.development}, now)

    def touched(self, now: datetime) -> DashboardSession:
        return replace(self, last_seen=epoch(now))

    def needs_refresh(self, now: datetime) -> bool:
        return epoch(now) - self.last_seen >= REFRESH_AFTER.total_seconds()

    def csrf_ok(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.csrf.encode())


def new_session(client_id: str, tenant: str, now: datetime, *, scope: str = "",
                development: bool = False) -> DashboardSession:
    at = epoch(now)
    return DashboardSession(client_id, tenant, secrets.token_urlsafe(16), secrets.token_urlsafe(32), at, at,
                            scope, development)


def open_session(box: MultiFernet, token: str | None, now: datetime) -> DashboardSession | None:
    """The session of a cookie; None when missing, forged, idle for :data:`IDLE` or older than :data:`ABSOLUTE`."""
    data = _open(box, token, "session", IDLE, now)
    if data is None:
        return None
    fields = (data.get("sub"), data.get("ten"), data.get("sid"), data.get("csrf"))
    signed_in_at, scope = data.get("auth"), data.get("scp", "")
    if not all(isinstance(f, str) and f for f in fields) or type(signed_in_at) is not int or not isinstance(scope, str):
        return None
    if epoch(now) - signed_in_at >= ABSOLUTE.total_seconds():
        return None
    last_seen = box.extract_timestamp(token.encode("ascii")) if token else signed_in_at
    client_id, tenant, sid, csrf = fields
    return DashboardSession(client_id, tenant, sid, csrf, signed_in_at, last_seen, scope, data.get("dev") is True)


# ------------------------------------------------------------------ the sign-in form


def signin_form(box: MultiFernet, now: datetime) -> tuple[str, str]:
    """(cookie, form token) of a sign-in form: the form must come back with the cookie (login CSRF)."""
    nonce = secrets.token_urlsafe(32)
    return _seal(box, {"typ": "signin", "csrf": nonce}, now), nonce


def signin_form_ok(box: MultiFernet, cookie: str | None, token: object, now: datetime) -> bool:
    data = _open(box, cookie, "signin", SIGNIN_FORM_TTL, now)
    nonce = data.get("csrf") if data else None
    return isinstance(nonce, str) and isinstance(token, str) and hmac.compare_digest(nonce.encode(), token.encode())


# ------------------------------------------------------------------ flash notices


def seal_flash(box: MultiFernet, session: DashboardSession, kind: str, text: str, now: datetime) -> str:
    """A notice for the page a POST redirects to: sealed, so a crafted link cannot make one up."""
    return _seal(box, {"typ": "flash", "sid": session.sid, "kind": kind, "text": text[:500]}, now)


def open_flash(box: MultiFernet, session: DashboardSession, token: str | None, now: datetime) -> dict[str, str] | None:
    data = _open(box, token, "flash", FLASH_TTL, now)
    if data is None or data.get("sid") != session.sid:
        return None
    kind, text = data.get("kind"), data.get("text")
    if kind not in ("ok", "error") or not isinstance(text, str):
        return None
    return {"kind": kind, "text": text}


# ------------------------------------------------------------------ sign-in throttle


#: failed sign-ins of one client id from one address before that pair waits (the window: 15 minutes)
PAIR_LIMIT = 10
#: failed sign-ins from one address, whatever the client ids, before the address waits: ten times the
#: pair limit, so colleagues behind one shared address who mistype are never held up by it, while
#: trying many client ids from one address still is
ADDRESS_LIMIT = 100


class SignInGuard:
    """The sign-in throttle, keyed by client id *and* address, its state in the store: every API
    replica counts the same failures (:class:`hub.store.models.SignInFailure`), so two replicas do
    not each allow the full budget.

    Failures lock the (client id, address) pair: one who guesses at an administrator's client id from a
    shared address (a clinic's NAT, a VPN) locks only that pair, so other administrators behind the same
    address, and the same administrator anywhere else, still sign in. A generous per-address limit
    (:data:`ADDRESS_LIMIT`) stops spraying many client ids from one address. A successful sign-in clears
    its pair. A locked pair is refused even with the right secret: otherwise the lock would be no lock.
    At most ``limit`` failures per key count in the window; older ones expire (and are purged).

    The rate limiter of the app keys on the bearer token when one is sent, and a sign-in form ignores
    that header: without this, changing the header would make sign-in an unlimited secret oracle.
    """

    def __init__(self, per_pair: int = PAIR_LIMIT, per_address: int = ADDRESS_LIMIT,
                 window: timedelta = timedelta(minutes=15)) -> None:
        self.per_pair = per_pair
        self.per_address = per_address
        self.window = window

    @staticmethod
    def _pair(client_id: str, address: str) -> str:
        return f"pair\x00{address}\x00{client_id}"

    @staticmethod
    def _address(address: str) -> str:
        return f"address\x00{address}"

    def _wait(self, db: Any, key: str, limit: int, now: datetime) -> int | None:
        failures = recent_failures(db, key=key, since=now - self.window)
        if len(failures) < limit:
            return None
        return max(1, int((failures[-limit] + self.window - now).total_seconds()) + 1)

    def retry_after(self, db: Any, client_id: str, address: str, now: datetime) -> int | None:
        """Seconds to wait when the pair or the address is locked, else None (``db``: a store session)."""
        waits = [w for w in (self._wait(db, self._pair(client_id, address), self.per_pair, now),
                             self._wait(db, self._address(address), self.per_address, now)) if w is not None]
        return max(waits) if waits else None

    def failed(self, db: Any, client_id: str, address: str, now: datetime) -> None:
        record_failure(db, keys=[self._pair(client_id, address), self._address(address)], now=now,
                       expired_before=now - self.window)

    def succeeded(self, db: Any, client_id: str, address: str) -> None:
        forget_failures(db, key=self._pair(client_id, address))
