"""The README's examples work as written: the blocks marked ``<!-- readme-test -->`` run, in order and
in one shell (as a newcomer pastes them into one terminal), against a live ``hub serve`` on a fresh
store; and every shell example calls the hub the way a fresh checkout has it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hub import processes

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
HUB = str(Path(sys.executable).with_name("hub"))

_BLOCK = re.compile(r"(?P<marker><!-- readme-test[^>]*-->\s*\n)?```bash\n(?P<body>.*?)```", re.DOTALL)
_SUBCOMMANDS = ("serve", "worker", "beat", "jobs", "replay", "connectors", "demo", "routes", "mllp", "clients",
                "secrets", "db", "version", "token")
#: the only endpoints that answer without a token
_OPEN = ("/auth/token", "/fhir/metadata", "/healthz", "/readyz")


def _blocks(*, runnable: bool | None = None) -> list[str]:
    return [m["body"] for m in _BLOCK.finditer(README) if runnable is None or bool(m["marker"]) == runnable]


def _commands(block: str) -> list[str]:
    """Shell commands of a block, continuation lines joined."""
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def test_the_try_it_and_route_examples_are_marked_runnable() -> None:
    runnable = "\n".join(_blocks(runnable=True))
    assert "TOKEN=$(.venv/bin/hub token)" in runnable
    assert "/fhir/ServiceRequest" in runnable and "/admin/api/routes" in runnable


def test_shell_examples_call_the_hub_of_the_checkout() -> None:
    bare = re.compile(rf"(?<![\w/.-])(?:hub|python) (?:{'|'.join(_SUBCOMMANDS)}|-m)\b")
    found = [line for block in _blocks() for line in block.splitlines() if bare.search(line)]
    assert not found, f"'hub' and 'python' are not on PATH after the set-up; use .venv/bin/...: {found}"


def test_every_curl_to_the_api_sends_a_token_and_fails_on_errors() -> None:
    for command in (c for block in _blocks() for c in _commands(block)):
        if not command.startswith("curl ") or "127.0.0.1:8000" not in command:
            continue
        assert re.search(r"\s-f\w*\s", command), f"without -f a 401 looks like success: {command[:80]}"
        if not any(path in command for path in _OPEN):
            assert 'Authorization: Bearer $TOKEN' in command, command[:100]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _script(port: int) -> str:
    body = "\n".join(_blocks(runnable=True))
    body = body.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    body = body.replace(".venv/bin/hub", HUB).replace(".venv/bin/python", sys.executable)
    return "set -euo pipefail\n" + body


def test_the_readme_examples_run_as_written_against_a_live_hub(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}  # the embedded defaults
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = processes.spawn([HUB, "serve", "--port", str(port), "--no-embedded-worker"], cwd=tmp_path,
                                 env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
                time.sleep(0.3)
            # the README's shell, from the checkout the hub was started in (its store: ./var/hub.db)
            done = subprocess.run(["bash", "-c", _script(port)], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=120, stdin=subprocess.DEVNULL)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
    assert done.returncode == 0, f"{done.stderr[-2000:]}\n{done.stdout[-2000:]}"
    hint = re.search(r"get a token:  TOKEN=\$\((\S+) token\)", log_path.read_text())
    assert hint, "hub serve does not say how to get a token"
    assert hint[1] == HUB or (hint[1] == "hub" and shutil.which("hub") == HUB)  # a command that exists here
    assert "401" not in done.stderr
    assert done.stdout.count('"REF-1001"') >= 3  # created, then found both ways
    assert '"resourceType":"Bundle"' in done.stdout.replace(" ", "")
    assert '"connector":"clinic-emr"' in done.stdout.replace(" ", "")
