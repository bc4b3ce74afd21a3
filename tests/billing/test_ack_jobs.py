"""What a 999 says of an 837P file reaches the delivery job that carried it, not only the claims:
accepted -> an ``acknowledged`` event on the job; rejected -> the job dead-lettered at once with the
reason (sending the same bytes again would be rejected again)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hub.billing.imports import MANUAL_SOURCE, import_x12
from hub.settings import Settings
from hub.store import sync_repository as sync_repo
from hub.store.models import DeliveryJob
from hub.sync import events as ev
from hub.sync.delivery import deliver
from hub.unit_of_work import unit_of_work
from mappings.x12.reader import read_interchanges
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing.conftest import CONNECTOR
from tests.billing.support import service_call


def _job_and_events(settings: Settings, message_id: str) -> tuple[DeliveryJob, list[tuple[str, str]]]:
    with unit_of_work(settings) as session:
        [job] = sync_repo.jobs_of(session, message_id=message_id)
        events = [(e.event, e.detail or "") for e in sync_repo.events_of(session, message_id=message_id)
                  if e.job_id == job.id]
        session.expunge(job)
        return job, events


def _import(settings: Settings, raw: bytes, name: str) -> None:
    with unit_of_work(settings) as session:
        result = import_x12(session, settings, tenant=settings.default_tenant, raw=raw, source=MANUAL_SOURCE,
                            name=name)
        assert result.ok, result.view()


def _answers(raw: bytes, transaction_control: int) -> bool:
    """Whether a 999 has an AK2 for the 837P set with that ST02."""
    return any(seg.id == "AK2" and seg.get(2).isdigit() and int(seg.get(2)) == transaction_control
               for ts in read_interchanges(raw).transactions for seg in ts.segments)


def _rejecting_999(group: int, transaction: int) -> bytes:
    isa = ("ISA*00*          *00*          *ZZ*CLEARINGHOUSE  *ZZ*THERAPYHUB     *261204*0930*^*00501*"
           "000000901*0*T*:~")
    body = ["GS*FA*CLEARINGHOUSE*THERAPYHUB*20261204*0930*901*X*005010X231A1", "ST*999*0001*005010X231A1",
            f"AK1*HC*{group}*005010X222A1", f"AK2*837*{transaction:04d}*005010X222A1", "IK3*NM1*8*2010AA*8",
            "IK5*R*5", "AK9*R*1*1*0", "SE*7*0001", "GE*1*901", "IEA*1*000000901"]
    return (isa + "~".join(body) + "~").encode()


def test_a_999_acknowledges_or_dead_letters_the_job_of_its_file(clinic: TestClient, settings: Settings,
                                                                 house: SandboxClearinghouse) -> None:
    service_call(settings, lambda svc: svc.build_claims())
    files = service_call(settings, lambda svc: svc.submit(connector=CONNECTOR))
    assert len(files) == 2
    for result in files:
        assert deliver(settings, result.job_ids[0]) is None
    accepted, rejected = files
    answers = house.wait_for_responses(4)  # a 999 and a 277CA per file (the 835s are held back or later)

    # the sandbox's own 999 of the first file: the job is acknowledged by it, still succeeded
    name = next(n for n in answers if n.endswith(".999") and _answers(house.response(n), accepted.transaction_control))
    _import(settings, house.response(name), name)
    job, events = _job_and_events(settings, str(accepted.message_id))
    assert job.status == ev.SUCCEEDED
    assert any(kind == ev.ACKNOWLEDGED and detail.startswith("999 A") for kind, detail in events)

    # a 999 rejecting the second file's set: its job is a dead letter at once, with the IK5 reason
    _import(settings, _rejecting_999(int(rejected.group_control), int(rejected.transaction_control)), "r.999")
    job, events = _job_and_events(settings, str(rejected.message_id))
    assert job.status == ev.DEAD and job.attempts == 1
    assert job.last_error and "999 R" in job.last_error and "rejected" in job.last_error
    assert any(kind == ev.DEAD_LETTERED for kind, _ in events)
