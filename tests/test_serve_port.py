"""``hub serve`` on a port that is taken says so, and who holds it, before announcing anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from hub.ports import _cmdline, port_in_use_message

HUB = str(Path(sys.executable).with_name("hub"))


def _listener(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen()
    return sock


def test_a_free_port_is_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert port_in_use_message("127.0.0.1", port) is None


def test_a_taken_port_names_its_holder() -> None:
    with _listener() as sock:
        port = sock.getsockname()[1]
        message = port_in_use_message("127.0.0.1", port)
    assert message is not None
    assert message.startswith(f"port {port} on 127.0.0.1 is in use (by PID {os.getpid()}, cmdline ")
    assert "--port" in message


def test_a_wildcard_listener_also_blocks_loopback() -> None:
    with _listener("0.0.0.0") as sock:
        message = port_in_use_message("127.0.0.1", sock.getsockname()[1])
    assert message is not None and f"PID {os.getpid()}" in message


def test_secret_options_of_the_holder_are_not_repeated(tmp_path: Path) -> None:
    (tmp_path / "cmdline").write_bytes(b"python\0-m\0sandbox\0--secret\0s3cr3t-value\0--api-key=k3y\0--port\x009000\0")
    shown = _cmdline(tmp_path)
    assert "s3cr3t-value" not in shown and "k3y" not in shown
    assert "--port 9000" in shown and "--secret ***" in shown


def test_hub_serve_on_a_taken_port_fails_before_its_banner(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    with _listener() as sock:
        port = sock.getsockname()[1]
        done = subprocess.run([HUB, "serve", "--port", str(port)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use (by PID {os.getpid()}" in done.stderr
    assert "Therapy Interop Hub on" not in done.stdout
    assert not (tmp_path / "var").exists()  # nothing was migrated or created
