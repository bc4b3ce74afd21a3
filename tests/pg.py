"""Finding a PostgreSQL server for the tests.

Order: ``HUB_TEST_POSTGRES_URL``; else the local server on 127.0.0.1:5432 (trust auth); else a
private server started from the PostgreSQL binaries into a temporary directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


def _can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _private_server() -> Iterator[str]:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    initdb = candidates[-1]
    if not initdb or not os.path.exists(initdb):
        raise RuntimeError("No PostgreSQL server reachable and no initdb binary to start a private one")
    bindir = os.path.dirname(initdb)
    datadir = tempfile.mkdtemp(prefix="hub-pg-")
    port = _free_port()
    user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use the postgres system user
        shutil.chown(datadir, "postgres")
        user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*user, initdb, "-D", datadir, "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    subprocess.run(
        [*user, f"{bindir}/pg_ctl", "-D", datadir, "-w", "-o", f"-p {port} -k {datadir} -h 127.0.0.1", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*user, f"{bindir}/pg_ctl", "-D", datadir, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(datadir, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """The URL of an admin database on a reachable server."""
    explicit = os.environ.get("HUB_TEST_POSTGRES_URL")
    if explicit:
        yield explicit
        return
    for local in ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://root@127.0.0.1:5432/postgres"):
        if _can_connect(local):
            yield local
            return
    with _private_server() as url:
        yield url


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create a uniquely named database for this test process and drop it afterwards."""
    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        from hub.store.db import engine_for

        engine_for.cache_clear()
        for _ in range(3):
            try:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except psycopg.Error:
                time.sleep(0.5)
