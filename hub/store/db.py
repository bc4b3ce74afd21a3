"""Engines and sessions. One request or one task = one transaction; the boundary commits.

Two kinds of transaction share one engine (and its pool):

- read-write (the default): on SQLite ``BEGIN IMMEDIATE``, the database's single write lock is
  taken up front, so that two writers never deadlock upgrading a read lock;
- read-only (``transaction(url, readonly=True)``): on SQLite a deferred ``BEGIN`` under
  ``PRAGMA query_only``: in WAL mode a reader neither waits for the writer nor blocks it, and a
  write attempted inside fails (``attempt to write a readonly database``) instead of silently
  taking the lock. On PostgreSQL the transaction is ``READ ONLY``: a write raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

#: execution option of the read-only engine; the SQLite "begin" listener reads it
READONLY_OPTION = "hub_readonly"
#: key in a pooled connection's ``info``: PRAGMA query_only is on and must be reset on return
_QUERY_ONLY = "hub_query_only"



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


def _sqlite_begin(conn: Connection) -> None:
    """SQLAlchemy issues no BEGIN on SQLite (pysqlite's own transactions are off): issue it here."""
    if conn.get_execution_options().get(READONLY_OPTION):
        conn.connection.info[_QUERY_ONLY] = True  # set first: the reset on return must follow
        conn.exec_driver_sql("PRAGMA query_only=ON")
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine.pool, "reset", _sqlite_reset)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_transactions(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None

        return engine
    # PostgreSQL pool: each thread of Starlette's thread pool (AnyIO's default limiter: 40 tokens)
    # runs at most one transaction at a time, so pool + overflow = 40 serves a saturated API process;
    # connections kept open are HUB_DB_POOL_SIZE (mind max_connections with --workers and replicas)
    from hub.settings import get_settings

    settings = get_settings()
    return create_engine(
        url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow, pool_pre_ping=True
    )


@cache
def engine_for(url: str) -> Engine:
    return build_engine(url)


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
