"""Closing the loop end to end: a plan of care's certification Task goes out by fax or by Direct, the
referring physician's signed page comes back the same way, and the certification completes with
nobody typing anything; the same signed scan received both ways is applied once.

Everything is real: the hub on a port (uvicorn), its Direct SMTP listener, a ``hub worker`` process on
the embedded broker (it delivers the Task and runs the intake the channels enqueue after their
commit), the fax vendor sandbox and the sandbox HISP. No test waits for the intake sweep."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from hub import processes
from hub.app import create_app
from hub.broker import CeleryEnqueuer
from hub.inbound.direct import DirectListener, load_identity
from hub.settings import Settings
from mappings.documents import CHANNEL_SYSTEM, INTAKE_SYSTEM
from mappings.referral.certification import OBLIGATION_CODE_SYSTEM
from sandboxes.fax import SandboxFaxServer
from sandboxes.hisp import PHYSICIAN_ADDRESS, SandboxHisp
from sandboxes.scans import scanned_pdf
from tests.referrals.test_intake_and_task import referral
from tests.referrals.test_plan_document import PLAN

HUB = str(Path(sys.executable).with_name("hub"))
WEBHOOK_SECRET = "vendor-webhook-token-0123"
PATH = "/inbound/default/fax/vendor"
REFERRER_FAX = "+15035550147"
CLINIC_FAX = "+15035550100"
#: only the creation of a certification Task is sent to the physician (not the referral's own Task)
CERTIFICATIONS = f"code.coding.where(system='{OBLIGATION_CODE_SYSTEM}' and code='certification').exists()"
TIMEOUT = 60.0


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def broker(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(broker URL, queue): the embedded broker, and one ``hub worker`` consuming it for the module."""
    workdir = tmp_path_factory.mktemp("worker")
    url, queue = f"sqla+sqlite:///{workdir / 'broker.db'}", f"hub-test-{uuid.uuid4().hex[:10]}"
    CeleryEnqueuer(url, queue).declare()  # before the worker and the first publisher race to create it
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({"HUB_DATABASE_URL": db_url, "HUB_BROKER_URL": url, "HUB_TASK_QUEUE": queue,
                "HUB_ENVIRONMENT": "test", "HUB_BASE_URL": "", "HUB_VAR_DIR": str(workdir / "var")})
    with open(workdir / "worker.log", "wb") as log:
        worker = processes.spawn([HUB, "worker", "--pool", "solo", "--concurrency", "1", "--loglevel", "WARNING"],
                                 cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield url, queue
    finally:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)


@pytest.fixture
def stack_settings(settings: Settings, broker: tuple[str, str]) -> Settings:
    """The test's store (emptied by ``settings``), publishing to the worker's broker; bodies up to the
    default limit (a scanned page is larger than the suite's small limit)."""
    return settings.model_copy(update={"broker_url": broker[0], "task_queue": broker[1],
                                       "max_body_bytes": Settings.model_fields["max_body_bytes"].default})


@pytest.fixture
def hub_url(stack_settings: Settings) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(stack_settings), host="127.0.0.1", port=port,
                                           log_config=None, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="hub-loop-test", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "the hub to start", 20)
        assert thread.is_alive(), "the hub did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def hub(stack_settings: Settings, hub_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(stack_settings), base_url="http://testserver") as client:
        yield client


@pytest.fixture
def vendor() -> Iterator[SandboxFaxServer]:
    with SandboxFaxServer(profile="phaxio", api_key="key-1234", api_secret="secret-5678",
                          webhook_secret=WEBHOOK_SECRET) as server:
        yield server


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


def add_connector(hub: TestClient, name: str, kind: str, config: dict[str, Any]) -> None:
    body = {"name": name, "kind": kind, "config": config, "max_attempts": 3, "timeout_seconds": 10.0,
            "backoff_base_seconds": 0.2, "backoff_max_seconds": 1.0}
    response = hub.put(f"/admin/api/connectors/{name}", json=body)
    assert response.status_code == 200, response.text
    response = hub.post("/admin/api/routes", json={"name": f"certifications-{name}", "resource_type": "Task",
                                                   "connector": name, "interactions": ["create"],
                                                   "filter": CERTIFICATIONS})
    assert response.status_code == 201, response.text


def by_fax(hub: TestClient, vendor: SandboxFaxServer, hub_url: str) -> None:
    add_connector(hub, "vendor", "fax", {
        "profile": "phaxio", "base_url": vendor.url, "api_key": "key-1234", "api_secret": "secret-5678",
        "webhook_secret": WEBHOOK_SECRET, "sender_fax": CLINIC_FAX, "clinic_name": "Riverside Rehab",
        "callback_url": hub_url + PATH})


@pytest.fixture
def listener(stack_settings: Settings, hub: TestClient, hisp: SandboxHisp) -> Iterator[DirectListener]:
    """The hub's Direct listener (what ``hub direct clinic-direct`` runs), the connector routed to the HISP."""
    add_connector(hub, "clinic-direct", "direct", hisp.connector_config())
    tenant = stack_settings.default_tenant
    identity = load_identity(stack_settings, tenant=tenant, connector="clinic-direct")
    with DirectListener(stack_settings, tenant=tenant, source="clinic-direct", identity=identity) as running:
        yield running


def plan_for_certification(hub: TestClient) -> tuple[dict[str, Any], str]:
    """A referral from a physician with a fax number and a Direct address, its plan of care; (the plan, the
    certification Task id)."""
    body = referral()
    body["referrer"] = {**body["referrer"], "fax": REFERRER_FAX, "direct_address": PHYSICIAN_ADDRESS}
    view = hub.post("/referrals", json=body).json()
    task_id = view["task"].split("/")[1]
    assert hub.post(f"/referrals/{task_id}/status", json={"status": "accepted"}).status_code == 200
    response = hub.post(f"/referrals/{task_id}/plan-of-care", json=PLAN)
    assert response.status_code == 201, response.text
    plan = response.json()
    certification = next(o for o in plan["obligations"] if o["kind"] == "certification")
    return plan, certification["task"].split("/")[1]


def documents_by(hub: TestClient, channel: str) -> list[str]:
    """The ids of the documents received by ``channel`` (fax, direct)."""
    found = hub.get("/fhir/DocumentReference", params={"_count": "100"}).json().get("entry") or []
    return [e["resource"]["id"] for e in found
            if any(i.get("system") == f"{CHANNEL_SYSTEM}/{channel}" for i in e["resource"].get("identifier") or [])]


def intake_of(hub: TestClient, document_id: str) -> str | None:
    document = hub.get(f"/fhir/DocumentReference/{document_id}").json()
    return next((c["coding"][0]["code"] for c in document.get("category") or []
                 if c["coding"][0].get("system") == INTAKE_SYSTEM), None)


def completed(hub: TestClient, task_id: str) -> dict[str, Any] | None:
    task = hub.get(f"/fhir/Task/{task_id}").json()
    return task if task["status"] == "completed" else None


def assert_certified_by(hub: TestClient, plan: dict[str, Any], task: dict[str, Any], document_id: str,
                        pdf: bytes) -> None:
    received = {"reference": f"DocumentReference/{document_id}"}
    assert received in [o.get("valueReference") for o in task["output"]]
    [entry] = hub.get("/fhir/Provenance", params={"target": plan["care_plan"]}).json()["entry"]
    provenance = entry["resource"]
    assert {"role": "source", "what": received} in provenance["entity"]
    assert base64.b64decode(provenance["signature"][0]["data"]) == pdf
    assert intake_of(hub, document_id) == "matched"


def test_a_plan_faxed_for_certification_is_certified_by_the_scanned_page_faxed_back(
        hub: TestClient, hub_url: str, vendor: SandboxFaxServer) -> None:
    by_fax(hub, vendor, hub_url)
    plan, task_id = plan_for_certification(hub)
    assert vendor.wait_for_sends(1, timeout=TIMEOUT), "the worker did not fax the certification"
    sent = vendor.sent[0]
    assert sent.to == REFERRER_FAX
    status, scan = vendor.return_signed(sent, recipient=CLINIC_FAX)
    assert status == 202
    task = wait_until(lambda: completed(hub, task_id), "the certification to complete")
    [document_id] = documents_by(hub, "fax")
    assert_certified_by(hub, plan, task, document_id, scan)
    assert b"/Font" not in scan  # an image-only scan: what the intake read was its barcode's pixels


def test_a_plan_sent_by_direct_is_certified_by_the_signed_plan_the_physician_sends_back(
        hub: TestClient, hisp: SandboxHisp, listener: DirectListener) -> None:
    plan, task_id = plan_for_certification(hub)
    [received] = hisp.wait_for(1, timeout=TIMEOUT)
    assert received.refusal is None  # decrypted with the physician's key, signed by the clinic
    pdf = next(d.content for d in received.documents if d.mime_type == "application/pdf")
    signed = scanned_pdf(pdf)
    hisp.send_signed_plan(received, signed, host="127.0.0.1", port=listener.port)  # 250 after the commit
    task = wait_until(lambda: completed(hub, task_id), "the certification to complete")
    [document_id] = documents_by(hub, "direct")
    assert_certified_by(hub, plan, task, document_id, signed)


def test_the_same_signed_plan_by_fax_and_by_direct_is_applied_once(
        hub: TestClient, hub_url: str, vendor: SandboxFaxServer, hisp: SandboxHisp,
        listener: DirectListener) -> None:
    by_fax(hub, vendor, hub_url)
    plan, task_id = plan_for_certification(hub)
    assert vendor.wait_for_sends(1, timeout=TIMEOUT)
    [received] = hisp.wait_for(1, timeout=TIMEOUT)
    status, scan = vendor.return_signed(vendor.sent[0], recipient=CLINIC_FAX)
    assert status == 202
    task = wait_until(lambda: completed(hub, task_id), "the certification to complete")
    # the office sends the same scan by Direct too
    hisp.send_signed_plan(received, scan, host="127.0.0.1", port=listener.port)
    by_direct = wait_until(lambda: documents_by(hub, "direct"), "the Direct copy to be stored")[0]
    wait_until(lambda: intake_of(hub, by_direct) == "duplicate", "the Direct copy to be found a duplicate")
    [by_fax_id] = documents_by(hub, "fax")
    assert_certified_by(hub, plan, completed(hub, task_id) or {}, by_fax_id, scan)  # one Provenance
    assert hub.get(f"/fhir/Task/{task_id}").json()["meta"]["versionId"] == task["meta"]["versionId"]
    duplicate = hub.get(f"/fhir/DocumentReference/{by_direct}").json()
    assert f"DocumentReference/{by_fax_id}" in str(duplicate["extension"])
