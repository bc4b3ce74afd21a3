"""Referral intake (friendly endpoint and FHIR transaction) and the referral Task state machine."""

from __future__ import annotations

import base64
import json

from fastapi.testclient import TestClient

from mappings.fhir.validation import validate_resource

FHIR = {"Content-Type": "application/fhir+json"}


def referral(number: str = "R-1001", **extra: object) -> dict:
    body = {
        "identifier": {"system": "urn:oid:2.16.840.1.113883.3.9999.1", "value": number},
        "discipline": "PT",
        "patient": {"identifier": {"system": "urn:oid:2.16.840.1.113883.3.9999.2", "value": "MRN-77"},
                    "family": "Rivera", "given": ["Ana"], "birth_date": "1961-04-12", "gender": "female"},
        "referrer": {"npi": "1234567893", "family": "Okafor", "given": ["Chidi"],
                     "direct_address": "c.okafor@direct.example.org"},
        "reason": {"icd10": "M54.50", "display": "Low back pain, unspecified"},
        "coverage": {"payer": "Medicare Part B", "member_id": "1EG4TE5MK73"},
        "note": "Evaluate and treat",
        "attachments": [{"title": "Referral letter", "data": base64.b64encode(b"%PDF-1.4 letter").decode()}],
    }
    body.update(extra)
    return body


def test_post_referral_builds_the_resources_and_opens_a_task(client: TestClient) -> None:
    response = client.post("/referrals", json=referral())
    assert response.status_code == 201, response.text
    view = response.json()
    assert view["status"] == "requested" and view["business_status"]
    task = client.get(f"/fhir/{view['task']}").json()
    assert task["code"]["coding"][0]["code"] == "fulfill"
    assert task["focus"]["reference"] == view["service_request"]
    sr = client.get(f"/fhir/{view['service_request']}").json()
    assert sr["category"][0]["coding"][0]["code"] == "91251008"
    assert task["owner"]["reference"] == sr["performer"][0]["reference"]
    for reference in (sr["subject"], sr["requester"], sr["reasonReference"][0], sr["insurance"][0],
                      sr["supportingInfo"][0], task["owner"]):
        resolved = client.get(f"/fhir/{reference['reference']}")
        assert resolved.status_code == 200, reference
        assert validate_resource(resolved.json()) == []
    role = client.get(f"/fhir/{sr['requester']['reference']}").json()
    assert role["identifier"][0] == {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}
    assert validate_resource(task) == [] and validate_resource(sr) == []


def test_a_duplicate_referral_updates_and_never_duplicates(client: TestClient) -> None:
    first = client.post("/referrals", json=referral()).json()
    second = client.post("/referrals", json=referral(note="Evaluate and treat, 2x/week")).json()
    assert first["task"] == second["task"] and first["service_request"] == second["service_request"]
    for resource_type in ("ServiceRequest", "Task", "Patient", "PractitionerRole", "Condition"):
        total = client.get(f"/fhir/{resource_type}", params={"_summary": "count"}).json()["total"]
        assert total == 1, resource_type
    sr = client.get(f"/fhir/{second['service_request']}").json()
    assert sr["note"][0]["text"].endswith("2x/week") and sr["meta"]["versionId"] == "2"


def test_a_referral_sent_as_a_fhir_transaction_gets_its_task(client: TestClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6a8e7f2c-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "name": [{"family": "Lee"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:6a8e7f2c-0000-4000-8000-000000000002",
         "resource": {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                      "identifier": [{"system": "urn:ref", "value": "FHIR-9"}],
                      "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "5154007"}]}],
                      "subject": {"reference": "urn:uuid:6a8e7f2c-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "ServiceRequest"}},
    ]}
    response = client.post("/fhir", content=json.dumps(bundle), headers=FHIR)
    assert response.status_code == 200, response.text
    sr_location = response.json()["entry"][1]["response"]["location"]
    sr_id = sr_location.split("/")[1]
    tasks = client.get("/fhir/Task", params={"focus": f"ServiceRequest/{sr_id}"}).json()
    assert tasks["total"] == 1
    assert tasks["entry"][0]["resource"]["status"] == "requested"
    plain = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/x"}}
    created = client.post("/fhir/ServiceRequest", content=json.dumps(plain), headers=FHIR).json()
    assert client.get("/fhir/Task", params={"focus": f"ServiceRequest/{created['id']}"}).json()["total"] == 0


def test_task_state_machine_and_referrer_is_told_of_every_change(client: TestClient) -> None:
    view = client.post("/referrals", json=referral()).json()
    task_id = view["task"].split("/")[1]

    def move(status: str, **extra: object):
        return client.post(f"/referrals/{task_id}/status", json={"status": status, **extra})

    illegal = move("completed")
    assert illegal.status_code == 409
    assert "requested" in illegal.json()["title"] and "completed" in illegal.json()["title"]
    assert move("received").status_code == 200
    assert move("rejected").status_code == 409  # a rejection needs a reason
    assert move("accepted").json()["status"] == "accepted"
    assert move("in-progress").json()["status"] == "in-progress"
    held = move("on-hold", reason="Patient in hospital")
    assert held.json()["status"] == "on-hold" and held.json()["status_reason"] == "Patient in hospital"
    assert move("in-progress").status_code == 200
    assert move("completed").json()["status"] == "completed"
    assert move("in-progress").status_code == 409  # completed is final

    communications = client.get("/fhir/Communication", params={"based-on": view["task"]}).json()
    assert communications["total"] == 6  # received, accepted, in-progress, on-hold, in-progress, completed
    for entry in communications["entry"]:
        communication = entry["resource"]
        assert communication["recipient"][0]["reference"] == view["requester"]
        assert validate_resource(communication) == []
    history = client.get(f"/fhir/{view['task']}/_history").json()
    assert [e["resource"]["status"] for e in history["entry"]][:2] == ["completed", "in-progress"]


def test_illegal_transition_through_plain_fhir_update_is_409(client: TestClient) -> None:
    view = client.post("/referrals", json=referral()).json()
    task = client.get(f"/fhir/{view['task']}").json()
    task["status"] = "completed"
    response = client.put(f"/fhir/{view['task']}", content=json.dumps(task), headers=FHIR)
    assert response.status_code == 409
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["expression"] == ["Task.status"]
    assert client.get(f"/fhir/{view['task']}").json()["status"] == "requested"


def test_referrer_and_clinic_views(client: TestClient) -> None:
    a = client.post("/referrals", json=referral("R-1")).json()
    other = referral("R-2")
    other["referrer"] = {**other["referrer"], "npi": "1093817465", "family": "Smith"}
    b = client.post("/referrals", json=other).json()
    mine = client.get("/referrals", params={"requester": a["requester"]}).json()
    assert [r["task"] for r in mine] == [a["task"]]
    clinic = client.get("/referrals", params={"owner": a["owner"]}).json()
    assert {r["task"] for r in clinic} == {a["task"], b["task"]}
    client.post(f"/referrals/{a['task'].split('/')[1]}/status", json={"status": "received"})
    assert [r["task"] for r in client.get("/referrals", params={"status": "received"}).json()] == [a["task"]]


def test_referral_operations_are_audited(client: TestClient) -> None:
    view = client.post("/referrals", json=referral()).json()
    task_id = view["task"].split("/")[1]
    assert client.post(f"/referrals/{task_id}/status", json={"status": "completed"}).status_code == 409
    events = client.get("/fhir/AuditEvent", params={"subtype": "operation", "_count": 50}).json()["entry"]
    outcomes = {(e["resource"]["outcome"], e["resource"].get("outcomeDesc", "").split(" ")[0]) for e in events
                if e["search"]["mode"] == "match"}
    assert ("0", "POST") in outcomes and ("4", "POST") in outcomes
    failed = next(e["resource"] for e in events if e["resource"]["outcome"] == "4")
    assert failed["entity"][0]["what"]["reference"] == view["task"]
