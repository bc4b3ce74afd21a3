"""Revocation of access tokens that were already issued.

An access token is a self-contained JWT (valid up to 15 minutes), so revoking its client in the
store does not, by itself, stop it. Every bearer token is therefore also checked against its
client's revocation state (:func:`refuse_revoked`, called when the token is verified):

- the state comes from one indexed query (``clients.client_id`` is unique), cached per process and
  per client for :data:`TTL_SECONDS`: the steady state costs no query per request;
- a revocation made in this process (admin API, CLI function, ``ClientService.revoke``) clears the
  cached entry when its transaction commits: refused on the very next request;
- a revocation made by another process (``hub clients revoke`` against a running server, another
  API worker) is seen once the cached entry is older than :data:`TTL_SECONDS`;
- a token whose client is not registered (any more) is refused as well.

Tenant, role and scopes still come from the token itself: only the revocation state is looked up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import select

from hub.security.errors import TokenError
from hub.store.db import transaction
from hub.store.models import Client

#: how long the revocation state of a client is trusted without asking the store again
TTL_SECONDS = 5.0
#: a bound on the cache (a signed token is needed to add an entry, so this is only a safety net)
MAX_ENTRIES = 10_000
REVOKED = "the access token has been revoked (its client is revoked or no longer registered)"


class RevocationCache:
    """Revocation state by (database URL, client_id), each entry trusted for ``ttl`` seconds of ``clock``.

    Thread-safe. A lookup that raced with :meth:`forget` does not store its (possibly stale) answer."""

    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], tuple[float, bool]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def is_revoked(self, database_url: str, client_id: str, lookup: Callable[[], bool]) -> bool:
        key = (database_url, client_id)
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            generation = self._generation
        if entry is not None and now - entry[0] < self.ttl:
            return entry[1]
        revoked = lookup()
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (now, revoked)
        return revoked

    def forget(self, client_id: str) -> None:
        """Drop what is known about ``client_id`` (in every database): the next check asks the store."""
        with self._lock:
            self._generation += 1
            for key in [key for key in self._entries if key[1] == client_id]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


CACHE = RevocationCache()


def revoked_in_store(database_url: str, client_id: str) -> bool:
    """One indexed query: is the client revoked, or unknown?"""
    with transaction(database_url, readonly=True) as session:  # never waits for the SQLite writer
        row = session.execute(select(Client.revoked_at).where(Client.client_id == client_id)).first()
    return row is None or row.revoked_at is not None


def refuse_revoked(database_url: str, client_id: str) -> None:
    """Raise :class:`TokenError` if the token's client is revoked (or not registered)."""
    if CACHE.is_revoked(database_url, client_id, lambda: revoked_in_store(database_url, client_id)):
        raise TokenError(REVOKED)


def forget(client_id: str) -> None:
    CACHE.forget(client_id)
