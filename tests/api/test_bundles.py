"""Transaction and batch Bundles posted to /fhir."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}
PATIENT_URN = "urn:uuid:6c6a0cbe-49a2-4cd7-9a40-6f2d8f0a2f11"
REFERRAL_URN = "urn:uuid:0d6e37c4-3b1c-4f49-9d5c-3d35cc1a7e22"
TASK_URN = "urn:uuid:a1b7c2b0-3c76-4d43-8d16-9b9e8f3f4c33"
MRN = {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-4411"}


def post_bundle(client: TestClient, bundle: dict, **headers):
    return client.post("/fhir", content=json.dumps(bundle), headers={**FHIR, **headers})


def entry(
    resource: dict, method: str = "POST", url: str | None = None, full_url: str | None = None, **request
):
    out: dict = {"request": {"method": method, "url": url or resource["resourceType"], **request}}
    if full_url:
        out["fullUrl"] = full_url
    if resource:
        out["resource"] = resource
    return out


def patient(**extra) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [dict(MRN)],
        "name": [{"family": "Okafor", "given": ["Ada"]}],
        **extra,
    }


def referral(subject: str, **extra) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": subject},
        **extra,
    }


def task(focus: str, owner: str, **extra) -> dict:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "focus": {"reference": focus},
        "for": {"reference": owner},
        **extra,
    }


def referral_transaction(**patient_request) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry(patient(), full_url=PATIENT_URN, **patient_request),
            entry(referral(PATIENT_URN), full_url=REFERRAL_URN),
            entry(task(REFERRAL_URN, PATIENT_URN), full_url=TASK_URN),
        ],
    }


def total(client: TestClient, resource_type: str) -> int:
    response = client.get(f"/fhir/{resource_type}", params={"_summary": "count"})
    assert response.status_code == 200, response.text
    return response.json()["total"]


def totals(client: TestClient) -> dict[str, int]:
    return {t: total(client, t) for t in ("Patient", "ServiceRequest", "Task")}


def location_id(response_entry: dict) -> str:
    type_, rid, history, version = response_entry["response"]["location"].split("/")
    assert history == "_history"
    return rid


def test_transaction_resolves_urn_uuid_references(client: TestClient) -> None:
    response = post_bundle(client, referral_transaction())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "transaction-response"
    entries = body["entry"]
    assert len(entries) == 3
    # entry responses come back in request order
    assert [e["response"]["location"].split("/")[0] for e in entries] == ["Patient", "ServiceRequest", "Task"]
    for e in entries:
        assert e["response"]["status"].startswith("201")
        assert e["response"]["etag"] == 'W/"1"'
        assert e["response"]["location"].endswith("/_history/1")
    patient_id, referral_id, task_id = (location_id(e) for e in entries)
    assert entries[0]["fullUrl"] == f"http://testserver/fhir/Patient/{patient_id}"

    stored_referral = client.get(f"/fhir/ServiceRequest/{referral_id}").json()
    assert stored_referral["subject"] == {"reference": f"Patient/{patient_id}"}
    stored_task = client.get(f"/fhir/Task/{task_id}").json()
    assert stored_task["focus"] == {"reference": f"ServiceRequest/{referral_id}"}
    assert stored_task["for"] == {"reference": f"Patient/{patient_id}"}
    # every rewritten reference resolves by read
    for ref in (stored_task["focus"]["reference"], stored_task["for"]["reference"]):
        assert client.get(f"/fhir/{ref}").status_code == 200
    # and the response carried the stored representation
    assert entries[2]["resource"] == client.get(f"/fhir/Task/{task_id}").json()
    assert "urn:uuid" not in json.dumps(stored_referral) + json.dumps(stored_task)
    assert totals(client) == {"Patient": 1, "ServiceRequest": 1, "Task": 1}


def test_transaction_prefer_return_minimal_omits_resources(client: TestClient) -> None:
    response = post_bundle(client, referral_transaction(), Prefer="return=minimal")
    assert response.status_code == 200, response.text
    for e in response.json()["entry"]:
        assert "resource" not in e
        assert e["response"]["status"].startswith("201")
        assert e["response"]["etag"] == 'W/"1"'


def test_transaction_is_all_or_nothing(client: TestClient) -> None:
    bundle = referral_transaction()
    bundle["entry"][2]["resource"]["status"] = "bogus"
    response = post_bundle(client, bundle)
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] == "error"
    assert issue["code"] == "code-invalid"
    assert issue["expression"] == ["Bundle.entry[2].resource.status"]
    assert totals(client) == {"Patient": 0, "ServiceRequest": 0, "Task": 0}
    # nothing half-written in the history either
    assert client.get("/fhir/_history").json()["total"] == 0


def test_transaction_rolls_back_when_a_late_entry_fails(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", content=json.dumps(patient()), headers=FHIR).json()
    bundle = referral_transaction()
    # the DELETE and the POSTs run first; the PUT with a stale If-Match fails last
    bundle["entry"].append(entry({}, "DELETE", f"Patient/{existing['id']}"))
    bundle["entry"].append(
        entry(
            dict(existing, active=True),
            "PUT",
            f"Patient/{existing['id']}",
            ifMatch='W/"7"',
        )
    )
    response = post_bundle(client, bundle)
    assert response.status_code == 412, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[4].request.ifMatch"]
    assert totals(client) == {"Patient": 1, "ServiceRequest": 0, "Task": 0}
    assert client.get(f"/fhir/Patient/{existing['id']}").json()["meta"]["versionId"] == "1"


def test_transaction_invalid_nested_element_points_into_the_entry(client: TestClient) -> None:
    bundle = referral_transaction()
    bundle["entry"][0]["resource"]["identifier"][0]["use"] = "primary"
    bundle["entry"][1]["resource"]["foo"] = 1
    response = post_bundle(client, bundle)
    assert response.status_code == 400, response.text
    expressions = [e for i in response.json()["issue"] for e in i.get("expression", [])]
    assert expressions and all(e.startswith("Bundle.entry[") for e in expressions)
    assert (
        "Bundle.entry[0].resource.identifier[0].use" in expressions
        or "Bundle.entry[1].resource.foo" in expressions
    )
    assert totals(client)["Patient"] == 0


def test_transaction_conditional_create_reuses_the_existing_resource(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", content=json.dumps(patient()), headers=FHIR)
    assert existing.status_code == 201
    existing_id = existing.json()["id"]
    response = post_bundle(
        client, referral_transaction(ifNoneExist=f"identifier={MRN['system']}|{MRN['value']}")
    )
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"].startswith("200")
    assert location_id(entries[0]) == existing_id
    assert entries[1]["response"]["status"].startswith("201")
    referral_id, task_id = location_id(entries[1]), location_id(entries[2])
    assert (
        client.get(f"/fhir/ServiceRequest/{referral_id}").json()["subject"]["reference"]
        == f"Patient/{existing_id}"
    )
    assert client.get(f"/fhir/Task/{task_id}").json()["for"]["reference"] == f"Patient/{existing_id}"
    assert total(client, "Patient") == 1


def test_transaction_conditional_create_without_match_creates(client: TestClient) -> None:
    response = post_bundle(
        client, referral_transaction(ifNoneExist=f"identifier={MRN['system']}|{MRN['value']}")
    )
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"].startswith("201")
    patient_id = location_id(entries[0])
    referral_id = location_id(entries[1])
    assert (
        client.get(f"/fhir/ServiceRequest/{referral_id}").json()["subject"]["reference"]
        == f"Patient/{patient_id}"
    )


def test_transaction_put_delete_and_get(client: TestClient) -> None:
    doomed = client.post("/fhir/Patient", content=json.dumps(patient()), headers=FHIR).json()
    kept = client.post("/fhir/Patient", content=json.dumps(patient(active=True)), headers=FHIR).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry(patient(id="pt-fixed", gender="female"), "PUT", "Patient/pt-fixed", full_url="urn:uuid:1"),
            entry(referral("urn:uuid:1"), full_url="urn:uuid:2"),
            entry({}, "DELETE", f"Patient/{doomed['id']}"),
            entry({}, "GET", f"Patient/{kept['id']}"),
            entry(dict(kept, active=False), "PUT", f"Patient/{kept['id']}", ifMatch='W/"1"'),
        ],
    }
    response = post_bundle(client, bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert len(entries) == 5
    assert entries[0]["response"]["status"].startswith("201")
    assert entries[0]["response"]["location"] == "Patient/pt-fixed/_history/1"
    referral_id = location_id(entries[1])
    assert (
        client.get(f"/fhir/ServiceRequest/{referral_id}").json()["subject"]["reference"] == "Patient/pt-fixed"
    )
    assert entries[2]["response"]["status"].startswith("204")
    assert "resource" not in entries[2]
    # GET runs after the writes (FHIR processing order), in the response at its own place
    assert entries[3]["response"]["status"].startswith("200")
    assert entries[3]["resource"]["id"] == kept["id"]
    assert entries[3]["resource"]["active"] is False
    assert entries[4]["response"]["status"].startswith("200")
    assert entries[4]["response"]["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{doomed['id']}").status_code == 410
    assert client.get("/fhir/Patient/pt-fixed").json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{kept['id']}").json()["active"] is False


def test_transaction_entry_errors_point_at_the_request(client: TestClient) -> None:
    cases = [
        (entry(patient(), "POST", "Patient/123"), "Bundle.entry[0].request.url"),
        ({"request": {"method": "POST", "url": "Patient"}}, "Bundle.entry[0].resource"),
        ({"resource": patient()}, "Bundle.entry[0].request"),
        (entry(patient(), "PATCH", "Patient"), "Bundle.entry[0].request"),
        (entry(patient(), "POST", "Patient", ifNoneExist="_count=1"), "Bundle.entry[0].request.ifNoneExist"),
        (entry(patient(id="a b"), "PUT", "Patient/a b"), "Bundle.entry[0].request.url"),
        (entry(patient(id="other"), "PUT", "Patient/p1"), "Bundle.entry[0].resource.id"),
        (entry(patient(), "POST", "Observation"), "Bundle.entry[0].resource.resourceType"),
    ]
    for bad, expression in cases:
        response = post_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": [bad]})
        assert response.status_code == 400, response.text
        assert response.json()["issue"][0]["expression"] == [expression], response.text
    assert total(client, "Patient") == 0


def test_transaction_with_an_unknown_type(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry({"resourceType": "Foo"}, url="Foo")],
    }
    response = post_bundle(client, bundle)
    assert response.status_code in (400, 404), response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_transaction_refuses_duplicate_full_urls(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry(patient(), full_url=PATIENT_URN), entry(patient(), full_url=PATIENT_URN)],
    }
    response = post_bundle(client, bundle)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].fullUrl"]
    assert total(client, "Patient") == 0


def test_empty_transaction(client: TestClient) -> None:
    response = post_bundle(client, {"resourceType": "Bundle", "type": "transaction"})
    assert response.status_code == 200
    assert response.json()["type"] == "transaction-response"
    assert response.json().get("entry", []) == []


def test_batch_entries_are_independent(client: TestClient) -> None:
    kept = client.post("/fhir/Patient", content=json.dumps(patient()), headers=FHIR).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            entry(patient(name=[{"family": "First"}])),
            entry(referral("Patient/p1", status="bogus")),
            entry({}, "GET", "Patient/does-not-exist"),
            entry({}, "DELETE", f"Patient/{kept['id']}"),
            entry(referral("Patient/p1")),
        ],
    }
    response = post_bundle(client, bundle)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "batch-response"
    entries = body["entry"]
    assert len(entries) == 5
    assert entries[0]["response"]["status"].startswith("201")
    bad = entries[1]["response"]
    assert bad["status"].startswith("400")
    assert bad["outcome"]["resourceType"] == "OperationOutcome"
    assert bad["outcome"]["issue"][0]["code"] == "code-invalid"
    assert bad["outcome"]["issue"][0]["expression"] == ["Bundle.entry[1].resource.status"]
    assert entries[2]["response"]["status"].startswith("404")
    assert entries[2]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[2]"]
    assert entries[3]["response"]["status"].startswith("204")
    assert entries[4]["response"]["status"].startswith("201")
    assert client.get(f"/fhir/Patient/{location_id(entries[0])}").status_code == 200
    assert client.get(f"/fhir/ServiceRequest/{location_id(entries[4])}").status_code == 200
    assert client.get(f"/fhir/Patient/{kept['id']}").status_code == 410
    assert total(client, "ServiceRequest") == 1


def test_batch_a_failure_after_a_write_keeps_the_other_entries(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", content=json.dumps(patient()), headers=FHIR).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            entry(dict(existing, active=True), "PUT", f"Patient/{existing['id']}", ifMatch='W/"1"'),
            entry(dict(existing, active=False), "PUT", f"Patient/{existing['id']}", ifMatch='W/"1"'),
            entry(patient(gender="other")),
        ],
    }
    response = post_bundle(client, bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"].startswith("200")
    assert entries[1]["response"]["status"].startswith("412")
    assert entries[1]["response"]["outcome"]["issue"][0]["severity"] == "error"
    assert entries[1]["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[1].request.ifMatch"]
    assert entries[2]["response"]["status"].startswith("201")
    current = client.get(f"/fhir/Patient/{existing['id']}").json()
    assert current["active"] is True
    assert current["meta"]["versionId"] == "2"
    assert total(client, "Patient") == 2


def test_bundle_type_must_be_transaction_or_batch(client: TestClient) -> None:
    for kind in ("collection", "searchset", "document", None):
        bundle = {"resourceType": "Bundle", "entry": [entry(patient())]}
        if kind:
            bundle["type"] = kind
        response = post_bundle(client, bundle)
        assert response.status_code == 400, response.text
        issue = response.json()["issue"][0]
        assert issue["severity"] == "error"
        assert issue["expression"] == ["Bundle.type"]
    assert total(client, "Patient") == 0


def test_post_to_the_base_needs_a_bundle(client: TestClient) -> None:
    for body in (patient(), [patient()], {"type": "transaction"}):
        response = client.post("/fhir", content=json.dumps(body), headers=FHIR)
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert total(client, "Patient") == 0
