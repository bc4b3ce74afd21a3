"""Shared fixtures: the store on SQLite and on PostgreSQL, and an API client for each."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Hypothesis keeps its example database under a storage directory (``.hypothesis/`` in the working
# directory by default); it is read when the first property test runs, so setting it here, while
# pytest loads this file, keeps the repository clean. A directory of the developer's choice wins.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "therapy-hub-hypothesis"))

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from hub.app import create_app
from hub.settings import Settings
from hub.store.db import engine_for
from hub.store.migrate import upgrade
from hub.store.models import Base
from tests.pg import fresh_database, postgres_server

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty store (one per backend per test process)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'hub.db'}"
        upgrade(url)
        yield url
        return
    admin = request.getfixturevalue("postgres_admin_url")
    with fresh_database(admin) as raw:
        upgrade(raw)
        yield raw


def _truncate(url: str) -> None:
    engine = engine_for(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def settings(db_url: str) -> Iterator[Settings]:
    _truncate(db_url)
    # most tests exercise behaviour, not access: the explicit development flag; tests/security enable auth
    yield Settings(database_url=db_url, environment="test", base_url="", max_body_bytes=64 * 1024, auth_disabled=True,
                   rate_limit_per_minute=0)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://testserver") as test_client:
        yield test_client


# -- the suite leaves nothing behind: no process, no file in the project directory ----------------

def pytest_configure(config: pytest.Config) -> None:
    """One marker for every process this run starts (inherited by xdist workers and their children),
    and the embedded broker of in-process tests in a temporary directory, not ./var."""
    import os
    import tempfile
    import uuid

    from tests.processes import MARKER

    os.environ.setdefault(MARKER, uuid.uuid4().hex)
    if "HUB_VAR_DIR" not in os.environ:
        os.environ["HUB_VAR_DIR"] = tempfile.mkdtemp(prefix="hub-test-var-")
    config.stash[_PROJECT_VAR] = _project_var_files(config)


_PROJECT_VAR = pytest.StashKey[dict[str, float]]()


def _project_var_files(config: pytest.Config) -> dict[str, float]:
    var = config.rootpath / "var"
    return {str(p): p.stat().st_mtime for p in var.rglob("*") if p.is_file()} if var.exists() else {}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process that it started (a hub, a worker, ...) is still alive, or if it
    wrote into the project's var/ directory. Checked once, by the main process, after the workers."""
    import os
    import signal

    from tests.processes import MARKER, cmdline, wait_until_gone

    if hasattr(session.config, "workerinput"):
        return
    problems = []
    left = [pid for pid in wait_until_gone(os.environ[MARKER], 10) if "hub" in cmdline(pid)]
    for pid in left:
        problems.append(f"process {pid} left running: {cmdline(pid)[:200]}")
        os.kill(pid, signal.SIGKILL)
    before = session.config.stash.get(_PROJECT_VAR, {})
    written = sorted(p for p, mtime in _project_var_files(session.config).items() if before.get(p) != mtime)
    problems += [f"written into the project directory: {p}" for p in written]
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("\n".join(["The suite left things behind:", *problems]), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
