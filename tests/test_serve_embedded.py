"""The README's main command: `hub serve` on embedded defaults (SQLite, embedded broker and worker)
delivers a routed referral with no service installed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hub import processes
from sandboxes.webhook import SandboxReceiver

HUB = str(Path(sys.executable).with_name("hub"))
SECRET = "embedded-defaults-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_hub_serve_on_embedded_defaults_delivers_a_routed_referral(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}  # nothing configured
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    server = processes.spawn([HUB, "serve", "--port", str(port)], cwd=tmp_path, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        with SandboxReceiver(secret=SECRET) as receiver, httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
                time.sleep(0.3)
            assert (tmp_path / "var" / "hub.db").exists()
            # the local admin client was created and its secret printed once: sign in with it
            log_text = (tmp_path / "serve.log").read_text()
            secret = log_text.split("client_secret", 1)[1].split()[0]
            assert client.get("/admin/api/connectors").status_code == 401
            token = client.post("/auth/token", data={"grant_type": "client_credentials"},
                                auth=("local-admin", secret))
            assert token.status_code == 200, token.text
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            connector = {"name": "emr", "kind": "webhook",
                         "config": {"url": receiver.url + "/in", "secret": SECRET}}
            assert client.put("/admin/api/connectors/emr", json=connector).status_code == 200
            route = {"name": "referrals", "resource_type": "ServiceRequest", "connector": "emr"}
            assert client.post("/admin/api/routes", json=route).status_code == 201
            referral = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                        "subject": {"reference": "Patient/p1"}}
            created = client.post("/fhir/ServiceRequest", content=json.dumps(referral),
                                  headers={"Content-Type": "application/fhir+json"})
            assert created.status_code == 201
            assert receiver.wait_for_deliveries(1, timeout=60), (tmp_path / "serve.log").read_text()[-3000:]
            assert json.loads(receiver.deliveries[0].body)["id"] == created.json()["id"]
            assert receiver.deliveries[0].signature_valid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
    assert (tmp_path / "var" / "broker.sqlite").exists()


def test_sigterm_to_hub_serve_also_stops_its_embedded_worker(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    server = subprocess.Popen([HUB, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    children: list[int] = []
    while time.monotonic() < deadline and not children:
        time.sleep(0.3)
        out = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout
        children = [int(pid) for pid in out.split()]
    assert children, "the embedded worker did not start"
    time.sleep(2)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in children):
        time.sleep(0.3)
    alive = [pid for pid in children if os.path.exists(f"/proc/{pid}")
             and "zombie" not in open(f"/proc/{pid}/status").read().lower()]
    assert not alive, f"orphaned worker processes: {alive}"
