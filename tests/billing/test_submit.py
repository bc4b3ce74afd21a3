"""Ready claims -> one 837P per payer: checked by pyx12, kept as an outbound message, the claims
submitted; exported to a directory, or delivered by the sync engine to the sandbox clearinghouse."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from hub.billing.profiles import claim_number
from hub.crypto import cipher_for, decrypt
from hub.settings import Settings
from hub.store import sync_repository as sync_repo
from hub.store.models import BillingClaim, Message, MessageEvent
from hub.sync.delivery import deliver
from hub.unit_of_work import unit_of_work
from mappings.x12.validation import validate
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing.conftest import CONNECTOR
from tests.billing.scenario import ACME, MEDICARE
from tests.billing.support import claim_numbers, modifiers, rows, service_call
from tests.mappings.billing.visits_support import charge, encounter

FHIR = {"Content-Type": "application/fhir+json"}


def _ready_numbers(settings: Settings, payer: str) -> set[str]:
    return {r.patient_control_number for r in rows(settings).values() if r.payer_id == payer and r.status == "ready"}


def test_export_writes_one_valid_file_per_payer(clinic: TestClient, settings: Settings, tmp_path: Path) -> None:
    service_call(settings, lambda svc: svc.build_claims())
    expected = {MEDICARE: _ready_numbers(settings, MEDICARE), ACME: _ready_numbers(settings, ACME)}
    assert len(expected[MEDICARE]) == 10 and len(expected[ACME]) == 1  # the blocked Acme claim stays out

    files = service_call(settings, lambda svc: svc.submit(out_dir=tmp_path))
    assert sorted(f.payer_id for f in files) == sorted([ACME, MEDICARE]) and {f.status for f in files} == {"written"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{f.payer_id}-{f.interchange_control:09d}.837" for f in files)
    for result in files:
        text = Path(str(result.path)).read_text()
        assert [i for i in validate(text) if i.severity == "error"] == []
        assert set(claim_numbers(text)) == expected[result.payer_id] == set(result.patient_control_numbers)
        assert not result.job_ids
        if result.payer_id == ACME:  # the payer as the billing profile names it
            assert "NM1*PR*2*ACME HEALTH PLAN*****PI*ACME1~" in text and "SBR*P*18*******CI~" in text

    by_visit = rows(settings)
    assert by_visit["p2-wed"].status == "blocked" and by_visit["p2-wed"].file_message_id is None
    with unit_of_work(settings) as session:
        for result in files:
            message = session.get(Message, result.message_id)
            assert message is not None and message.event == "x12.837P" and message.direction == "outbound"
            assert "ISA*" not in (message.raw_payload or "")  # encrypted at rest
            assert (decrypt(cipher_for(settings), message.raw_payload) or b"").startswith(b"ISA*")
            assert sync_repo.jobs_of(session, message_id=message.id) == []  # exported: no delivery job
            details = " ".join(e.detail or "" for e in session.scalars(
                select(MessageEvent).where(MessageEvent.message_id == message.id)))
            assert all(claim_id in details for claim_id in result.claim_ids)
            submitted = list(session.scalars(select(BillingClaim).where(BillingClaim.file_message_id == message.id)))
            assert {r.claim_id for r in submitted} == set(result.claim_ids)
            assert {(r.status, r.interchange_control, r.transaction_control) for r in submitted} == {
                ("submitted", result.interchange_control, result.transaction_control)}
            assert all(r.submitted_at is not None for r in submitted)
    assert service_call(settings, lambda svc: svc.submit(out_dir=tmp_path)) == []  # nothing is ready any more


def test_submit_delivers_one_file_per_payer_to_the_clearinghouse(
        clinic: TestClient, settings: Settings, house: SandboxClearinghouse) -> None:
    service_call(settings, lambda svc: svc.build_claims())
    expected = {MEDICARE: _ready_numbers(settings, MEDICARE), ACME: _ready_numbers(settings, ACME)}
    files = service_call(settings, lambda svc: svc.submit(connector=CONNECTOR))
    assert {f.status for f in files} == {"queued"} and all(len(f.job_ids) == 1 for f in files)
    for result in files:
        assert deliver(settings, result.job_ids[0]) is None
    received = house.claim_files
    assert len(received) == 2 and all(r.accepted_sets == 1 and r.rejected_sets == 0 for r in received)
    assert sorted(set(r.claims) for r in received) == sorted([expected[MEDICARE], expected[ACME]], key=sorted)
    with unit_of_work(settings) as session:
        jobs = [j for f in files for j in sync_repo.jobs_of(session, message_id=str(f.message_id))]
        assert {j.status for j in jobs} == {"succeeded"}

    # a second week: one more visit; its file's control numbers never repeat the first ones
    visit = encounter("pt-next", "2025-03-17", ["lbp"])
    clinic.put("/fhir/Encounter/pt-next", json=visit, headers=FHIR).raise_for_status()
    item = charge("c-next", "97110", "pt-next", "2025-03-17", "pt", minutes=30)
    clinic.put("/fhir/ChargeItem/c-next", json=item, headers=FHIR).raise_for_status()
    again = service_call(settings, lambda svc: svc.build_claims())
    assert [c.encounter_id for c in again.claims if c.action == "created"] == ["pt-next"]
    [second] = service_call(settings, lambda svc: svc.submit())
    assert second.patient_control_numbers == (claim_number(settings.default_tenant, "pt-next"),)
    assert second.interchange_control not in {f.interchange_control for f in files}
    assert second.transaction_control not in {f.transaction_control for f in files}
    assert deliver(settings, second.job_ids[0]) is None
    assert len(house.claim_files) == 3


def test_a_visit_changed_after_submission_gets_a_replacement(clinic: TestClient, settings: Settings,
                                                             tmp_path: Path) -> None:
    service_call(settings, lambda svc: svc.build_claims())
    service_call(settings, lambda svc: svc.submit(out_dir=tmp_path))
    original = rows(settings)["pt-mon"]
    item = clinic.get("/fhir/ChargeItem/c2").json()
    item["quantity"]["value"] = 38  # 97110 23 -> 38 minutes: 3 units
    clinic.put("/fhir/ChargeItem/c2", json=item, headers=FHIR).raise_for_status()

    waiting = service_call(settings, lambda svc: svc.build_claims())
    assert [s.encounter_id for s in waiting.skipped] == ["pt-mon"]
    assert "payer's claim number" in waiting.skipped[0].reason
    assert rows(settings)["pt-mon"].claim_id == original.claim_id  # the submitted claim is left as it is

    with unit_of_work(settings) as session:  # the 835 / 277CA gave the payer's claim number
        row = session.scalars(select(BillingClaim).where(BillingClaim.claim_id == original.claim_id)).one()
        row.status, row.payer_claim_number = "paid", "PAYER-ICN-77"
    replaced = service_call(settings, lambda svc: svc.build_claims())
    [replacement] = [c for c in replaced.claims if c.action == "replacement"]
    assert replacement.patient_control_number == claim_number(settings.default_tenant, "pt-mon", 1)
    assert replacement.claim_id != original.claim_id and replacement.status == "ready"
    row = rows(settings)["pt-mon"]
    assert (row.frequency_code, row.charge_cents) == ("7", 31500)
    claim = clinic.get(f"/fhir/Claim/{row.claim_id}").json()
    assert claim["related"][0]["reference"]["value"] == "PAYER-ICN-77"
    assert modifiers(claim)[1] == ["GP"]

    [file] = service_call(settings, lambda svc: svc.submit(out_dir=tmp_path))
    text = Path(str(file.path)).read_text()
    assert "CLM*" + replacement.patient_control_number + "*315***11:B:7" in text and "REF*F8*PAYER-ICN-77" in text
    assert [i for i in validate(text) if i.severity == "error"] == []
    assert {c.action for c in service_call(settings, lambda svc: svc.build_claims()).claims} == {"unchanged"}


def test_a_file_that_cannot_be_written_sends_nothing(client: TestClient, settings: Settings,
                                                     house: SandboxClearinghouse) -> None:
    from hub.sync.config import SyncConfig
    from tests.billing.scenario import SUBMITTER, billing_profile, load_week

    load_week(client)
    profile = billing_profile(submitter={**SUBMITTER, "etin": "E" * 40})  # longer than ISA06 takes
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=settings.default_tenant, settings=settings).add_connector(
            name=CONNECTOR, kind="x12_billing", config=house.connector_config("sftp", billing=profile))
    service_call(settings, lambda svc: svc.build_claims())
    ready = {eid for eid, r in rows(settings).items() if r.status == "ready"}
    files = service_call(settings, lambda svc: svc.submit())
    assert {f.status for f in files} == {"invalid"} and all(f.issues and f.message_id is None for f in files)
    assert {eid for eid, r in rows(settings).items() if r.status == "ready"} == ready  # they stay ready
    with unit_of_work(settings) as session:
        assert session.scalars(select(Message).where(Message.event == "x12.837P")).first() is None
