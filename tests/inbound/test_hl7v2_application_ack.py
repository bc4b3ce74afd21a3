"""Enhanced-mode acknowledgement back-channel: the accept ACK (CA) answers on the sender's connection;
the application ACK the sender asked for (MSH-16) travels later to the sender's own listener (the
sandbox MLLP peer) as an outbound message through the outbox, asking to be confirmed (MSH-15 AL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from hub.app import ensure_default_tenant
from hub.inbound.hl7v2 import handle_hl7v2
from hub.settings import Settings
from hub.store.db import transaction
from hub.store.models import DeliveryJob, Message, MessageEvent
from hub.sync import events as ev
from hub.sync.config import SyncConfig
from hub.sync.delivery import deliver
from hub.unit_of_work import unit_of_work
from mappings.hl7v2 import parse, read_ack, read_header
from sandboxes.mllp import SandboxPeer
from tests.inbound.test_hl7v2_inbound import ref

TENANT = "default"
SOURCE = "mllp:referrer"
CHANNEL = "referrer-acks"


@pytest.fixture
def peer(settings: Settings) -> Iterator[SandboxPeer]:
    """The sender's own listener, which confirms what it gets with CA; a connector to it."""
    ensure_default_tenant(settings)
    with SandboxPeer(answer="CA") as sandbox:
        with unit_of_work(settings) as session:
            SyncConfig(session, tenant=TENANT, settings=settings).add_connector(
                name=CHANNEL, kind="hl7v2", config={"host": "127.0.0.1", "port": sandbox.port, "timeout_seconds": 5},
                max_attempts=3,
            )
        yield sandbox


def enhanced(control_id: str, accept: str = "AL", application: str = "AL", **replace: str) -> bytes:
    raw = ref(control_id, **replace)
    enhanced = raw.replace(b"|P|2.5.1||||||", f"|P|2.5.1|||{accept}|{application}|||".encode())
    assert enhanced != raw
    return enhanced


def outbound_jobs(settings: Settings) -> list[tuple[DeliveryJob, Message]]:
    with transaction(settings.database_url) as session:
        rows = session.execute(
            select(DeliveryJob, Message).join(Message, Message.id == DeliveryJob.message_id)
            .where(Message.event == "hl7v2.ACK").order_by(DeliveryJob.id)
        ).all()
        return [(job, message) for job, message in rows]


def events(settings: Settings, external_id: str) -> list[tuple[str, str]]:
    with transaction(settings.database_url) as session:
        message = session.scalars(select(Message).where(Message.external_id == external_id)).one()
        rows = session.scalars(select(MessageEvent).where(MessageEvent.message_id == message.id)
                               .order_by(MessageEvent.id))
        return [(e.event, e.detail or "") for e in rows]


def wire(settings: Settings, raw: bytes, **options: Any) -> Any:
    return read_ack(parse(handle_hl7v2(settings, TENANT, raw, SOURCE, **options)))


def test_the_application_ack_goes_to_the_senders_listener_after_the_accept_ack(
    settings: Settings, peer: SandboxPeer
) -> None:
    accept = wire(settings, enhanced("ENH-1"), ack_connector=CHANNEL)
    assert (accept.code, accept.acknowledged_control_id) == ("CA", "ENH-1")
    assert peer.messages == []  # nothing leaves before the worker delivers it

    [(job, message)] = outbound_jobs(settings)
    assert message.direction == "outbound" and job.status == ev.PENDING
    assert deliver(settings, job.id) is None
    [received] = peer.messages
    application = parse(received.raw)
    ack = read_ack(application)
    assert (ack.code, ack.acknowledged_control_id) == ("AA", "ENH-1")
    header = read_header(application)
    assert (header.accept_ack_type, header.application_ack_type) == ("AL", "NE")
    with transaction(settings.database_url) as session:
        assert session.get(DeliveryJob, job.id).status == ev.SUCCEEDED  # type: ignore[union-attr]


def test_a_content_error_is_told_to_the_sender_as_ae_when_it_asked_for_errors_only(
    settings: Settings, peer: SandboxPeer
) -> None:
    ok = wire(settings, enhanced("ENH-2", application="ER"), ack_connector=CHANNEL)
    assert ok.code == "CA" and outbound_jobs(settings) == []  # success: no application ACK wanted

    bad = enhanced("ENH-3", application="ER", PID="")  # no PID: a required segment is missing
    accept = wire(settings, bad, ack_connector=CHANNEL)
    assert accept.code == "CA"  # stored safely; the content error is the application's answer
    [(job, _)] = outbound_jobs(settings)
    deliver(settings, job.id)
    ack = read_ack(parse(peer.messages[0].raw))
    assert (ack.code, ack.acknowledged_control_id) == ("AE", "ENH-3")
    assert ack.error_code == "100"


def test_without_a_back_channel_the_message_says_the_ack_was_not_sent(settings: Settings) -> None:
    ensure_default_tenant(settings)
    assert wire(settings, enhanced("ENH-4")).code == "CA"
    assert outbound_jobs(settings) == []
    assert any(event == ev.DEFERRED and "--ack-connector" in detail for event, detail in events(settings, "ENH-4"))


def test_a_back_channel_that_does_not_exist_is_reported_and_the_message_still_accepted(
    settings: Settings,
) -> None:
    ensure_default_tenant(settings)
    assert wire(settings, enhanced("ENH-5"), ack_connector="nobody").code == "CA"
    assert any(event == ev.FAILED and "'nobody'" in detail for event, detail in events(settings, "ENH-5"))


def test_a_back_channel_of_another_kind_is_refused(settings: Settings, peer: SandboxPeer) -> None:
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=TENANT, settings=settings).add_connector(
            name="a-webhook", kind="webhook", config={"url": "http://127.0.0.1:9/in", "secret": "s" * 32})
    assert wire(settings, enhanced("ENH-6"), ack_connector="a-webhook").code == "CA"
    assert outbound_jobs(settings) == []
    assert any(event == ev.FAILED and "no hl7v2 connector" in detail for event, detail in events(settings, "ENH-6"))


def test_a_message_refused_outright_gets_cr_and_no_application_ack(settings: Settings, peer: SandboxPeer) -> None:
    unsupported = enhanced("ENH-7").replace(b"REF^I12^REF_I12", b"ORU^R01^ORU_R01")
    accept = wire(settings, unsupported, ack_connector=CHANNEL)
    assert (accept.code, accept.error_code) == ("CR", "200")
    assert outbound_jobs(settings) == []


def test_original_mode_answers_on_the_connection_and_queues_nothing(settings: Settings, peer: SandboxPeer) -> None:
    ack = wire(settings, ref("ORIG-1"), ack_connector=CHANNEL)
    assert (ack.code, ack.acknowledged_control_id) == ("AA", "ORIG-1")
    assert outbound_jobs(settings) == []
