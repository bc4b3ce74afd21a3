"""The Direct listener: a signed plan from the physician's HISP becomes a DocumentReference, answered
only after it is stored; repeats, MDNs and refusals."""

from __future__ import annotations

import base64
import io
import os
import re
import smtplib
import subprocess
import zipfile
from collections.abc import Iterable, Iterator

import pytest
from fastapi.testclient import TestClient

from connectors.base import Delivery
from connectors.direct import DirectConnector, xdm
from connectors.direct.message import Attachment
from hub import processes
from hub.inbound.direct import DirectListener, load_identity
from hub.settings import Settings
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work
from sandboxes.hisp import CLINIC_ADDRESS, SandboxHisp
from tests.connectors.direct.test_connector import bundle

SIGNED = b"%PDF-1.4\n% signed certification\n%%EOF\n"


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


class RecordingEnqueuer:
    """Records what the listener's units of work publish after their commit."""

    def __init__(self) -> None:
        self.taken_in: list[tuple[str, str]] = []

    def deliver(self, job_ids: Iterable[int], *, countdown: float | None = None) -> int:
        return 0

    def intake(self, documents: Iterable[tuple[str, str]]) -> int:
        asked = list(documents)
        self.taken_in.extend(asked)
        return len(asked)


@pytest.fixture
def recorder() -> RecordingEnqueuer:
    return RecordingEnqueuer()


@pytest.fixture
def listener(settings: Settings, hisp: SandboxHisp, recorder: RecordingEnqueuer) -> Iterator[DirectListener]:
    tenant = settings.default_tenant
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=tenant, settings=settings).add_connector(
            name="clinic-direct", kind="direct", config=hisp.connector_config())
    identity = load_identity(settings, tenant=tenant, connector="clinic-direct")
    with DirectListener(settings, tenant=tenant, source="clinic-direct", identity=identity,
                        enqueuer=recorder) as running:
        yield running


def _sent(hisp: SandboxHisp) -> object:
    with DirectConnector(hisp.connector_config()) as connector:
        connector.send(Delivery(payload=bundle(), content_type="application/fhir+json", idempotency_key="job-1",
                                correlation_id="c", resource_type="Task", resource_id="t1", event="Task.create"))
    [received] = hisp.wait_for(1)
    return received


def test_signed_plan_reply_is_stored_as_a_document_reference(
        client: TestClient, settings: Settings, hisp: SandboxHisp, listener: DirectListener,
        recorder: RecordingEnqueuer) -> None:
    received = _sent(hisp)
    hisp.send_signed_plan(received, SIGNED, host="127.0.0.1", port=listener.port)  # 250 after commit
    hisp.send_signed_plan(received, SIGNED, host="127.0.0.1", port=listener.port)  # the same Message-ID
    bundle_ = client.get("/fhir/DocumentReference").json()
    assert bundle_["total"] == 1
    attachment = bundle_["entry"][0]["resource"]["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]) == SIGNED and attachment["contentType"] == "application/pdf"
    messages = client.get("/admin/api/messages", params={"source": "clinic-direct"}).json()["items"]
    inbound = [m for m in messages if m["direction"] == "inbound"]
    assert len(inbound) == 1 and inbound[0]["status"] != "rejected"
    # answered by a processed and a dispatched MDN, queued once (tests/inbound/test_direct_mdn_out.py)
    assert sorted(m["event"] for m in messages if m["direction"] == "outbound") == ["direct.MDN"] * 2
    # handed to the intake once, after the commit (the repeat stored nothing, published nothing)
    assert recorder.taken_in == [(settings.default_tenant, bundle_["entry"][0]["resource"]["id"])]


def test_mdn_is_recorded_and_no_document_made(client: TestClient, hisp: SandboxHisp,
                                              listener: DirectListener) -> None:
    hisp.send_mdn(_sent(hisp), host="127.0.0.1", port=listener.port)
    assert client.get("/fhir/DocumentReference").json()["total"] == 0
    [stored] = client.get("/admin/api/messages", params={"source": "clinic-direct"}).json()["items"]
    assert stored["status"] != "rejected"


def test_unencrypted_message_is_refused_after_being_kept(client: TestClient, listener: DirectListener,
                                                          recorder: RecordingEnqueuer) -> None:
    wire = (f"From: someone@direct.else.test\r\nTo: {CLINIC_ADDRESS}\r\nMessage-ID: <plain-1@else.test>\r\n"
            "Subject: hello\r\n\r\nplain text\r\n").encode()
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client_smtp, \
            pytest.raises(smtplib.SMTPDataError) as caught:
        client_smtp.sendmail("someone@direct.else.test", [CLINIC_ADDRESS], wire)
    assert caught.value.smtp_code == 554 and b"undecryptable" in caught.value.smtp_error
    [stored] = client.get("/admin/api/messages", params={"source": "clinic-direct"}).json()["items"]
    assert stored["status"] == "rejected"
    assert client.get("/fhir/DocumentReference").json()["total"] == 0
    assert recorder.taken_in == []


def test_hub_direct_command_receives_until_terminated(client: TestClient, settings: Settings,
                                                      hisp: SandboxHisp, listener: DirectListener) -> None:
    # the connector exists (the listener fixture added it); the command runs its own listener
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url, "HUB_ENVIRONMENT": "test",
           "HUB_SECRET_KEY": settings.secret_key.get_secret_value()}
    process = processes.spawn(processes.hub_command("direct", "clinic-direct", "--port", "0"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, line
        hisp.send_signed_plan(_sent(hisp), SIGNED, host="127.0.0.1", port=int(match.group(1)))
        assert client.get("/fhir/DocumentReference").json()["total"] == 1
    finally:
        processes.stop(process, timeout=10)
    assert process.returncode is not None



def test_broken_package_from_a_trusted_sender_is_refused_not_retried(
        client: TestClient, hisp: SandboxHisp, listener: DirectListener, recorder: RecordingEnqueuer) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # METADATA names a document the package lacks
        archive.writestr("IHE_XDM/SUBSET01/METADATA.XML", (
            f'<SubmitObjectsRequest xmlns="{xdm.LCM}"><RegistryObjectList xmlns="{xdm.RIM}">'
            f'<ExtrinsicObject id="d" mimeType="application/pdf"><Slot name="URI"><ValueList>'
            f"<Value>MISSING.PDF</Value></ValueList></Slot></ExtrinsicObject></RegistryObjectList>"
            f"</SubmitObjectsRequest>").encode())
    received = _sent(hisp)
    with pytest.raises(smtplib.SMTPDataError) as caught:
        hisp.send_reply(received, [Attachment("plan.zip", "application/zip", buffer.getvalue())],
                        host="127.0.0.1", port=listener.port)
    assert caught.value.smtp_code == 554
    messages = client.get("/admin/api/messages", params={"source": "clinic-direct"}).json()["items"]
    [stored] = [m for m in messages if m["direction"] == "inbound"]
    assert stored["status"] == "rejected"
    # the sender is trusted: answered by a failed MDN (tests/inbound/test_direct_mdn_out.py)
    assert [m["event"] for m in messages if m["direction"] == "outbound"] == ["direct.MDN"]
    assert client.get("/fhir/DocumentReference").json()["total"] == 0
    assert recorder.taken_in == []
