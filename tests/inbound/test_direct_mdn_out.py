"""The MDNs the Direct listener answers with, against the sandbox HISP: a stored plan gets a signed,
encrypted processed MDN (and a dispatched one, asked for), refused content a failed one, untrusted
mail and MDNs none; each is a delivery job through the clinic's HISP, retried when it is down."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from connectors.base import Delivery
from connectors.direct import DirectConnector, message, smime
from connectors.direct.message import Attachment
from hub.app import ensure_default_tenant
from hub.inbound.direct import DirectListener, load_identity
from hub.inbound.direct_mdn import sweep_mdn_timeouts
from hub.kit import utcnow
from hub.settings import Settings
from hub.store.db import transaction
from hub.store.models import DeliveryJob
from hub.sync.config import SyncConfig
from hub.sync.delivery import deliver
from hub.unit_of_work import unit_of_work
from sandboxes.direct_ca import TestCA
from sandboxes.hisp import CLINIC_ADDRESS, PHYSICIAN_ADDRESS, Received, SandboxHisp
from tests.connectors.direct.test_connector import bundle

NAME = "clinic-direct"
SIGNED = b"%PDF-1.4\n% signed certification\n%%EOF\n"


class JobRecorder:
    """Records the delivery jobs the listener's units of work publish after their commit."""

    def __init__(self) -> None:
        self.jobs: list[int] = []

    def deliver(self, job_ids: Iterable[int], *, countdown: float | None = None) -> int:
        asked = list(job_ids)
        self.jobs.extend(asked)
        return len(asked)

    def intake(self, documents: Iterable[tuple[str, str]]) -> int:
        return len(list(documents))


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


@pytest.fixture
def recorder() -> JobRecorder:
    return JobRecorder()


@pytest.fixture
def listener(settings: Settings, hisp: SandboxHisp, recorder: JobRecorder) -> Iterator[DirectListener]:
    ensure_default_tenant(settings)
    tenant = settings.default_tenant
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=tenant, settings=settings).add_connector(
            name=NAME, kind="direct", config=hisp.connector_config(), max_attempts=3,
            backoff_base_seconds=0.05, backoff_max_seconds=0.1)
    identity = load_identity(settings, tenant=tenant, connector=NAME)
    with DirectListener(settings, tenant=tenant, source=NAME, identity=identity, enqueuer=recorder) as running:
        yield running


def _sent(hisp: SandboxHisp) -> Received:
    with DirectConnector(hisp.connector_config()) as connector:
        connector.send(Delivery(payload=bundle(), content_type="application/fhir+json", idempotency_key="job-1",
                                correlation_id="c", resource_type="Task", resource_id="t1", event="Task.create"))
    [received] = hisp.wait_for(1)
    return received


def _mdns(hisp: SandboxHisp, settings: Settings, recorder: JobRecorder, count: int) -> list[message.Mdn]:
    """Run the queued MDN jobs (what a worker does) and read what the physician's HISP received."""
    assert len(recorder.jobs) == count
    for job_id in recorder.jobs:
        assert deliver(settings, job_id) is None
    arrived = hisp.wait_for(1 + count)[1:]
    assert all(r.refusal is None for r in arrived)  # decrypted with the physician's key, verified
    assert all(r.from_address == CLINIC_ADDRESS and r.rcpt_tos == (PHYSICIAN_ADDRESS,) for r in arrived)
    found = [message.parse_mdn(r.content) for r in arrived]
    assert all(m is not None for m in found)
    return [m for m in found if m is not None]


def _jobs(settings: Settings) -> int:
    with transaction(settings.database_url, readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(DeliveryJob)) or 0)


def test_stored_plan_is_answered_by_processed_and_dispatched_mdns(
        settings: Settings, hisp: SandboxHisp, listener: DirectListener, recorder: JobRecorder) -> None:
    plan_id = hisp.send_signed_plan(_sent(hisp), SIGNED, host="127.0.0.1", port=listener.port)
    assert len(hisp.received) == 1  # nothing leaves before the worker delivers it
    processed, dispatched = _mdns(hisp, settings, recorder, 2)
    assert (processed.original_message_id, processed.disposition, processed.failed) == (plan_id, "processed", False)
    assert processed.final_recipient == CLINIC_ADDRESS and not processed.final_destination_delivery
    assert dispatched.original_message_id == plan_id and dispatched.disposition == "dispatched"
    assert dispatched.final_destination_delivery  # asked for with X-DIRECT-FINAL-DESTINATION-DELIVERY
    # the same plan again: answered 250, nothing stored, no second MDN
    hisp.send_signed_plan(hisp.received[0], SIGNED, host="127.0.0.1", port=listener.port)
    assert len(recorder.jobs) == 2
    # an MDN expects no MDN: delivered once the HISP took it (never awaiting), and the sweep leaves it alone
    with transaction(settings.database_url, readonly=True) as session:
        assert set(session.scalars(select(DeliveryJob.status))) == {"succeeded"}
    assert sweep_mdn_timeouts(settings, now=utcnow() + timedelta(days=2)) == 0


def test_mdn_survives_a_hisp_outage(settings: Settings, hisp: SandboxHisp, listener: DirectListener,
                                    recorder: JobRecorder) -> None:
    received = _sent(hisp)
    hisp.configure(refuse_all=True)
    plan_id = hisp.send_signed_plan(received, SIGNED, host="127.0.0.1", port=listener.port)
    first = recorder.jobs[0]
    assert deliver(settings, first) is not None  # 451 from the HISP: retried later
    hisp.configure(refuse_all=False)
    time.sleep(0.2)  # past the connector's backoff (at most 0.1 s)
    assert deliver(settings, first) is None
    [arrived] = hisp.wait_for(2)[1:]
    mdn = message.parse_mdn(arrived.content)
    assert mdn is not None and mdn.original_message_id == plan_id and mdn.disposition == "processed"


def test_refused_content_is_answered_by_a_failed_mdn(
        settings: Settings, hisp: SandboxHisp, listener: DirectListener, recorder: JobRecorder) -> None:
    received = _sent(hisp)
    with pytest.raises(smtplib.SMTPDataError) as caught:  # a message carrying no document
        hisp.send_reply(received, [], host="127.0.0.1", port=listener.port)
    assert caught.value.smtp_code == 554
    reply_id = message.message_id_for(f"reply||{received.message_id}", "direct.physician.test")
    [failed] = _mdns(hisp, settings, recorder, 1)
    assert failed.original_message_id == reply_id and failed.disposition == "failed" and failed.failed
    assert b"Failure: " in hisp.received[1].content


def test_untrusted_or_undecryptable_mail_gets_no_mdn(
        settings: Settings, hisp: SandboxHisp, listener: DirectListener, recorder: JobRecorder) -> None:
    stranger = TestCA("Untrusted CA").issue(PHYSICIAN_ADDRESS)  # the right address, an unknown CA
    inner = message.content(text="hello", boundary="b1", attachments=[
        Attachment("signed-plan.pdf", "application/pdf", SIGNED)])
    signed = smime.sign(inner, stranger.certificate, stranger.key, boundary="b2")
    envelope = smime.encrypt(signed, [hisp.clinic.certificate]).removeprefix(b"MIME-Version: 1.0\r\n")
    head = message.headers(sender=PHYSICIAN_ADDRESS, recipients=[CLINIC_ADDRESS], subject="plan",
                           message_id="<untrusted-1@direct.physician.test>", date=datetime.now(UTC))
    plain = (f"From: {PHYSICIAN_ADDRESS}\r\nTo: {CLINIC_ADDRESS}\r\nMessage-ID: <plain-1@x.test>\r\n"
             f"Disposition-Notification-To: {PHYSICIAN_ADDRESS}\r\nSubject: hi\r\n\r\nplain\r\n").encode()
    for wire in (head + envelope, plain):
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client, \
                pytest.raises(smtplib.SMTPDataError) as caught:
            client.sendmail(PHYSICIAN_ADDRESS, [CLINIC_ADDRESS], wire)
        assert caught.value.smtp_code == 554
    assert recorder.jobs == [] and _jobs(settings) == 0


def test_received_mdn_is_not_answered(settings: Settings, hisp: SandboxHisp, listener: DirectListener,
                                      recorder: JobRecorder) -> None:
    received = _sent(hisp)
    hisp.send_mdn(received, host="127.0.0.1", port=listener.port)
    hisp.send_mdn(received, host="127.0.0.1", port=listener.port, disposition="failed")
    hisp.send_dsn(received, host="127.0.0.1", port=listener.port)
    assert recorder.jobs == [] and _jobs(settings) == 0
