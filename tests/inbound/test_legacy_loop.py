"""The referral loop with nothing but HL7 v2 partners: the referrer's system sends REF^I12 to the
hub's MLLP listener; the hub forwards the referral to the clinic's legacy EMR (REF^I12 built from the
delivery context, so PID carries the patient); the legacy EMR answers RRI^I12 "accepted" to the
hub's listener; the Task moves and the referrer's system gets RRI^I12, then SIU^S12 for the booked
first visit. Real MLLP on 127.0.0.1 both ways; deliveries run in process (``deliver``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from connectors.hl7v2 import MllpClient, MllpServerThread
from hub.settings import Settings
from hub.store.db import transaction
from hub.store.models import DeliveryJob
from hub.sync import events as ev
from hub.sync.config import SyncConfig
from hub.sync.delivery import deliver
from hub.unit_of_work import unit_of_work
from mappings.hl7v2 import (
    OutboundHeader,
    parse,
    read_ack,
    read_appointment,
    read_status_update,
    task_to_rri_i12,
)
from sandboxes.mllp import SandboxPeer
from tests.inbound.test_hl7v2_inbound import TENANT, listener, ref, search  # noqa: F401

FULFILL = "code.coding.where(code='fulfill').exists()"


@pytest.fixture
def partners(settings: Settings, client: TestClient) -> Iterator[tuple[SandboxPeer, SandboxPeer]]:
    """(the referrer's system, the clinic's legacy EMR), each an MLLP peer with an hl7v2 connector."""
    with SandboxPeer() as referrer, SandboxPeer() as legacy:
        with unit_of_work(settings) as session:
            sync = SyncConfig(session, tenant=TENANT, settings=settings)
            for name, peer in (("referrer-system", referrer), ("legacy-emr", legacy)):
                sync.add_connector(name=name, kind="hl7v2", max_attempts=2,
                                   config={"host": "127.0.0.1", "port": peer.port, "timeout_seconds": 5})
            sync.add_route(name="referrals-to-legacy", resource_type="ServiceRequest", connector="legacy-emr",
                           interactions="create")
            sync.add_route(name="status-to-referrer", resource_type="Task", connector="referrer-system",
                           interactions="update", filter=FULFILL)
            sync.add_route(name="visits-to-referrer", resource_type="Appointment", connector="referrer-system")
        yield referrer, legacy


def deliver_all(settings: Settings) -> None:
    for _ in range(20):
        with transaction(settings.database_url) as session:
            open_jobs = session.scalars(
                select(DeliveryJob.id).where(DeliveryJob.status.in_(ev.OPEN_JOB_STATUSES)).order_by(DeliveryJob.id)
            ).all()
        if not open_jobs:
            return
        for job_id in open_jobs:
            deliver(settings, job_id)
    raise AssertionError("deliveries did not finish")


def exchange(listener: MllpServerThread, raw: bytes) -> str:  # noqa: F811
    client = MllpClient("127.0.0.1", listener.port, timeout=10)
    try:
        return read_ack(parse(client.exchange(raw))).code
    finally:
        client.close()


def test_a_referral_round_trip_between_hl7_v2_systems(
    settings: Settings,
    client: TestClient,
    listener: MllpServerThread,  # noqa: F811
    partners: tuple[SandboxPeer, SandboxPeer],
) -> None:
    referrer, legacy = partners
    assert exchange(listener, ref("LOOP-1")) == "AA"
    deliver_all(settings)

    # the legacy EMR got the referral with the patient inline (context), not just a logical id
    [forwarded] = legacy.messages
    assert forwarded.message_type == "REF^I12"
    pid = parse(forwarded.raw).first("PID")
    assert pid is not None and pid.get(5) and pid.get(3, 1, 4) != "THFHIR"
    rf1 = parse(forwarded.raw).first("RF1")
    assert rf1 is not None and rf1.get(6) == "REF-7781"

    # the legacy EMR accepts: an RRI^I12 to the hub's listener, naming the referral as it got it
    [task] = search(client, "Task", identifier="REF-7781")
    accepted = {k: v for k, v in task.items() if k != "businessStatus"} | {"status": "accepted"}
    answer = task_to_rri_i12(accepted, header=OutboundHeader(sending_application="LEGACY_EMR"),
                             control_id="EMR-1", now=datetime(2024, 3, 6, 9, 0))
    assert exchange(listener, answer.encode()) == "AA"
    [task] = search(client, "Task", identifier="REF-7781")
    assert task["status"] == "accepted"
    deliver_all(settings)

    # the referrer's system hears of it as RRI^I12
    statuses = [read_status_update(m.raw) for m in referrer.messages if m.message_type == "RRI^I12"]
    assert [s.status for s in statuses][-1] == "accepted"
    assert statuses[-1].identifier_value == "REF-7781"

    # the first visit is booked: SIU^S12 to the referrer's system, with the patient of the referral
    [sr] = search(client, "ServiceRequest", identifier="REF-7781")
    appointment = {
        "resourceType": "Appointment", "status": "booked",
        "start": "2024-03-08T09:00:00-05:00", "end": "2024-03-08T09:45:00-05:00",
        "basedOn": [{"reference": f"ServiceRequest/{sr['id']}"}],
        "participant": [{"actor": sr["subject"], "status": "accepted"}],
    }
    created = client.post("/fhir/Appointment", content=json.dumps(appointment),
                          headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 201, created.text
    deliver_all(settings)
    [siu] = [m for m in referrer.messages if m.message_type.startswith("SIU")]
    assert siu.message_type == "SIU^S12"
    visit = read_appointment(siu.raw)
    assert visit["start"] == "2024-03-08T09:00:00-05:00" and visit["status"] == "booked"
    sch_pid = parse(siu.raw).first("PID")
    assert sch_pid is not None and sch_pid.get(5)  # names, from the context Bundle

    with transaction(settings.database_url) as session:
        statuses_of_jobs = set(session.scalars(select(DeliveryJob.status)).all())
    assert statuses_of_jobs == {ev.SUCCEEDED}
