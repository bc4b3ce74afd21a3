"""FHIR CRUD benchmark: create and read of a small ServiceRequest, hub vs. the fhirstarter framework.

For each target (``hub serve`` on SQLite, ``hub serve`` on a fresh PostgreSQL database, and a
small fhirstarter app as the peer baseline) the script starts the server as a subprocess on a free
loopback port, waits until ``/metadata`` answers, runs each scenario (create/read x concurrency)
with ``bench/loadgen.py`` in a separate process, and stops the server. It prints progress lines, a
table of throughput and latency, and writes everything to ``bench/results/fhir_crud-<UTC time>.json``.

Run from the repository root with the hub's venv::

    .venv/bin/python bench/fhir_crud.py            # about 2-4 minutes with the defaults
    .venv/bin/python bench/fhir_crud.py --help

All traffic goes to 127.0.0.1. Every scenario is bounded by a request count and a duration.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------------ servers


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    base_url: str  # FHIR base: /metadata and /ServiceRequest are below it
    log_path: Path
    database: str | None = None  # PostgreSQL database name, to account its backends' CPU
    credentials: tuple[str, str] | None = None  # OAuth2 client (id, secret) for the hub's /auth/token
    proc: subprocess.Popen[bytes] | None = None
    started_s: float | None = None

    def start(self, timeout: float) -> None:
        log = self.log_path.open("wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: children (e.g. a worker) can be swept
        )
        log.close()
        url = f"{self.base_url}/metadata"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} while starting\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback only)
                    if response.status == 200:
                        break
            except urllib.error.HTTPError as exc:
                if exc.code < 500:  # answering, e.g. 401 when /metadata wants a token
                    break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - started > timeout:
                raise RuntimeError(
                    f"{self.name} did not answer {url} within {timeout:.0f}s\n{self.log_tail()}"
                )
            time.sleep(0.25)
        self.started_s = time.monotonic() - started

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful shutdown), then make sure nothing of its process group is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                progress(f"{self.name}: no exit 30s after SIGINT, killing it")
                self.proc.kill()
                self.proc.wait(timeout=10)
        # children it started (the hub's embedded worker) must not outlive it
        pgid = self.proc.pid  # start_new_session: the group id is the server's pid
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            progress(f"{self.name}: processes of its group {pgid} are still running; sending {sig.name}")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.killpg(pgid, 0)
                except (ProcessLookupError, PermissionError):
                    return
                time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment minus HUB_* and FHIR_SEQUENCE (a developer's settings), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k != "FHIR_SEQUENCE"}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def hub_serve_supports(option: str) -> bool:
    try:
        out = subprocess.run(
            [*hub_command(), "serve", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env({"COLUMNS": "200"}),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return option in out.stdout


def hub_has_command(name: str) -> bool:
    try:
        out = subprocess.run(
            [*hub_command(), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env({"COLUMNS": "200"}),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return re.search(rf"\b{re.escape(name)}\b", out.stdout) is not None


def hub_env(database_url: str, args: argparse.Namespace) -> dict[str, str]:
    env = {
        "HUB_DATABASE_URL": database_url,
        # a load test from one client: the limit is raised out of reach (its bookkeeping still runs)
        "HUB_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_OUT_OF_REACH),
    }
    if args.hub_auth == "disabled":
        env["HUB_AUTH_DISABLED"] = "true"
    env.update(args.hub_env)
    return clean_env(env)


def register_hub_client(server: Server) -> tuple[str, str]:
    """Create the store and register an OAuth2 client with the CLI; return (client_id, secret)."""
    common: dict[str, Any] = {"cwd": server.cwd, "env": server.env, "capture_output": True, "text": True}
    upgrade = subprocess.run([*hub_command(), "db", "upgrade"], timeout=300, **common)
    if upgrade.returncode != 0:
        raise RuntimeError(f"'hub db upgrade' failed: {upgrade.stderr.strip()[-500:]}")
    add = subprocess.run(
        [*hub_command(), "clients", "add", "fhir-crud-bench", "--role", "system", "--scopes", HUB_SCOPES],
        timeout=120,
        **common,
    )
    fields = dict(line.split(None, 1) for line in add.stdout.splitlines() if len(line.split(None, 1)) == 2)
    client_id, secret = fields.get("client_id", "").strip(), fields.get("client_secret", "").split(" ")[0]
    if add.returncode != 0 or not client_id or not secret:
        raise RuntimeError(
            f"'hub clients add' failed ({add.returncode}): {(add.stderr or add.stdout)[-500:]}"
        )
    return client_id, secret


def fetch_token(server: Server) -> str:
    """A fresh bearer token from the hub's OAuth2 endpoint (client credentials)."""
    assert server.credentials is not None
    client_id, secret = server.credentials
    root = server.base_url.rsplit("/fhir", 1)[0]
    request = urllib.request.Request(
        f"{root}/auth/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": HUB_SCOPES}).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback only)
            return str(json.load(response)["access_token"])
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"POST /auth/token -> {exc.code}: {exc.read()[:300]!r}") from None


def hub_server(name: str, database_url: str, workdir: Path, args: argparse.Namespace) -> Server:
    port = free_port()
    command = [*hub_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", args.server_log_level, *args.hub_extra_options]
    return Server(
        name=name,
        command=command,
        env=hub_env(database_url, args),
        cwd=workdir,  # no .env of the developer's is read; var/ lands in the temporary directory
        port=port,
        base_url=f"http://127.0.0.1:{port}/fhir",
        log_path=workdir / f"{name}.log",
        database=database_url.rsplit("/", 1)[1] if database_url.startswith("postgres") else None,
    )


def fhirstarter_server(python: Path, workdir: Path, log_level: str) -> Server:
    port = free_port()
    return Server(
        name="fhirstarter",
        command=[
            str(python),
            "-m",
            "uvicorn",
            "fhirstarter_app:app",
            "--app-dir",
            str(BENCH_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            log_level,
        ],
        env=clean_env({"FHIR_SEQUENCE": "R4B", "PYTHONWARNINGS": "ignore::DeprecationWarning"}),
        cwd=workdir,
        port=port,
        base_url=f"http://127.0.0.1:{port}",
        log_path=workdir / "fhirstarter.log",
    )


# ------------------------------------------------------------------ scenarios


@dataclass
class Scenario:
    op: str  # create | read
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.op} c={self.concurrency}"


@dataclass
class TargetResult:
    name: str
    status: str = "not run"  # ok | failed | skipped
    detail: str | None = None
    startup_s: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_loadgen(
    server: Server, scenario: Scenario, args: argparse.Namespace, database: str | None
) -> dict[str, Any]:
    """Run one scenario with bench/loadgen.py; add the CPU time the server (and its database) used."""
    command = [
        sys.executable,
        str(LOADGEN),
        "--base-url",
        server.base_url,
        "--scenario",
        scenario.op,
        "--concurrency",
        str(scenario.concurrency),
        "--requests",
        str(args.requests),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(args.seed),
        "--client",
        args.client,
        "--body",
        args.body,
        "--mark-phases",
    ]
    env = dict(os.environ)
    env.pop(LOADGEN_AUTH_ENV, None)
    if server.credentials is not None:
        env[LOADGEN_AUTH_ENV] = f"Bearer {fetch_token(server)}"  # fresh: tokens expire
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert server.proc is not None
    cpu_start = cpu_end = busy_start = busy_end = sessions_start = None
    pg_start: dict[int, float] = {}
    pg_end: dict[int, float] = {}
    other_stderr = []
    try:
        for line in proc.stderr:  # the loadgen marks the measured phase on stderr
            if line.startswith("@@measure-start"):
                cpu_start, busy_start = cpu_seconds(server.proc.pid), machine_busy_seconds()
                pg_start = postgres_backends_cpu(database) if database else {}
                sessions_start = postgres_sessions(args.postgres_admin_url, database) if database else None
            elif line.startswith("@@measure-end"):
                cpu_end, busy_end = cpu_seconds(server.proc.pid), machine_busy_seconds()
                pg_end = postgres_backends_cpu(database) if database else {}
            else:
                other_stderr.append(line.rstrip())
        stdout = proc.stdout.read()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # interrupted: do not leave the load generator running
            proc.terminate()
            proc.wait(timeout=10)
    sessions_end = postgres_sessions(args.postgres_admin_url, database) if database else None
    if server.proc.poll() is not None:
        raise RuntimeError(
            f"the server exited (code {server.proc.returncode}) during {scenario.key}\n{server.log_tail()}"
        )
    if code != 0:
        raise RuntimeError(f"loadgen exited with {code}: {' | '.join(other_stderr[-5:])}")
    result = json.loads(stdout)
    if other_stderr:
        result["loadgen_stderr"] = other_stderr[-10:]
    done = result["requests"] or 1
    server_cpu = pg_cpu = None
    if cpu_start is not None and cpu_end is not None:
        server_cpu = cpu_end - cpu_start
        result["server_cpu_s"] = round(server_cpu, 3)
        result["server_cpu_ms_per_request"] = round(1000 * server_cpu / done, 3)
    if database:
        # backends that closed during the phase are missing: a lower bound
        pg_cpu = sum(cpu - pg_start.get(pid, 0.0) for pid, cpu in pg_end.items())
        result["postgres_backends_cpu_s"] = round(pg_cpu, 3)
        result["postgres_backends_cpu_ms_per_request"] = round(1000 * pg_cpu / done, 3)
    if sessions_start is not None and sessions_end is not None:
        # connections the hub opened to PostgreSQL while measuring (pg_stat_database.sessions)
        result["postgres_sessions_opened"] = sessions_end - sessions_start
    if busy_start is not None and busy_end is not None and server_cpu is not None:
        # CPU the machine spent on anything but this server, its database backends and the loadgen
        other = (busy_end - busy_start) - server_cpu - (pg_cpu or 0.0) - result["client_cpu_s"]
        result["other_cpu_s"] = round(max(other, 0.0), 3)
        result["other_cpu_share"] = round(max(other, 0.0) / ((os.cpu_count() or 1) * result["duration_s"]), 3)
    return result


def report_scenario(name: str, scenario: Scenario, data: dict[str, Any]) -> None:
    lat = data["latency_ms"]
    flag = f"  ERRORS: {data['errors']} {data['status_counts']}" if data["errors"] else ""
    if data.get("postgres_sessions_opened"):
        flag += f"  [{data['postgres_sessions_opened']} new PostgreSQL connections]"
    if data.get("other_cpu_share", 0) > BUSY_SHARE:
        flag += f"  (busy machine: other processes used {100 * data['other_cpu_share']:.0f}% of the CPUs)"
    progress(
        f"{name}: {scenario.key} -> {data['throughput_rps']:.1f} req/s, "
        f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms "
        f"({data['requests']} requests in {data['duration_s']:.1f}s){flag}"
    )


def run_target(
    server: Server, scenarios: list[Scenario], args: argparse.Namespace, result: TargetResult
) -> None:
    try:
        if server.name.startswith("hub-") and args.hub_auth == "token" and args.hub_has_clients:
            server.credentials = register_hub_client(server)
            progress(f"{server.name}: registered OAuth2 client {server.credentials[0]} ({HUB_SCOPES})")
        progress(f"{server.name}: starting ({' '.join(server.command[-8:])})")
        server.start(timeout=args.startup_timeout)
        result.startup_s = round(server.started_s or 0, 2)
        progress(f"{server.name}: ready on {server.base_url} after {result.startup_s:.1f}s")
        for scenario in scenarios:
            attempts: list[dict[str, Any]] = []
            for attempt in range(1, args.repeat + 1):
                progress(
                    f"{server.name}: {scenario.key} — warm-up {args.warmup}, then up to {args.requests} "
                    f"requests or {args.duration:g}s" + (f" (attempt {attempt})" if attempt > 1 else "")
                )
                wait_for_quiet_machine(args.wait_quiet)
                data = run_loadgen(server, scenario, args, server.database)
                attempts.append(data)
                report_scenario(server.name, scenario, data)
                if data.get("other_cpu_share", 0) <= BUSY_SHARE:
                    break
            # keep the least disturbed attempt (all of them go to the JSON file)
            best = min(
                attempts, key=lambda d: (d["errors"] > 0, d.get("other_cpu_share", 0), -d["throughput_rps"])
            )
            if len(attempts) > 1:
                best = dict(
                    best, attempts=len(attempts), other_attempts=[d for d in attempts if d is not best]
                )
                progress(
                    f"{server.name}: {scenario.key}: keeping the least disturbed of {len(attempts)} attempts"
                )
            result.scenarios[scenario.key] = best
        result.status = "ok"
    except KeyboardInterrupt:
        result.status, result.detail = "interrupted", "interrupted (Ctrl-C)"
        raise
    except Exception as exc:  # keep going with the other targets; the report says what failed
        result.status = "failed"
        result.detail = str(exc)
        progress(f"{server.name}: FAILED: {exc}")
    finally:
        server.stop()
        if server.proc is not None and server.proc.returncode not in (0, None, -signal.SIGINT):
            progress(f"{server.name}: server exited with {server.proc.returncode}")
        if args.keep_logs:
            progress(f"{server.name}: server log at {server.log_path}")


# ------------------------------------------------------------------ report


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(targets: list[TargetResult], scenarios: list[Scenario]) -> str:
    baseline = next((t for t in targets if t.name == "fhirstarter"), None)
    hubs = [t for t in targets if t.name != "fhirstarter"]
    cell = 26
    header = ["scenario".ljust(12)]
    sub = ["".ljust(12)]
    for t in targets:
        header.append(t.name.center(cell))
        sub.append(f"{'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    if baseline is not None:
        for t in hubs:
            header.append(f"{t.name}/fs".rjust(18))
            sub.append("req/s ratio".rjust(18))
    lines = [" | ".join(header), " | ".join(sub)]
    lines.insert(1, "-" * len(lines[0]))
    for s in scenarios:
        row = [s.key.ljust(12)]
        for t in targets:
            data = t.scenarios.get(s.key)
            if data is None:
                row.append(("failed" if t.status == "failed" else t.status).center(cell))
                continue
            mark = "!" if data["errors"] else " "
            lat = data["latency_ms"]
            row.append(
                f"{data['throughput_rps']:>8.1f} {fmt(lat['p50'], '8.2f')} {fmt(lat['p99'], '8.2f')}"[
                    : cell - 1
                ]
                + mark
            )
        if baseline is not None:
            base = baseline.scenarios.get(s.key)
            for t in hubs:
                data = t.scenarios.get(s.key)
                if data and base and base["throughput_rps"]:
                    row.append(f"{data['throughput_rps'] / base['throughput_rps']:.2f}x".rjust(18))
                else:
                    row.append("-".rjust(18))
        lines.append(" | ".join(row))
    return "\n".join(lines)


def render_cpu_table(targets: list[TargetResult], scenarios: list[Scenario]) -> str:
    header = ["scenario".ljust(12)] + [t.name.rjust(16) for t in targets] + ["loadgen (client)".rjust(18)]
    lines = [" | ".join(header), "-" * len(" | ".join(header))]
    for s in scenarios:
        row = [s.key.ljust(12)]
        client = []
        for t in targets:
            data = t.scenarios.get(s.key) or {}
            text = fmt(data.get("server_cpu_ms_per_request"), ".2f")
            if data.get("postgres_backends_cpu_ms_per_request") is not None:
                text += f" +{data['postgres_backends_cpu_ms_per_request']:.2f}pg"
            row.append(text.rjust(16))
            if data.get("client_cpu_ms_per_request") is not None:
                client.append(data["client_cpu_ms_per_request"])
        row.append((f"{min(client):.2f}-{max(client):.2f}" if client else "-").rjust(18))
        lines.append(" | ".join(row))
    return "\n".join(lines)


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fhir_crud.py",
        description=(
            "Benchmark FHIR create (POST /ServiceRequest) and read (GET /ServiceRequest/{id}) of a small "
            "ServiceRequest: throughput and p50/p99 latency at 1 and 32 concurrent keep-alive connections, "
            "against 'hub serve' on SQLite, 'hub serve' on a fresh PostgreSQL database, and the fhirstarter "
            "framework (in-memory store) as a peer baseline. The load comes from bench/loadgen.py in a "
            "separate process; all traffic stays on 127.0.0.1. Results: a table on stdout and JSON in "
            "bench/results/. With the defaults a run takes about 2-4 minutes (plus about a minute the first "
            "time, to build bench/.venv-fhirstarter)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=ALL_TARGETS,
        default=ALL_TARGETS,
        metavar="TARGET",
        help=f"servers to measure, any of: {' '.join(ALL_TARGETS)}",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=["create", "read"],
        default=["create", "read"],
        metavar="OP",
        help="interactions to measure: create, read",
    )
    parser.add_argument(
        "--concurrency",
        nargs="+",
        type=int,
        default=[1, 32],
        metavar="N",
        help="concurrent connections (one request in flight on each)",
    )
    parser.add_argument(
        "--requests", type=int, default=4000, help="measured requests per scenario (upper bound)"
    )
    parser.add_argument(
        "--duration", type=float, default=8.0, help="seconds of measuring per scenario (upper bound)"
    )
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured warm-up requests per scenario")
    parser.add_argument(
        "--seed", type=int, default=100, help="resources created (unmeasured) before a read scenario"
    )
    parser.add_argument(
        "--body",
        choices=["plain", "referral"],
        default="plain",
        help="ServiceRequest to create: 'plain' (no category), or 'referral' (a physical therapy category: "
        "the hub then also opens a referral Task in the same transaction)",
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator's HTTP client; 'raw' is a lean asyncio HTTP/1.1 client, httpx saturates first",
    )
    parser.add_argument(
        "--postgres-admin-url",
        default=os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL database used to create and drop the bench's fresh database "
        "(env BENCH_POSTGRES_ADMIN_URL)",
    )
    parser.add_argument(
        "--server-log-level",
        default="warning",
        help="uvicorn log level of the servers ('warning' keeps access logs out of the measurement)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each scenario, wait up to SECONDS for other processes to leave the CPUs idle "
        "(0: do not wait; busy scenarios are flagged either way)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run a scenario up to N times while other processes disturb it, and keep the least "
        "disturbed attempt (for shared machines)",
    )
    parser.add_argument(
        "--hub-auth",
        choices=["token", "disabled"],
        default="token",
        help="'token': register an OAuth2 client with 'hub clients add' and send a bearer token, as real "
        "clients do; 'disabled': HUB_AUTH_DISABLED=true (development mode, no authentication)",
    )
    parser.add_argument(
        "--hub-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for 'hub serve' (repeatable), e.g. HUB_RATE_LIMIT_PER_MINUTE=1200",
    )
    parser.add_argument(
        "--hub-embedded-worker",
        action="store_true",
        help="let 'hub serve' start its embedded sync worker and scheduler (by default the bench passes "
        "--no-embedded-worker when the hub has it, so that only the API runs)",
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=90.0, help="seconds to wait for a server to be ready"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=BENCH_DIR / "results", help="where the JSON results go"
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON results file")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the servers' logs (their path is printed)"
    )
    parser.add_argument(
        "--rebuild-fhirstarter-venv", action="store_true", help="delete and rebuild bench/.venv-fhirstarter"
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.duration <= 0 or args.warmup < 0 or args.seed < 1 or args.repeat < 1:
        parser.error("--requests, --seed and --repeat must be >= 1, --duration > 0, --warmup >= 0")
    if any(c < 1 or c > 256 for c in args.concurrency):
        parser.error("--concurrency values must be between 1 and 256")
    args.targets = [t for t in ALL_TARGETS if t in args.targets]  # fixed column order
    pairs = [item.partition("=") for item in args.hub_env]
    if any(not key or not sep for key, sep, _ in pairs):
        parser.error("--hub-env takes KEY=VALUE")
    args.hub_env = {key: value for key, _, value in pairs}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = [Scenario(op, c) for op in args.scenarios for c in args.concurrency]
    started_at = datetime.now(UTC)
    progress(
        f"fhir_crud: targets {', '.join(args.targets)}; scenarios {', '.join(s.key for s in scenarios)}; "
        f"{os.cpu_count()} CPUs shared by servers and load generator"
    )

    fhirstarter_python = (
        ensure_fhirstarter_venv(args.rebuild_fhirstarter_venv) if "fhirstarter" in args.targets else None
    )

    workdir = Path(tempfile.mkdtemp(prefix="fhir-crud-bench-"))
    results: list[TargetResult] = []
    hub_versions = package_versions(
        sys.executable,
        [
            "therapy-hub",
            "fastapi",
            "starlette",
            "uvicorn",
            "pydantic",
            "fhir.resources",
            "sqlalchemy",
            "psycopg",
            "uvloop",
            "httptools",
        ],
    )
    args.hub_extra_options = []
    if any(t.startswith("hub-") for t in args.targets) and not args.hub_embedded_worker:
        if hub_serve_supports("--no-embedded-worker"):
            args.hub_extra_options.append("--no-embedded-worker")
    if args.hub_extra_options:
        progress(f"hub: serving with {' '.join(args.hub_extra_options)} (the API alone is measured)")
    args.hub_has_clients = False
    if any(t.startswith("hub-") for t in args.targets) and args.hub_auth == "token":
        args.hub_has_clients = hub_has_command("clients")
        if not args.hub_has_clients:
            progress("hub: no 'hub clients' command in this version: requests go without a token")
    interrupted = False
    try:
        for name in args.targets:
            result = TargetResult(name)
            results.append(result)
            if name == "hub-sqlite":
                result.versions = dict(hub_versions)
                db_path = workdir / "hub-bench.db"
                run_target(hub_server(name, f"sqlite:///{db_path}", workdir, args), scenarios, args, result)
            elif name == "hub-postgres":
                result.versions = dict(hub_versions)
                with contextlib.ExitStack() as stack:
                    try:
                        url = stack.enter_context(fresh_postgres_database(args.postgres_admin_url))
                    except Exception as exc:
                        result.status, result.detail = "skipped", f"PostgreSQL not reachable: {exc}"
                        progress(f"hub-postgres: SKIPPED, {result.detail} (see --postgres-admin-url)")
                        continue
                    result.versions.update(postgres_settings(url))
                    run_target(hub_server(name, url, workdir, args), scenarios, args, result)
            else:
                assert fhirstarter_python is not None
                result.versions = package_versions(
                    fhirstarter_python,
                    [
                        "fhirstarter",
                        "fastapi",
                        "starlette",
                        "uvicorn",
                        "pydantic",
                        "fhir.resources",
                        "uvloop",
                        "httptools",
                    ],
                )
                result.versions["FHIR_SEQUENCE"] = "R4B"
                run_target(
                    fhirstarter_server(fhirstarter_python, workdir, args.server_log_level),
                    scenarios,
                    args,
                    result,
                )
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: reporting what was measured so far")
    finally:
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)

    finished_at = datetime.now(UTC)
    table = render_table(results, scenarios)
    cpu_table = render_cpu_table(results, scenarios)
    print()
    print(
        f"FHIR CRUD benchmark: small ServiceRequest ({args.body}); req/s higher is better; "
        "latency in ms (p50 / p99)"
    )
    print(
        f"client: bench/loadgen.py ({args.client}), separate process; "
        f"{os.cpu_count()} CPUs shared by server and client"
    )
    print(table)
    print()
    print(
        "CPU per measured request, ms (server process; '+pg' = its PostgreSQL backends, a lower bound; "
        "last column = load generator)"
    )
    print(cpu_table)
    for t in results:
        opened = [
            (k, d["postgres_sessions_opened"])
            for k, d in t.scenarios.items()
            if "postgres_sessions_opened" in d
        ]
        if opened:
            print(
                f"{t.name}: new PostgreSQL connections opened while measuring: "
                + ", ".join(
                    f"{k}: {n} ({n / max(t.scenarios[k]['requests'], 1):.2f}/request)" for k, n in opened
                )
            )
    problems = [t for t in results if t.status != "ok"]
    errors = [(t.name, k) for t in results for k, d in t.scenarios.items() if d["errors"]]
    for t in problems:
        print(f"\n{t.name}: {t.status}: {t.detail}")
    if errors:
        print("\n'!' marks scenarios with failed requests: " + ", ".join(f"{n} {k}" for n, k in errors))
    busy = [
        (d["other_cpu_share"], t.name, k)
        for t in results
        for k, d in t.scenarios.items()
        if d.get("other_cpu_share", 0) > BUSY_SHARE
    ]
    if busy:
        share, name, key = max(busy)
        print(
            f"\nWARNING: other processes used up to {100 * share:.0f}% of the CPUs while measuring "
            f"({len(busy)} scenarios, worst: {name} {key}); the figures are not comparable with a quiet run."
        )

    report = {
        "benchmark": "fhir_crud",
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "wall_s": round((finished_at - started_at).total_seconds(), 1),
        "command": getattr(sys, "orig_argv", [sys.executable, *sys.argv]),
        "settings": {
            "targets": args.targets,
            "hub_serve_options": args.hub_extra_options,
            "hub_auth": args.hub_auth if args.hub_has_clients or args.hub_auth == "disabled" else "none",
            "hub_env": {"HUB_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_OUT_OF_REACH), **args.hub_env},
            "scenarios": [s.key for s in scenarios],
            "requests": args.requests,
            "duration_s": args.duration,
            "warmup": args.warmup,
            "seed": args.seed,
            "client": args.client,
            "body": args.body,
            "server_log_level": args.server_log_level,
            "wait_quiet_s": args.wait_quiet,
            "repeat": args.repeat,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "note": "load generator and servers share the same CPUs",
        },
        "git_commit": git_commit(),
        "targets": {
            t.name: {
                "status": t.status,
                "detail": t.detail,
                "startup_s": t.startup_s,
                "versions": t.versions,
                "scenarios": t.scenarios,
            }
            for t in results
        },
        "table": table,
        "interrupted": interrupted,
    }
    if not args.no_save:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        path = args.results_dir / f"fhir_crud-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        print(f"\nresults written to {shown}")
    progress(f"fhir_crud: done in {report['wall_s']:.0f}s")
    return 130 if interrupted else 1 if problems or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
