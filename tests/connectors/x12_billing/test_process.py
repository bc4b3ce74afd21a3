"""``python -m sandboxes.clearinghouse``: help, ports and credentials printed, SIGTERM and parent death."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from connectors.x12_billing import X12BillingConnector
from tests.connectors.x12_billing.claims import simple_file
from tests.processes import _alive

ROOT = Path(__file__).resolve().parents[3]
COMMAND = [sys.executable, "-m", "sandboxes.clearinghouse"]


def test_help() -> None:
    done = subprocess.run([*COMMAND, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--sftp-port" in done.stdout and "POST   /claims" in done.stdout


def _lines(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    out = {}
    for _ in range(4):
        key, _, value = process.stdout.readline().strip().partition(" ")
        out[key] = value
    return out


def test_runs_until_sigterm_and_cleans_up() -> None:
    process = subprocess.Popen(COMMAND, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        printed = _lines(process)
        assert printed["http"].startswith("http://127.0.0.1:") and printed["sftp"].startswith("127.0.0.1:")
        credentials = Path(printed["credentials"])
        assert credentials.stat().st_mode & 0o077 == 0
        sftp = json.loads(credentials.read_text())["sftp"]
        config = {"transport": "sftp", "sftp": {k: sftp[k] for k in ("host", "port", "username", "password",
                                                                     "known_host_key")}}
        with X12BillingConnector(config) as connector:
            connector.submit("claims.837", simple_file(), "p-1")
            assert len(connector.poll_responses()) == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not credentials.parent.exists()  # its temporary directory is gone with it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "sandboxes.clearinghouse"], stdout=subprocess.PIPE, text=True)
sys.stdout.write(str(child.pid) + "\\n" + child.stdout.readline())
sys.stdout.flush()
time.sleep(120)
"""


def test_ends_with_its_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().startswith("http ")
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 15
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)
