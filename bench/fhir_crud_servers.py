"""The servers bench/fhir_crud.py measures: the hub (SQLite or PostgreSQL) and fhirstarter as subprocesses."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_crud_support import BENCH_DIR, HUB_SCOPES, RATE_LIMIT_OUT_OF_REACH, free_port, hub_command, progress

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
