"""The in-process writer lock of the SQLite store (``hub.store.db``).

On SQLite a write transaction first takes its database file's writer lock, then sends
``BEGIN IMMEDIATE``; the lock is given back when the connection returns to the pool (or is
invalidated, closed or detached). A leaked lock would stall every writer of the process, so most
tests here check that it is free again however the transaction ended. Read-only transactions and
PostgreSQL never take it.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from hub.settings import Settings
from hub.store.db import WriterLock, build_engine, engine_for, session_factory, transaction, writer_lock
from hub.store.models import Tenant

NOW = datetime(2026, 1, 5, 9, 30)
SQLITE_ONLY = "the writer lock is SQLite's: PostgreSQL has no database-wide write lock to queue for"
WAIT = 60.0  # seconds: generous bound for anything that should finish at once (never reached when it works)


@pytest.fixture
def sqlite_url(settings: Settings) -> str:
    if make_url(settings.database_url).get_backend_name() != "sqlite":
        pytest.skip(SQLITE_ONLY)
    return settings.database_url


def _lock(url: str) -> WriterLock:
    lock = writer_lock(url)
    assert lock is not None
    return lock


def _add(session: Session, tenant_id: str) -> None:
    session.execute(insert(Tenant).values(id=tenant_id, name=tenant_id, created_at=NOW))


def _tenants(url: str) -> set[str]:
    with transaction(url, readonly=True) as session:
        return set(session.scalars(select(Tenant.id)))


def _in_thread(work: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Run ``work`` on another thread and return its result (or raise its exception); fail if it
    has not finished after ``timeout`` seconds (a deadlock would otherwise hang the test)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


@contextmanager
def _open_write(url: str, tenant_id: str) -> Iterator[threading.Thread]:
    """A write transaction held open on another thread for the duration of the block, then committed."""
    began, finish = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction(url) as session:
                _add(session, tenant_id)
                began.set()
                finish.wait(WAIT)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            began.set()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert began.wait(WAIT)
        assert not errors, errors
        yield thread
    finally:
        finish.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert not errors, errors


@pytest.fixture
def begins(sqlite_url: str) -> Iterator[list[str]]:
    """The names of the threads that sent ``BEGIN IMMEDIATE`` on the store's engine, in order."""
    seen: list[str] = []
    engine = engine_for(sqlite_url)

    def spy(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement == "BEGIN IMMEDIATE":
            seen.append(threading.current_thread().name)

    event.listen(engine, "before_cursor_execute", spy)
    yield seen
    event.remove(engine, "before_cursor_execute", spy)


def _engine_with_busy_timeout(url: str, milliseconds: int) -> Engine:
    """A second engine on the same file, built like the hub's, with a shorter busy timeout."""
    engine = build_engine(url)

    @event.listens_for(engine, "connect")
    def _busy_timeout(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.execute(f"PRAGMA busy_timeout={milliseconds}")

    return engine


# ------------------------------------------------------------------ queueing


def test_a_second_writer_waits_in_process_until_the_first_commits(sqlite_url: str, begins: list[str]) -> None:
    lock = _lock(sqlite_url)
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with transaction(sqlite_url) as session:
                _add(session, "second")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    with _open_write(sqlite_url, "first"):
        assert lock.locked()
        waiter = threading.Thread(target=second, name="second-writer")
        waiter.start()
        waiter.join(0.5)
        # it queues on the lock: it has not even asked SQLite for the write lock
        assert waiter.is_alive()
        assert "second-writer" not in begins
    waiter.join(WAIT)
    assert not waiter.is_alive()
    assert errors == []
    assert begins[-1] == "second-writer"
    assert _tenants(sqlite_url) == {"first", "second"}
    assert not lock.locked()


def test_concurrent_writers_never_see_database_is_locked(settings: Settings) -> None:
    """50 threads x 20 small write transactions (each followed by a read-only one) all complete;
    on PostgreSQL too, where the lock does not exist."""
    url = settings.database_url
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                with transaction(url) as session:
                    _add(session, f"w{n:02d}-{i:02d}")
                with transaction(url, readonly=True) as session:
                    session.scalar(select(func.count()).select_from(Tenant))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(_tenants(url)) == 1000
    lock = writer_lock(url)
    assert lock is None if make_url(url).get_backend_name() == "postgresql" else not lock.locked()


# ------------------------------------------------------------------ always released


@pytest.mark.parametrize("end", ["commit", "rollback", "raise"])
def test_released_when_the_transaction_ends(sqlite_url: str, end: str) -> None:
    lock = _lock(sqlite_url)
    with pytest.raises(RuntimeError) if end == "raise" else nullcontext():
        with transaction(sqlite_url) as session:
            _add(session, "t1")
            assert lock.locked()
            if end == "commit":
                session.commit()
                assert not lock.locked()
            elif end == "rollback":
                session.rollback()
                assert not lock.locked()
            else:
                raise RuntimeError("the work failed")
    assert not lock.locked()
    _in_thread(lambda: _add_in_transaction(sqlite_url, "t2"))
    assert _tenants(sqlite_url) == ({"t1", "t2"} if end == "commit" else {"t2"})


def _add_in_transaction(url: str, tenant_id: str) -> None:
    with transaction(url) as session:
        _add(session, tenant_id)


def test_held_through_the_commit(sqlite_url: str) -> None:
    """Given back after COMMIT has run, when the connection returns to the pool, not before."""
    lock = _lock(sqlite_url)
    engine = engine_for(sqlite_url)
    at_commit: list[bool] = []

    def spy(_conn) -> None:  # type: ignore[no-untyped-def]
        at_commit.append(lock.locked())

    event.listen(engine, "commit", spy)
    try:
        _add_in_transaction(sqlite_url, "t1")
    finally:
        event.remove(engine, "commit", spy)
    assert at_commit == [True]
    assert not lock.locked()


def test_a_core_connection_holds_it_until_closed_and_can_write_again(sqlite_url: str) -> None:
    """A connection checked out for several transactions keeps the lock between them (a second
    BEGIN on it does not wait for itself); closing it gives the lock back."""
    lock = _lock(sqlite_url)
    with engine_for(sqlite_url).connect() as conn:
        conn.execute(insert(Tenant).values(id="t1", name="t1", created_at=NOW))
        conn.commit()
        assert lock.locked()
        conn.execute(insert(Tenant).values(id="t2", name="t2", created_at=NOW))
        conn.commit()
    assert not lock.locked()
    assert _tenants(sqlite_url) == {"t1", "t2"}


def test_released_when_the_connection_is_invalidated_mid_transaction(sqlite_url: str) -> None:
    lock = _lock(sqlite_url)
    session = session_factory(sqlite_url)()
    try:
        _add(session, "lost")
        assert lock.locked()
        session.connection().invalidate()
        assert not lock.locked()
    finally:
        session.close()
    assert not lock.locked()
    _in_thread(lambda: _add_in_transaction(sqlite_url, "after"))
    assert _tenants(sqlite_url) == {"after"}


def test_released_when_the_connection_is_detached_mid_transaction(sqlite_url: str) -> None:
    lock = _lock(sqlite_url)
    with engine_for(sqlite_url).connect() as conn:
        conn.execute(insert(Tenant).values(id="lost", name="lost", created_at=NOW))
        assert lock.locked()
        conn.connection.detach()
        assert not lock.locked()
        conn.rollback()
    _in_thread(lambda: _add_in_transaction(sqlite_url, "after"))
    assert _tenants(sqlite_url) == {"after"}


def test_released_when_an_unclosed_session_is_garbage_collected(sqlite_url: str) -> None:
    """A session dropped mid-transaction without close: the pool's garbage collection hook rolls
    its connection back and returns it, which gives the lock back (here at ``gc.collect()``; in a
    running process whenever the collector finds the session's reference cycle)."""
    lock = _lock(sqlite_url)
    session = session_factory(sqlite_url)()
    _add(session, "lost")
    assert lock.locked()
    del session
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()
    assert not lock.locked()
    _in_thread(lambda: _add_in_transaction(sqlite_url, "after"))
    assert _tenants(sqlite_url) == {"after"}


def test_released_when_begin_immediate_fails(sqlite_url: str) -> None:
    """Another process holds SQLite's write lock past the busy timeout: BEGIN IMMEDIATE fails with
    "database is locked", as before, and the in-process lock is not kept."""
    lock = _lock(sqlite_url)
    engine = _engine_with_busy_timeout(sqlite_url, 100)
    holder = sqlite3.connect(make_url(sqlite_url).database or "", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with engine.connect() as conn:
            with pytest.raises(OperationalError, match="database is locked"):
                conn.execute(insert(Tenant).values(id="t1", name="t1", created_at=NOW))
            assert not lock.locked()  # at once, not only when the connection goes back to the pool
        with pytest.raises(OperationalError, match="database is locked"):
            with Session(engine) as session, session.begin():
                _add(session, "t1")
        assert not lock.locked()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()
    _add_in_transaction(sqlite_url, "t2")
    assert _tenants(sqlite_url) == {"t2"}


def test_a_writer_that_waits_longer_than_its_busy_timeout_gets_database_is_locked(sqlite_url: str) -> None:
    """The wait for the lock is bounded by the connection's busy timeout (30 s in the hub); then
    the same error as SQLite's own. The writer that gave up takes nothing from the holder."""
    lock = _lock(sqlite_url)
    engine = _engine_with_busy_timeout(sqlite_url, 200)
    try:
        with _open_write(sqlite_url, "holder"):
            with pytest.raises(OperationalError, match="database is locked"):
                with Session(engine) as session, session.begin():
                    _add(session, "impatient")
            assert lock.locked()
        assert not lock.locked()
        with Session(engine) as session, session.begin():
            _add(session, "patient")
    finally:
        engine.dispose()
    assert not lock.locked()
    assert _tenants(sqlite_url) == {"holder", "patient"}


# ------------------------------------------------------------------ not taken


def test_a_read_only_transaction_never_takes_it(sqlite_url: str) -> None:
    lock = _lock(sqlite_url)
    _add_in_transaction(sqlite_url, "t1")
    with _open_write(sqlite_url, "t2"):
        assert lock.locked()
        # read while the writer holds the lock (it would wait for it, and time out here, if it took it)
        assert _in_thread(lambda: _tenants(sqlite_url), timeout=20) == {"t1"}
        assert lock.locked()
    assert not lock.locked()
    with transaction(sqlite_url, readonly=True) as session:
        session.scalar(select(func.count()).select_from(Tenant))
        assert not lock.locked()


def test_savepoints_inside_a_write_transaction_do_not_take_it_again(sqlite_url: str) -> None:
    lock = _lock(sqlite_url)

    def work() -> None:
        with transaction(sqlite_url) as session:
            with session.begin_nested():  # the first statement of the transaction, in a savepoint
                _add(session, "first")
            _add(session, "outer")
            with session.begin_nested():
                _add(session, "kept")
                with session.begin_nested():
                    _add(session, "inner")
            nested = session.begin_nested()
            _add(session, "dropped")
            nested.rollback()
            assert lock.locked()

    _in_thread(work, timeout=20)
    assert not lock.locked()
    assert _tenants(sqlite_url) == {"first", "outer", "kept", "inner"}


def test_one_lock_per_database_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    first = writer_lock(f"sqlite:///{tmp_path}/hub.db")
    assert first is not None
    assert writer_lock(f"sqlite:///{tmp_path}/sub/../hub.db") is first
    (tmp_path / "link").symlink_to(tmp_path / "sub")
    assert writer_lock(f"sqlite:///{tmp_path}/link/other.db") is writer_lock(f"sqlite:///{tmp_path}/sub/other.db")
    assert writer_lock(f"sqlite:///{tmp_path}/sub/other.db") is not first
    # a private in-memory database per connection: no other writer to wait for
    assert writer_lock("sqlite://") is None
    assert writer_lock("sqlite:///:memory:") is None
    assert writer_lock("postgresql://hub@127.0.0.1/hub") is None


def test_an_in_memory_store_writes_without_the_lock() -> None:
    engine = build_engine("sqlite://")
    try:
        Tenant.__table__.create(engine)
        for tenant_id in ("t1", "t2"):
            with Session(engine) as session, session.begin():
                _add(session, tenant_id)
        with Session(engine) as session:
            assert set(session.scalars(select(Tenant.id))) == {"t1", "t2"}
    finally:
        engine.dispose()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_inherit_a_held_lock(sqlite_url: str) -> None:
    lock = _lock(sqlite_url)
    with transaction(sqlite_url) as session:
        _add(session, "parent")
        assert lock.locked()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork of a multi-threaded process
            pid = os.fork()
        if pid == 0:  # the child: only report, never return into pytest
            code = 1
            try:
                code = 0 if not lock.locked() else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert not lock.locked()
