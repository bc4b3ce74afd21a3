"""Closing the loop: a signed certification page that comes back by fax or Direct completes its
certification Task, with nobody typing anything; the same pages again complete nothing twice; a
document that matches nothing waits in triage until an administrator matches it, audited."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.documents.intake import INTAKE_AGENT, RECEIVED_SIGNATURE, run_intake, sweep_received
from hub.settings import Settings
from hub.unit_of_work import using_enqueuer
from mappings.documents import CONTENT_HASH_SYSTEM, INTAKE_SYSTEM
from sandboxes.scans import rewrap_pdf, scanned_pdf
from tests.documents.plans import certification_page, receive, text_pdf
from tests.enqueuers import RecordingEnqueuer
from workers.app import make_celery
from workers.tasks import document_intake, intake_document


@pytest.fixture
def hub(settings: Settings) -> Iterator[TestClient]:
    recording = RecordingEnqueuer()
    with using_enqueuer(recording), TestClient(create_app(settings, enqueuer=recording),
                                               base_url="http://testserver") as client:
        yield client


def page_of(client: TestClient, plan: dict) -> bytes:
    return base64.b64decode(client.get(f"/fhir/{plan['document']}").json()["content"][0]["attachment"]["data"])


def about(audit: dict) -> str | None:
    return ((audit.get("entity") or [{}])[0].get("what") or {}).get("reference")


def intake_of(document: dict) -> str:
    return next(c["coding"][0]["code"] for c in document["category"] if c["coding"][0]["system"] == INTAKE_SYSTEM)


def assert_certified_by(client: TestClient, plan: dict, task_id: str, document_id: str, pdf: bytes) -> None:
    task = client.get(f"/fhir/Task/{task_id}").json()
    assert task["status"] == "completed"
    assert {"reference": f"DocumentReference/{document_id}"} in [o.get("valueReference") for o in task["output"]]
    [entry] = client.get("/fhir/Provenance", params={"target": plan["care_plan"]}).json()["entry"]
    provenance = entry["resource"]
    assert {"role": "source", "what": {"reference": f"DocumentReference/{document_id}"}} in provenance["entity"]
    [signature] = provenance["signature"]
    assert signature["who"] == task["owner"] and base64.b64decode(signature["data"]) == pdf
    signed_ref = next(t["reference"] for t in provenance["target"] if t["reference"].startswith("DocumentReference/"))
    signed = client.get(f"/fhir/{signed_ref}").json()
    assert base64.b64decode(signed["content"][0]["attachment"]["data"]) == pdf  # the received page, as it came
    assert signed["relatesTo"] == [{"code": "signs", "target": {"reference": plan["document"]}}]
    care_plan = client.get(f"/fhir/{plan['care_plan']}").json()
    assert any(e["url"].endswith("plan-certified") for e in care_plan["extension"])
    received = client.get(f"/fhir/DocumentReference/{document_id}").json()
    assert intake_of(received) == "matched" and received["docStatus"] == "final"
    assert received["context"]["related"] == [{"reference": plan["care_plan"]}]


def test_a_scanned_signed_page_completes_its_certification(hub: TestClient, settings: Settings) -> None:
    plan, task_id = certification_page(hub)
    scan = scanned_pdf(page_of(hub, plan))
    document_id = receive(settings, scan, "fax-1")
    outcome = run_intake(settings, settings.default_tenant, document_id)
    assert (outcome.outcome, outcome.task, outcome.reason) == ("matched", task_id, "matched by barcode")
    assert_certified_by(hub, plan, task_id, document_id, scan)
    audits = [e["resource"] for e in hub.get("/fhir/AuditEvent", params={"_count": "200"}).json()["entry"]]
    assert any(a["agent"][0].get("altId") == INTAKE_AGENT and a.get("outcomeDesc") == "intake matched"
               and about(a) == f"DocumentReference/{document_id}" for a in audits)
    # the intake again (the sweep after a crash) completes nothing twice; nor does the vendor's resent
    # webhook, which stores the document again as received (the same DocumentReference)
    assert run_intake(settings, settings.default_tenant, document_id).outcome == "matched"
    assert receive(settings, scan, "fax-1", message_id="fax-1-resent") == document_id
    assert intake_of(hub.get(f"/fhir/DocumentReference/{document_id}").json()) == "received"
    again = run_intake(settings, settings.default_tenant, document_id)
    assert (again.outcome, again.task) == ("matched", task_id)
    assert len(hub.get("/fhir/Provenance", params={"target": plan["care_plan"]}).json()["entry"]) == 1
    assert intake_of(hub.get(f"/fhir/DocumentReference/{document_id}").json()) == "matched"


def test_a_page_with_only_the_return_code_in_its_text_matches_too(hub: TestClient, settings: Settings) -> None:
    plan, task_id = certification_page(hub)
    pdf = text_pdf("Signed plan of care, returned", f"Return code: {plan['return_code']}")
    document_id = receive(settings, pdf, "direct-1", channel="direct")
    outcome = run_intake(settings, settings.default_tenant, document_id)
    assert (outcome.outcome, outcome.task, outcome.reason) == ("matched", task_id, "matched by return code in the text")
    assert_certified_by(hub, plan, task_id, document_id, pdf)


def test_the_same_scan_in_another_container_is_a_duplicate_applied_once(hub: TestClient, settings: Settings) -> None:
    plan, task_id = certification_page(hub)
    scan = scanned_pdf(page_of(hub, plan))
    first = receive(settings, scan, "fax-1")
    again = receive(settings, rewrap_pdf(scan), "direct-1", channel="direct")
    assert run_intake(settings, settings.default_tenant, first).outcome == "matched"
    outcome = run_intake(settings, settings.default_tenant, again)
    assert (outcome.outcome, outcome.duplicate_of, outcome.task) == ("duplicate", first, task_id)
    assert len(hub.get("/fhir/Provenance", params={"target": plan["care_plan"]}).json()["entry"]) == 1
    documents = [hub.get(f"/fhir/DocumentReference/{i}").json() for i in (first, again)]
    hashes = [next(i["value"] for i in d["identifier"] if i["system"] == CONTENT_HASH_SYSTEM) for d in documents]
    assert hashes[0] == hashes[1] and intake_of(documents[1]) == "duplicate"
    found = hub.get("/fhir/DocumentReference", params={"identifier": f"{CONTENT_HASH_SYSTEM}|{hashes[0]}"}).json()
    assert found["total"] == 2


def test_an_unreadable_document_waits_in_triage_and_is_matched_by_hand(hub: TestClient, settings: Settings) -> None:
    plan, task_id = certification_page(hub)
    # a page whose return code did not survive the fax (nor any barcode): nothing to read
    unreadable = scanned_pdf(text_pdf("Plan of care, signed", "Return code: (illegible)"))
    document_id = receive(settings, unreadable, "fax-9")
    outcome = run_intake(settings, settings.default_tenant, document_id)
    assert (outcome.outcome, outcome.reason) == ("triage", "no return code found")
    document = hub.get(f"/fhir/DocumentReference/{document_id}").json()
    assert intake_of(document) == "triage" and document["docStatus"] == "preliminary"
    assert hub.get(f"/fhir/Task/{task_id}").json()["status"] == "requested"

    listed = hub.get("/admin/api/documents/triage").json()["items"]
    assert [(d["id"], d["channel"], d["reason"]) for d in listed] == [(document_id, "fax", "no return code found")]
    assert set(listed[0]) == {"id", "channel", "received", "reason", "size"}  # nothing of the document itself
    assert hub.post(f"/admin/api/documents/{document_id}/match", json={"task": "nope"}).status_code == 404
    matched = hub.post(f"/admin/api/documents/{document_id}/match", json={"task": task_id})
    assert matched.status_code == 200, matched.text
    assert matched.json()["outcome"] == "matched" and matched.json()["task"] == f"Task/{task_id}"
    assert_certified_by(hub, plan, task_id, document_id, unreadable)
    assert hub.get("/admin/api/documents/triage").json()["items"] == []
    assert hub.post(f"/admin/api/documents/{document_id}/match", json={"task": task_id}).status_code == 409
    audits = [e["resource"] for e in hub.get("/fhir/AuditEvent", params={"_count": "200"}).json()["entry"]]
    done = [a for a in audits
            if about(a) == f"DocumentReference/{document_id}" and "/match" in a.get("outcomeDesc", "")]
    assert sorted(a["outcome"] for a in done) == ["0", "4", "4"]  # matched; the unknown Task and the second try refused
    assert all(a["agent"][0]["altId"] != INTAKE_AGENT for a in done)


def test_the_sweep_runs_the_intake_a_channel_never_ran(hub: TestClient, settings: Settings) -> None:
    plan, task_id = certification_page(hub)
    receive(settings, scanned_pdf(page_of(hub, plan)), "fax-1")
    # the process died after the channel's commit: the document is still "received"
    assert sweep_received(settings) == 0  # too recent: its channel's own intake may be running
    assert sweep_received(settings, grace=timedelta(seconds=-5)) == 1
    assert hub.get(f"/fhir/Task/{task_id}").json()["status"] == "completed"
    assert sweep_received(settings, grace=timedelta(seconds=-5)) == 0


def test_the_worker_tasks_of_the_intake(hub: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    schedule = make_celery("memory://").conf.beat_schedule
    assert schedule["document-intake"]["task"] == "hub.document_intake"
    plan, task_id = certification_page(hub)
    document_id = receive(settings, scanned_pdf(page_of(hub, plan)), "fax-1")
    monkeypatch.setattr("workers.tasks.get_settings", lambda: settings)
    assert document_intake() == 0  # received just now: left to the intake its channel runs
    assert intake_document(settings.default_tenant, document_id) == "matched"
    assert hub.get(f"/fhir/Task/{task_id}").json()["status"] == "completed"


def test_a_task_completed_through_fhir_naming_a_document_that_is_no_pdf_gets_the_rendered_page(
        hub: TestClient) -> None:
    plan, task_id = certification_page(hub)
    note = {"resourceType": "DocumentReference", "id": "a-note", "status": "current",
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"hello").decode()}}]}
    assert hub.put("/fhir/DocumentReference/a-note", json=note,
                   headers={"Content-Type": "application/fhir+json"}).status_code == 201
    task = hub.get(f"/fhir/Task/{task_id}").json()
    task.pop("meta")
    completed = {**task, "status": "completed", "output": [
        {"type": {"text": RECEIVED_SIGNATURE}, "valueReference": {"reference": "DocumentReference/a-note"}}]}
    response = hub.put(f"/fhir/Task/{task_id}", json=completed, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    [entry] = hub.get("/fhir/Provenance", params={"target": plan["care_plan"]}).json()["entry"]
    assert base64.b64decode(entry["resource"]["signature"][0]["data"]).startswith(b"%PDF-")
    assert {"reference": "DocumentReference/a-note"} not in [e["what"] for e in entry["resource"]["entity"]]
