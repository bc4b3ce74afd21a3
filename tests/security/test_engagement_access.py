"""Who sees a patient's HEP engagement summary: the clinic and its administrators, not a referring
physician through this view (their compartment is on /fhir), and no patient of another clinic."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hub.settings import Settings
from tests.security.conftest import add_client, bearer, get_token, role_of


def test_the_engagement_summary_is_for_the_clinic_only(api: TestClient, auth_settings: Settings) -> None:
    admin = bearer(get_token(api, add_client(auth_settings, "clinic-a", "admin")))
    patient = {"resourceType": "Patient", "id": "pat-e", "name": [{"family": "Okafor"}]}
    assert api.put("/fhir/Patient/pat-e", json=patient, headers=admin).status_code in (200, 201)
    clinic = bearer(get_token(api, add_client(auth_settings, "clinic-a", "clinic")))
    answer = api.get("/patients/pat-e/engagement", headers=clinic)
    assert answer.status_code == 200, answer.text
    assert answer.json()["patient"] == "Patient/pat-e" and answer.json()["last_activity"] is None
    assert api.get("/patients/pat-e/engagement").status_code == 401
    referrer = bearer(get_token(api, add_client(auth_settings, "clinic-a", "referrer",
                                                fhir_user=role_of("1234567893"))))
    assert api.get("/patients/pat-e/engagement", headers=referrer).status_code == 403
    other = bearer(get_token(api, add_client(auth_settings, "clinic-b", "clinic")))
    assert api.get("/patients/pat-e/engagement", headers=other).status_code == 404
    assert api.get("/patients/nobody/engagement", headers=clinic).status_code == 404
