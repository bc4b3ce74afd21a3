"""Nothing is lost, and nothing stored twice, when the hub is killed (SIGKILL) in the middle of a receive.

A real ``hub serve`` (fax vendor webhooks) or ``hub direct`` (SMTP listener) process receives a
document and is killed in one of two windows, then started again, and the sender sends again:

* ``before``: everything is written but not committed. The sender had no answer, so it retries;
  after the restart the store holds nothing of the first try, and the retry is stored once.
* ``after``: committed, but the sender was never answered. The retry is recognised as a repeat
  (the vendor's event id, the Direct Message-ID): answered as already received, stored once.

The kill lands in its window deterministically through the hub's test-only fault points
(:mod:`hub.faults`): the process is started with ``HUB_FAULT_PAUSE_BEFORE_COMMIT`` or
``HUB_FAULT_PAUSE_AFTER_COMMIT`` naming the receive path (``HUB_ENVIRONMENT=test``, the only
environment that honours them); the path writes its marker file into the var directory and blocks;
the test waits for that file, then SIGKILLs the process group. The restarted process runs without
the fault point. On SQLite the killed process leaves its write transaction in the file, and the next
process recovers it; on PostgreSQL the server rolls back the dead connection's transaction.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from connectors.base import Delivery
from connectors.direct import DirectConnector
from hub import faults, processes
from hub.app import create_app, ensure_default_tenant
from hub.inbound.direct import FAULT_POINT as DIRECT_POINT
from hub.inbound.fax import FAULT_POINT as FAX_POINT
from hub.settings import Settings
from hub.store.migrate import upgrade
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work
from sandboxes.fax import SandboxFaxServer
from sandboxes.hisp import SandboxHisp
from tests.connectors.direct.test_connector import bundle
from tests.connectors.fax.support import CLINIC_FAX, REFERRER_FAX
from tests.pg import fresh_database

SECRET_KEY = "kill-test-secret-key-0123456789abcdef"
WEBHOOK_SECRET = "vendor-webhook-token-0123"
#: the URL the vendor signs (the connector's callback_url): the same whatever port the hub runs on
CALLBACK = "https://hub.clinic.test/inbound/default/fax/vendor"
PATH = "/inbound/default/fax/vendor"
SIGNED = b"%PDF-1.4\n% the signed plan page\n%%EOF\n"
WINDOWS = ["before", "after"]


def _store(url: str, tmp_path: Path) -> Settings:
    upgrade(url)
    settings = Settings(database_url=url, environment="test", base_url="", auth_disabled=True,
                        secret_key=SECRET_KEY, var_dir=tmp_path / "var", rate_limit_per_minute=0)
    ensure_default_tenant(settings)
    return settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """A store of this test only, which the hub processes and the test share."""
    if request.param == "sqlite":
        yield _store(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path)
        return
    with fresh_database(request.getfixturevalue("postgres_admin_url")) as url:
        yield _store(url, tmp_path)


def _env(settings: Settings, fault: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({"HUB_DATABASE_URL": settings.database_url, "HUB_ENVIRONMENT": "test", "HUB_BASE_URL": "",
                "HUB_SECRET_KEY": SECRET_KEY, "HUB_VAR_DIR": str(settings.var_dir), **fault})
    return env


def _fault(when: str, point: str) -> dict[str, str]:
    return {f"HUB_FAULT_PAUSE_{when.upper()}_COMMIT": point}


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=20)


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class _Attempt(threading.Thread):
    """The sender's first try, which never gets an answer: it blocks until the hub is killed."""

    def __init__(self, send: Callable[[], Any]) -> None:
        super().__init__(daemon=True, name="first-try")
        self._send = send
        self.outcome: Any = None

    def run(self) -> None:
        try:
            self.outcome = self._send()
        except Exception as exc:  # noqa: BLE001 - the connection dies with the hub: that is the point
            self.outcome = exc


def _counts(settings: Settings, source: str) -> tuple[int, int]:
    """(inbound messages of ``source``, DocumentReferences) in the store (not the MDNs it answers with)."""
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        items = client.get("/admin/api/messages", params={"limit": 500}).json()["items"]
        messages = sum(1 for m in items if m["source"] == source and m["direction"] == "inbound")
        documents = client.get("/fhir/DocumentReference").json()["total"]
    return messages, documents


# ----------------------------------------------------------------------------------- fax webhooks


@pytest.fixture
def vendor() -> Iterator[SandboxFaxServer]:
    with SandboxFaxServer(profile="phaxio", api_key="key-1234", api_secret="secret-5678",
                          webhook_secret=WEBHOOK_SECRET) as server:
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(settings: Settings, tmp_path: Path, fault: dict[str, str], log: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    output = open(tmp_path / log, "wb")  # noqa: SIM115 - closed when the process has ended
    process = processes.spawn(processes.hub_command("serve", "--port", str(port), "--no-embedded-worker",
                                                    "--no-migrate", "--log-level", "warning"),
                              cwd=tmp_path, env=_env(settings, fault), stdout=output, stderr=subprocess.STDOUT)
    output.close()
    root = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"hub serve ended: {(tmp_path / log).read_text()[-2000:]}")
        try:
            return httpx.get(root + "/healthz", timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(up, 60, "hub serve to answer")
    except BaseException:
        _kill(process)
        raise
    return process, root


def _add_fax_connector(settings: Settings, vendor: SandboxFaxServer) -> None:
    config = {"profile": vendor.profile_name, "base_url": vendor.url, "api_key": "key-1234",
              "api_secret": "secret-5678", "webhook_secret": WEBHOOK_SECRET, "sender_fax": CLINIC_FAX,
              "clinic_name": "Riverside Rehab", "callback_url": CALLBACK}
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=settings.default_tenant, settings=settings).add_connector(
            name="vendor", kind="fax", config=config)


@pytest.mark.parametrize("when", WINDOWS)
def test_a_received_fax_survives_a_kill_and_its_retry_is_stored_once(
        settings: Settings, tmp_path: Path, vendor: SandboxFaxServer, when: str) -> None:
    _add_fax_connector(settings, vendor)
    webhook = vendor.receive_webhook(CALLBACK, SIGNED, sender=REFERRER_FAX, recipient=CLINIC_FAX, fax_id="90001")
    headers = {"Content-Type": webhook.content_type, **webhook.headers}

    def post(root: str) -> httpx.Response:
        with httpx.Client(timeout=60, trust_env=False) as http:
            return http.post(root + PATH, content=webhook.body, headers=headers)

    hub, root = _serve(settings, tmp_path, _fault(when, FAX_POINT), "hub-1.log")
    try:
        first = _Attempt(lambda: post(root))
        first.start()
        _wait(faults.reached_file(settings.var_dir, when, FAX_POINT).exists, 30, f"the fault point {when} commit")
    finally:
        _kill(hub)
    first.join(timeout=30)
    assert isinstance(first.outcome, httpx.HTTPError), first.outcome  # the vendor never got an answer
    assert _counts(settings, "vendor") == ((0, 0) if when == "before" else (1, 1))

    hub, root = _serve(settings, tmp_path, {}, "hub-2.log")
    try:
        retry = post(root)  # the vendor sends the same webhook again
        again = post(root)
    finally:
        processes.stop(hub, timeout=10)
    if when == "before":
        assert retry.status_code == 202, retry.text
    else:
        assert retry.status_code == 200 and retry.json()["duplicate"] is True, retry.text
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert _counts(settings, "vendor") == (1, 1)


# ----------------------------------------------------------------------------------- Direct (SMTP)


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


def _listen(settings: Settings, fault: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    process = processes.spawn(processes.hub_command("direct", "clinic-direct", "--port", "0"),
                              env=_env(settings, fault), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    match = re.search(r"127\.0\.0\.1:(\d+)", line)
    if match is None:
        _kill(process)
        raise AssertionError(f"hub direct did not announce its port: {line!r}")
    return process, int(match.group(1))


@pytest.mark.parametrize("when", WINDOWS)
def test_a_direct_message_survives_a_kill_and_the_hisp_retry_is_stored_once(
        settings: Settings, hisp: SandboxHisp, when: str) -> None:
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=settings.default_tenant, settings=settings).add_connector(
            name="clinic-direct", kind="direct", config=hisp.connector_config())
    with DirectConnector(hisp.connector_config()) as connector:  # the plan goes out; the reply answers it
        connector.send(Delivery(payload=bundle(), content_type="application/fhir+json", idempotency_key="job-1",
                                correlation_id="c", resource_type="Task", resource_id="t1", event="Task.create"))
    [sent] = hisp.wait_for(1)

    listener, port = _listen(settings, _fault(when, DIRECT_POINT))
    try:
        first = _Attempt(lambda: hisp.send_signed_plan(sent, SIGNED, host="127.0.0.1", port=port))
        first.start()
        _wait(faults.reached_file(settings.var_dir, when, DIRECT_POINT).exists, 30,
              f"the fault point {when} commit")
    finally:
        _kill(listener)
        if listener.stdout is not None:
            listener.stdout.close()
    first.join(timeout=30)
    # the connection died before any answer to DATA: the HISP holds the message to send again
    assert isinstance(first.outcome, smtplib.SMTPServerDisconnected | ConnectionError), first.outcome
    assert _counts(settings, "clinic-direct") == ((0, 0) if when == "before" else (1, 1))

    listener, port = _listen(settings, {})
    try:  # the HISP's retry: the same message, the same Message-ID (a 250 answer, else it raises)
        first_id = hisp.send_signed_plan(sent, SIGNED, host="127.0.0.1", port=port)
        assert hisp.send_signed_plan(sent, SIGNED, host="127.0.0.1", port=port) == first_id
    finally:
        processes.stop(listener, timeout=10)
        if listener.stdout is not None:
            listener.stdout.close()
    assert _counts(settings, "clinic-direct") == (1, 1)
