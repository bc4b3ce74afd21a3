"""Visits put through /fhir become one FHIR Claim per visit with its billing_claims row, scrubbed with
what only the store knows (plans on file and their certification, the year's therapy amount)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hub.billing.profiles import claim_number
from hub.settings import Settings
from hub.store.models import BillingClaim
from hub.unit_of_work import unit_of_work
from mappings.billing.codes import MODIFIER_EXTENSION
from mappings.referral.certification import OBLIGATION_CODE_SYSTEM
from tests.billing.scenario import ACME, MEDICARE
from tests.billing.support import modifiers, rows, service_call

WEEK = {"pt-mon", "pt-thu", "pt-fri", "ot-tue", "ot-thu", "slp-wed", "p2-wed", "p2-thu",
        "p3-jan1", "p3-jan2", "p3-jan3", "p3-mar"}


def _claim(client: TestClient, claim_id: str) -> dict[str, Any]:
    response = client.get(f"/fhir/Claim/{claim_id}")
    assert response.status_code == 200, response.text
    claim: dict[str, Any] = response.json()
    return claim


def test_a_claim_per_visit_scrubbed_with_the_stores_context(clinic: TestClient, settings: Settings) -> None:
    result = service_call(settings, lambda svc: svc.build_claims())
    assert {c.encounter_id for c in result.claims} == WEEK and not result.skipped
    assert all(c.action == "created" for c in result.claims)
    by_visit = rows(settings)

    # the claim number is derived from tenant + visit: at most 20 characters, the FHIR Claim's identifier
    pt_mon = by_visit["pt-mon"]
    assert pt_mon.patient_control_number == claim_number(settings.default_tenant, "pt-mon")
    assert len(pt_mon.patient_control_number) <= 20
    claim = _claim(clinic, pt_mon.claim_id)
    assert claim["identifier"][0]["value"] == pt_mon.patient_control_number
    assert claim["patient"]["reference"] == "Patient/pat-1"
    assert (pt_mon.patient_id, pt_mon.discipline, pt_mon.payer_id) == ("pat-1", "PT", MEDICARE)
    assert pt_mon.charge_cents == 27000  # 97162 $180 + 97110 23 min = 2 units x $45
    assert pt_mon.service_from is not None and str(pt_mon.service_from.date()) == "2025-03-10"

    # discipline and assistant modifiers; untimed codes one unit; minutes by the 8-minute rule
    fri = _claim(clinic, by_visit["pt-fri"].claim_id)
    assert modifiers(fri)[0] == ["GP", "CQ"]
    assert by_visit["ot-thu"].discipline == "OT" and modifiers(_claim(clinic, by_visit["ot-thu"].claim_id)) == [
        ["GO", "CO"]]
    assert by_visit["slp-wed"].discipline == "SLP"

    # the Acme visit with 97140 + 97530 and no distinct-service modifier is blocked, naming rule and line
    blocked = by_visit["p2-wed"]
    assert (blocked.status, blocked.payer_id) == ("blocked", ACME)
    findings = json.loads(blocked.findings or "[]")
    ncci = [f for f in findings if f["rule"] == "ncci.pair"]
    assert {f["line"] for f in ncci} == {1, 2} and all(f["severity"] == "error" and f["fix"] for f in ncci)
    assert all("Roe" not in f["message"] and "pat-2" not in f["message"] for f in findings)  # no PHI
    assert by_visit["p2-thu"].status == "ready"

    # pat-3 billed $2,400 of PT in January: the March visit passes the 2025 threshold and carries KX
    march = by_visit["p3-mar"]
    assert march.status == "ready"
    assert modifiers(_claim(clinic, march.claim_id)) == [["GP", "KX"]]
    assert modifiers(_claim(clinic, by_visit["p3-jan3"].claim_id)) == [["GP"]]
    assert not [f for f in json.loads(march.findings or "[]") if f["rule"].startswith("modifier.kx")]


def test_building_twice_changes_nothing(clinic: TestClient, settings: Settings) -> None:
    service_call(settings, lambda svc: svc.build_claims())
    first = {eid: (r.claim_id, r.status) for eid, r in rows(settings).items()}
    versions = {eid: _claim(clinic, cid)["meta"]["versionId"] for eid, (cid, _) in first.items()}
    again = service_call(settings, lambda svc: svc.build_claims())
    assert {c.action for c in again.claims} == {"unchanged"}
    assert {eid: (r.claim_id, r.status) for eid, r in rows(settings).items()} == first
    with unit_of_work(settings) as session:
        assert session.scalar(select(func.count()).select_from(BillingClaim)) == len(WEEK)
    assert {eid: _claim(clinic, cid)["meta"]["versionId"] for eid, (cid, _) in first.items()} == versions


def test_through_bills_only_the_earlier_visits(clinic: TestClient, settings: Settings) -> None:
    from datetime import date

    result = service_call(settings, lambda svc: svc.build_claims(through=date(2025, 3, 11)))
    assert {c.encounter_id for c in result.claims} == {"pt-mon", "ot-tue", "p3-jan1", "p3-jan2", "p3-jan3",
                                                       "p3-mar"}


def test_a_completed_certification_task_makes_the_plan_certified(clinic: TestClient, settings: Settings) -> None:
    task = {"resourceType": "Task", "id": "cert-pt", "status": "completed", "intent": "order",
            "code": {"coding": [{"system": OBLIGATION_CODE_SYSTEM, "code": "certification"}]},
            "focus": {"reference": "CarePlan/plan-pt"}, "for": {"reference": "Patient/pat-1"},
            "lastModified": "2025-03-12T10:00:00Z"}
    response = clinic.put("/fhir/Task/cert-pt", json=task, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code in (200, 201), response.text
    service_call(settings, lambda svc: svc.build_claims())
    by_visit = rows(settings)
    rules = {eid: {f["rule"] for f in json.loads(r.findings or "[]")} for eid, r in by_visit.items()}
    assert "plan.not-certified" not in rules["pt-mon"]  # its plan's certification Task is completed
    assert "plan.not-certified" in rules["ot-tue"]  # the OT plan is not certified (a warning only)
    assert by_visit["ot-tue"].status == "ready"


def test_a_change_before_submission_rebuilds_the_same_claim(clinic: TestClient, settings: Settings) -> None:
    service_call(settings, lambda svc: svc.build_claims())
    blocked = rows(settings)["p2-wed"]
    charge = clinic.get("/fhir/ChargeItem/p2-wed-97140").json()
    charge["extension"] = [{"url": MODIFIER_EXTENSION,
                            "valueCoding": {"system": "http://www.ama-assn.org/go/cpt", "code": "59"}}]
    assert clinic.put("/fhir/ChargeItem/p2-wed-97140", json=charge,
                      headers={"Content-Type": "application/fhir+json"}).status_code == 200
    result = service_call(settings, lambda svc: svc.build_claims())
    [rebuilt] = [c for c in result.claims if c.encounter_id == "p2-wed"]
    assert (rebuilt.action, rebuilt.claim_id, rebuilt.status) == ("updated", blocked.claim_id, "ready")
    assert "59" in modifiers(_claim(clinic, blocked.claim_id))[0]
