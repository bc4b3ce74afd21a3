"""A certification Task owned by the clinic (a referral that names no referrer): completing it through
/fhir is refused with the path to fix (Task.owner), not a server error; nothing is signed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.documents.plans import certification_page


def test_completing_a_clinic_owned_certification_is_refused(client: TestClient) -> None:
    plan, task_id = certification_page(client)
    task = client.get(f"/fhir/Task/{task_id}").json()
    clinic = task["requester"]  # the clinic asks for the certification
    assert clinic["reference"].startswith("Organization/")
    owned = client.put(f"/fhir/Task/{task_id}", json={**task, "owner": clinic})  # as for a referral without referrer
    assert owned.status_code == 200, owned.text
    completed = client.put(f"/fhir/Task/{task_id}", json={**owned.json(), "status": "completed"})
    assert completed.status_code == 409, completed.text
    outcome = completed.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Task.owner"]
    assert "no referring physician" in outcome["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/Task/{task_id}").json()["status"] == "requested"
    assert client.get("/fhir/Provenance", params={"target": plan["care_plan"]}).json().get("entry", []) == []
