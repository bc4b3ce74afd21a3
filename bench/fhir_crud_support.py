"""Constants and machine probes of bench/fhir_crud.py: CPU, PostgreSQL, git, the fhirstarter venv."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LOADGEN = BENCH_DIR / "loadgen.py"
LOADGEN_AUTH_ENV = "LOADGEN_AUTHORIZATION"
FHIRSTARTER_VENV = BENCH_DIR / ".venv-fhirstarter"
FHIRSTARTER_REQUIREMENTS = ["fhirstarter>=4.2,<4.3", "uvicorn[standard]"]
ALL_TARGETS = ["hub-sqlite", "hub-postgres", "fhirstarter"]
T0 = time.monotonic()
BUSY_SHARE = 0.05  # above this share of the CPUs used by other processes, a run is flagged
HUB_SCOPES = "system/ServiceRequest.cruds"  # what the bench's OAuth2 client may do
RATE_LIMIT_OUT_OF_REACH = 100_000_000  # requests a minute


def progress(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


# ------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process, from /proc (Linux); None when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving ``database`` (by its process title), from /proc."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not title.startswith("postgres:") or f" {database} " not in title:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(proc.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def postgres_sessions(admin_url: str, database: str) -> int | None:
    """How many sessions (connections) ``database`` has had (pg_stat_database.sessions, PostgreSQL 14+)."""
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
            ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row and row[0] is not None else None


def machine_busy_seconds() -> float | None:
    """CPU seconds spent by the whole machine (all cores, not idle), from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def hub_command() -> list[str]:
    script = Path(sys.executable).parent / "hub"
    if script.exists():
        return [str(script)]
    found = shutil.which("hub")
    return [found] if found else [sys.executable, "-m", "hub.cli"]


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        changed = len(dirty.stdout.splitlines())
        return out.stdout.strip() + (f"-dirty ({changed} tracked files modified)" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions(python: str | Path, packages: list[str]) -> dict[str, str | None]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: out[p] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        out = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return {p: None for p in packages}


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def wait_for_quiet_machine(max_wait: float) -> None:
    """Wait (at most ``max_wait`` seconds) until other processes leave the CPUs nearly idle."""
    if max_wait <= 0:
        return
    deadline = time.monotonic() + max_wait
    told = False
    while True:
        before = machine_busy_seconds()
        time.sleep(2.0)
        after = machine_busy_seconds()
        if before is None or after is None:
            return
        share = (after - before) / (2.0 * (os.cpu_count() or 1))
        if share <= 2 * BUSY_SHARE:
            if told:
                progress(f"machine quiet again ({100 * share:.0f}% busy)")
            return
        if time.monotonic() > deadline:
            progress(
                f"machine still {100 * share:.0f}% busy after {max_wait:g}s of waiting; measuring anyway"
            )
            return
        if not told:
            progress(f"machine {100 * share:.0f}% busy with other processes; waiting up to {max_wait:g}s")
            told = True


# ------------------------------------------------------------------ fhirstarter venv


def ensure_fhirstarter_venv(rebuild: bool) -> Path:
    """Create bench/.venv-fhirstarter with fhirstarter 4.2.x and uvicorn, or reuse it."""
    python = FHIRSTARTER_VENV / "bin" / "python"
    if rebuild and FHIRSTARTER_VENV.exists():
        progress(f"fhirstarter: removing {FHIRSTARTER_VENV.relative_to(REPO)} (--rebuild-fhirstarter-venv)")
        shutil.rmtree(FHIRSTARTER_VENV)
    if python.exists():
        check = subprocess.run(
            [str(python), "-c", "import fhirstarter, uvicorn, uvloop, httptools"],
            capture_output=True,
            timeout=120,
        )
        if check.returncode == 0:
            progress(f"fhirstarter: reusing {FHIRSTARTER_VENV.relative_to(REPO)}")
            return python
    if not python.exists():
        base = shutil.which("python3") or sys.executable
        progress(f"fhirstarter: creating {FHIRSTARTER_VENV.relative_to(REPO)} with {base} -m venv")
        subprocess.run([base, "-m", "venv", str(FHIRSTARTER_VENV)], check=True)
    progress(
        f"fhirstarter: pip install {' '.join(FHIRSTARTER_REQUIREMENTS)} (first run only; takes a minute)"
    )
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *FHIRSTARTER_REQUIREMENTS,
        ],
        check=True,
    )
    return python


# ------------------------------------------------------------------ PostgreSQL


@contextlib.contextmanager
def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """Create an empty database for this run and drop it afterwards."""
    import psycopg

    name = f"hub_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    progress(f"hub-postgres: created database {name}")
    try:
        yield f"{base}/{name}"
    finally:
        for attempt in range(3):
            try:
                with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                progress(f"hub-postgres: dropped database {name}")
                break
            except psycopg.Error as exc:
                if attempt == 2:
                    progress(f"hub-postgres: WARNING could not drop database {name}: {exc}")
                time.sleep(1)


def postgres_settings(url: str) -> dict[str, str]:
    import psycopg

    out = {}
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, connect_timeout=5) as conn:
        for setting in ("server_version", "synchronous_commit", "fsync", "shared_buffers"):
            out[f"postgresql.{setting}"] = conn.execute(f"show {setting}").fetchone()[0]
    return out
