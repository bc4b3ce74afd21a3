"""Every process the hub starts ends with its parent: `hub serve`, `hub demo` and `hub worker`,
started as users start them, are sent SIGTERM, SIGINT or SIGHUP, or killed (SIGKILL: the parent's
death), and no process of their tree is left a few seconds later."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.processes import MARKER, cmdline, marked, wait_until_gone

HUB = str(Path(sys.executable).with_name("hub"))
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL]
#: a warm shutdown of an idle worker takes a second or two; the bound is HUB_WORKER_SHUTDOWN_SECONDS
GONE_WITHIN = 15


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env[MARKER] = marker
    env["HUB_WORKER_SHUTDOWN_SECONDS"] = "5"
    return env


def _wait_for(predicate, timeout: float, what: str, log: Path,  # type: ignore[no-untyped-def]
              started: tuple[subprocess.Popen[bytes], str] | None = None) -> None:
    """Wait until ``predicate()``; on a timeout, first kill what the test started (the process and
    every process of its marker), so that a failing test leaves nothing running."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            if started is not None:
                process, marker = started
                for pid in marked(marker):
                    os.kill(pid, signal.SIGKILL)
                process.kill()
                process.wait()
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _signal_and_check(process: subprocess.Popen[bytes], sig: signal.Signals, marker: str, log: Path) -> None:
    tree = marked(marker)
    process.send_signal(sig)
    try:
        process.wait(timeout=GONE_WITHIN + 10)
    except subprocess.TimeoutExpired:
        pass
    left = wait_until_gone(marker, GONE_WITHIN)
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
        process.wait()
    assert not left, (f"{sig.name}: {len(left)} of {len(tree)} processes left: "
                      f"{[cmdline(p) for p in left]}\n{log.read_text()[-2000:]}")


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_hub_serve_and_its_worker_end_on_each_signal(tmp_path: Path, sig: signal.Signals) -> None:
    marker, port, log = uuid.uuid4().hex, _free_port(), tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([HUB, "serve", "--port", str(port)], cwd=tmp_path, env=_env(marker),
                                  stdout=out, stderr=subprocess.STDOUT)
    # serve, the worker's main process, two pool processes and beat
    _wait_for(lambda: _ready(port) and len(marked(marker)) >= 5 and b"ready." in log.read_bytes(), 90,
              "the hub and its worker", log, (server, marker))
    _signal_and_check(server, sig, marker, log)
    if sig != signal.SIGKILL:
        assert b"Application shutdown complete" in log.read_bytes()
        assert not (tmp_path / "var" / "hub.db-wal").exists() or (tmp_path / "var" / "hub.db-wal").stat().st_size == 0


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_hub_serve_with_several_api_workers_ends_with_all_of_them(tmp_path: Path, sig: signal.Signals) -> None:
    """uvicorn's supervisor starts the API workers: killed with SIGKILL, it cannot stop them itself."""
    marker, port, log = uuid.uuid4().hex, _free_port(), tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([HUB, "serve", "--port", str(port), "--workers", "2"], cwd=tmp_path,
                                  env=_env(marker), stdout=out, stderr=subprocess.STDOUT)

    def api_workers() -> list[int]:
        return [p for p in marked(marker) if "multiprocessing" in cmdline(p) and "resource_tracker" not in cmdline(p)]

    _wait_for(lambda: _ready(port) and len(api_workers()) == 2 and b"ready." in log.read_bytes(), 90,
              "the hub, its two API workers and its worker", log, (server, marker))
    _signal_and_check(server, sig, marker, log)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_hub_demo_ends_with_its_hub_and_worker_on_each_signal(tmp_path: Path, sig: signal.Signals) -> None:
    marker, port, log = uuid.uuid4().hex, _free_port(), tmp_path / "demo.out"
    with open(log, "wb") as out:
        demo = subprocess.Popen([HUB, "demo", "--port", str(port)], cwd=tmp_path, env=_env(marker),
                                stdout=out, stderr=subprocess.STDOUT)
    # the demo, its hub, the worker's main process, two pool processes and beat
    _wait_for(lambda: re.search(rb"\[ 2/\d+\]", log.read_bytes()) is not None and len(marked(marker)) >= 6,
              120, "the demo's hub", log, (demo, marker))
    _signal_and_check(demo, sig, marker, log)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_hub_worker_and_its_pool_and_beat_end_on_each_signal(tmp_path: Path, sig: signal.Signals) -> None:
    marker, log = uuid.uuid4().hex, tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([HUB, "worker", "--beat"], cwd=tmp_path, env=_env(marker), stdout=out,
                                  stderr=subprocess.STDOUT)
    _wait_for(lambda: b"ready." in log.read_bytes() and len(marked(marker)) >= 4, 60, "the worker", log,
              (worker, marker))
    _signal_and_check(worker, sig, marker, log)


def test_a_stuck_shutdown_ends_within_its_bound(tmp_path: Path) -> None:
    """A process whose shutdown hangs (as billiard's pool waiting on a lock at exit did) is ended by
    its deadline, children included."""
    marker = uuid.uuid4().hex
    code = ("import subprocess, sys, threading; from hub import processes; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
            "processes.exit_within(1, 'test'); threading.Lock().acquire(); threading.Lock().acquire(); "
            "lock = threading.Lock(); lock.acquire(); lock.acquire()")
    env = {**os.environ, MARKER: marker, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    started = time.monotonic()
    stuck = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert stuck.returncode == 1 and "stopping now" in stuck.stderr
    assert time.monotonic() - started < 10
    assert not wait_until_gone(marker, 5)
