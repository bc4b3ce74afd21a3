"""Engines and sessions. One request or one task = one transaction; the boundary commits.

Two kinds of transaction share one engine (and its pool):

- read-write (the default): on SQLite ``BEGIN IMMEDIATE``, the database's single write lock is
  taken up front, so that two writers never deadlock upgrading a read lock;
- read-only (``transaction(url, readonly=True)``): on SQLite a deferred ``BEGIN`` under
  ``PRAGMA query_only``: in WAL mode a reader neither waits for the writer nor blocks it, and a
  write attempted inside fails (``attempt to write a readonly database``) instead of silently
  taking the lock. On PostgreSQL the transaction is ``READ ONLY``: a write raises.

On SQLite the read-write transactions of one process also queue on an in-process lock, one per
database file (:class:`WriterLock`), taken before ``BEGIN IMMEDIATE`` and given back when the
connection returns to the pool: a writer waiting for another is woken when that one is done,
instead of polling SQLite's lock from its busy handler (sleeps of up to 100 ms, no order). The
processes sharing the file (API, worker, beat) still contend through SQLite's lock itself.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hub.settings import get_settings

#: execution option of the read-only engine; the SQLite "begin" listener reads it
READONLY_OPTION = "hub_readonly"
#: key in a pooled connection's ``info``: PRAGMA query_only is on and must be reset on return
_QUERY_ONLY = "hub_query_only"
#: key in a pooled connection's ``info``: the (WriterLock, generation) this connection holds
_WRITER = "hub_writer_lock"
#: key in a pooled connection's ``info``: its busy timeout in seconds, the longest a writer waits
_BUSY_TIMEOUT = "hub_busy_timeout"


class WriterLock:
    """The writers of one SQLite database file in this process: one at a time.

    A read-write transaction takes it before ``BEGIN IMMEDIATE`` and gives it back once the
    transaction has really ended: when its connection is back in the pool (after COMMIT or
    ROLLBACK, and after the pool's own rollback on return), or when the connection is invalidated,
    closed or detached. A connection that stays checked out keeps it across its transactions (its
    next ``BEGIN`` does not wait for itself). The holder is the pooled connection (its ``info``
    records it), not a thread: the pool may return a connection on another thread or from the
    garbage collector, so any thread may release it. Hence a plain ``threading.Lock`` (not an
    RLock): waiters block in it and one of them is woken at each release; that is close enough to
    first come, first served (measured against a FIFO queue, see ``bench/README.md``), and a
    release is one atomic call: safe even when the garbage collector runs it in the middle of
    another thread's or its own thread's acquire.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: changes in a forked child: what the parent's connections held is not the child's to give back
        self.generation = 0

    def acquire(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=max(timeout, 0.0))

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self.generation += 1


_writer_locks: dict[str, WriterLock] = {}
_writer_locks_guard = threading.Lock()


def writer_lock(url: str) -> WriterLock | None:
    """The writer lock of the SQLite database at ``url``, keyed by its file's real path (every
    engine on that file in this process shares it). None on PostgreSQL, and for an in-memory
    database (``sqlite://``, ``:memory:``): each connection has its own, no writer waits for another."""
    parsed = make_url(normalise_url(url))
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    key = database if parsed.query.get("uri") else os.path.realpath(database)  # a "file:" URI as it is
    with _writer_locks_guard:
        lock = _writer_locks.get(key)
        if lock is None:
            lock = _writer_locks[key] = WriterLock()
        return lock


def _writer_locks_after_fork() -> None:
    """In a forked child, the threads that held the parent's locks do not exist: start free."""
    global _writer_locks_guard
    _writer_locks_guard = threading.Lock()
    for lock in _writer_locks.values():
        lock._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_writer_locks_after_fork)


def _release_writer(info: dict[Any, Any]) -> None:
    """Give back the writer lock if the connection of ``info`` holds it. The pop makes it once only,
    whichever of the pool's events (checkin, invalidate, close, detach) comes first."""
    held = info.pop(_WRITER, None)
    if held is not None:
        lock, generation = held
        if generation == lock.generation:
            lock.release()


def _writer_returned(_dbapi_connection: Any, record: Any, *_: Any) -> None:
    """Pool "checkin", "invalidate", "close" and "detach": the connection's transaction is over."""
    if record is not None:
        _release_writer(record.info)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs (the driver the hub ships with)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _busy_timeout(conn: Connection) -> float:
    """The connection's busy timeout, in seconds (read once per connection; the hub sets 30 s)."""
    info = conn.connection.info
    timeout = info.get(_BUSY_TIMEOUT)
    if timeout is None:
        cursor = conn.connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout")
            timeout = info[_BUSY_TIMEOUT] = cursor.fetchone()[0] / 1000
        finally:
            cursor.close()
    return float(timeout)


def _sqlite_begin(conn: Connection, writer: WriterLock | None = None) -> None:
    """SQLAlchemy issues no BEGIN on SQLite (pysqlite's own transactions are off): issue it here.

    A read-write transaction first takes ``writer`` (unless its connection holds it already),
    waiting at most the connection's busy timeout, then fails as SQLite would: "database is locked".
    """
    if conn.get_execution_options().get(READONLY_OPTION):
        conn.connection.info[_QUERY_ONLY] = True  # set first: the reset on return must follow
        conn.exec_driver_sql("PRAGMA query_only=ON")
        conn.exec_driver_sql("BEGIN")
        return
    info = conn.connection.info
    if writer is None or _WRITER in info:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    if not writer.acquire(_busy_timeout(conn)):
        raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))
    info[_WRITER] = (writer, writer.generation)
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        _release_writer(info)  # no transaction began: the next writer need not wait for this one's return
        raise


def _sqlite_reset(dbapi_connection: Any, record: Any, _state: Any) -> None:
    """Before a connection goes back to the pool: writable again after a read-only transaction.
    Runs in the pool's reset step, so that if this fails the connection is discarded, not reused."""
    if record is not None and record.info.pop(_QUERY_ONLY, False):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=OFF")
        cursor.close()


def build_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        writer = writer_lock(url)

        def _begin(conn: Connection) -> None:
            _sqlite_begin(conn, writer)

        event.listen(engine, "begin", _begin)
        event.listen(engine.pool, "reset", _sqlite_reset)
        if writer is not None:
            # after the reset (the pool's rollback), and on every way out of the pool: never leaked
            for name in ("checkin", "invalidate", "close", "detach"):
                event.listen(engine.pool, name, _writer_returned)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_transactions(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None

        return engine
    # PostgreSQL pool: each thread of Starlette's thread pool (AnyIO's default limiter: 40 tokens)
    # runs at most one transaction at a time, so pool + overflow = 40 serves a saturated API process;
    # connections kept open are HUB_DB_POOL_SIZE (mind max_connections with --workers and replicas)

    settings = get_settings()
    return create_engine(
        url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow, pool_pre_ping=True
    )


@cache
def engine_for(url: str) -> Engine:
    engine = build_engine(url)
    _ENGINES.append(engine)
    return engine


#: the engines of this process (engine_for), closed by close_engines() on a clean shutdown
_ENGINES: list[Engine] = []


def close_engines() -> None:
    """On a clean shutdown: fold each SQLite write-ahead log back into its database file and empty it
    (``wal_checkpoint(TRUNCATE)``, waiting at most a second for other processes' readers), then
    close every pooled connection. No multi-megabyte ``-wal`` file is left behind."""
    for engine in _ENGINES:
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            try:
                raw = engine.raw_connection()
                try:
                    raw.driver_connection.execute("PRAGMA busy_timeout=1000")
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    raw.close()
            except (OperationalError, sqlite3.Error):
                pass  # busy or gone: the next process to open the store checkpoints it
        engine.dispose()


def readonly_engine(engine: Engine) -> Engine:
    """The same engine (same pool) whose transactions are read-only."""
    options: dict[str, Any] = {READONLY_OPTION: True}
    if engine.dialect.name == "postgresql":
        # psycopg opens the transaction with BEGIN READ ONLY; SQLAlchemy resets the connection
        # to read-write when it goes back to the pool
        options["postgresql_readonly"] = True
    return engine.execution_options(**options)


@cache
def session_factory(url: str, readonly: bool = False) -> sessionmaker[Session]:
    engine = readonly_engine(engine_for(url)) if readonly else engine_for(url)
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@contextmanager
def transaction(url: str, *, readonly: bool = False) -> Iterator[Session]:
    """A session in one transaction: committed when the block ends, rolled back if it raises.

    ``readonly=True``: a read-only transaction (see the module docstring); a write inside it raises.
    """
    session = session_factory(url, readonly)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
