"""The certification page a physician signs, built from configuration and the referral: the clinic
(HUB_CLINICS, written onto the tenant's Organization: address, phone, fax, Direct address), the
treating therapist (the author PractitionerRole), MRN, payer, precautions, goal baselines and a short
plan code; and, once signed, the signed PDF as a DocumentReference and a Provenance whose signature
data really is that PDF (sigFormat application/pdf)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pypdf
import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.deps import get_clock
from hub.settings import Settings
from mappings.fhir.validation import validate_resource
from tests.referrals.test_intake_and_task import referral

FHIR = {"Content-Type": "application/fhir+json"}
CLINIC = {
    "name": "Riverside Rehab",
    "line": ["200 River St", "Suite 4"],
    "city": "Portland",
    "state": "OR",
    "postal_code": "97201",
    "phone": "503-555-0100",
    "fax": "503-555-0101",
    "direct": "intake@direct.riverside.example",
}
PLAN = {
    "author": "PractitionerRole/pt-lee",
    "period_start": "2026-03-03",
    "period_end": "2026-04-13",
    "frequency_per_week": 2,
    "duration_weeks": 6,
    "activities": [{"code": "97110", "display": "Therapeutic exercise"}],
    "precautions": ["No lumbar flexion beyond 60 degrees", "Monitor blood pressure"],
    "goals": [
        {"term": "short", "description": "Walk 300 m without pain", "due_date": "2026-03-24",
         "measure": {"system": "http://loinc.org", "code": "72514-3", "display": "Pain severity"},
         "detail_quantity": {"value": "2", "unit": "score"}, "baseline_quantity": {"value": "7", "unit": "score"}},
        {"term": "long", "description": "Return to gardening", "due_date": "2026-04-13",
         "measure": {"system": "http://snomed.info/sct", "code": "129006008", "display": "Walking"},
         "detail_string": "community distances", "baseline_string": "household distances only",
         "baseline_date": "2026-03-02"},
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, 0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clinic_client(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"clinics": {settings.default_tenant: CLINIC}})
    app = create_app(configured)
    app.dependency_overrides[get_clock] = lambda: clock
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def put(client: TestClient, resource: dict) -> None:
    url = f"/fhir/{resource['resourceType']}/{resource['id']}"
    response = client.put(url, content=json.dumps(resource), headers=FHIR)
    assert response.status_code in (200, 201), response.text


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


def planned(client: TestClient, clock: Clock) -> tuple[dict, dict, str]:
    put(client, {"resourceType": "Practitioner", "id": "lee", "name": [{"family": "Lee", "given": ["Kim"]}],
                 "qualification": [{"code": {"text": "PT, DPT"}}]})
    put(client, {"resourceType": "PractitionerRole", "id": "pt-lee", "practitioner": {"reference": "Practitioner/lee"},
                 "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1609876541"}]})
    view = client.post("/referrals", json=referral()).json()
    task_id = view["task"].split("/")[1]
    assert client.post(f"/referrals/{task_id}/status", json={"status": "accepted"}).status_code == 200
    clock.now += timedelta(days=1)
    response = client.post(f"/referrals/{task_id}/plan-of-care", json=PLAN)
    assert response.status_code == 201, response.text
    return view, response.json(), task_id


def test_the_page_shows_clinic_therapist_mrn_payer_precautions_baselines_and_a_plan_code(
    clinic_client: TestClient, clock: Clock
) -> None:
    view, plan, task_id = planned(clinic_client, clock)
    document = clinic_client.get(f"/fhir/{plan['document']}").json()
    text = pdf_text(base64.b64decode(document["content"][0]["attachment"]["data"]))
    for expected in (
        "Kim Lee, PT, DPT, NPI 1609876541",  # the treating therapist, from the author PractitionerRole
        "Riverside Rehab",
        "200 River St, Suite 4, Portland OR 97201",
        "Phone 503-555-0100",
        "Fax 503-555-0101",
        "Direct intake@direct.riverside.example",
        "fax it to 503-555-0101 or send it by Direct message to intake@direct.riverside.example",
        "MRN MRN-77",
        "Medicare Part B, member 1EG4TE5MK73",
        "No lumbar flexion beyond 60 degrees; Monitor blood pressure",
        "Baseline: 7 score (03/03/2026)",  # dated the plan's creation when not given
        "Target: Pain severity: 2 score",
        "Baseline: household distances only (03/02/2026)",
    ):
        assert expected in text, expected
    assert "Clinic default" not in text
    # the plan reference is a short code printed whole, not the referral Task's UUID
    care_plan = clinic_client.get(f"/fhir/{plan['care_plan']}").json()
    assert task_id not in text and task_id[:8] not in text
    code = "PC-" + hashlib.sha256(f"{care_plan['identifier'][0]['system']}|{task_id}".encode()).hexdigest()[:8].upper()
    assert f"Plan {code}, revision 1" in text and f"plan {code} rev 1" in text

    # the clinic's Organization carries what the settings say (the source partners read too)
    organization = clinic_client.get(f"/fhir/{care_plan['contributor'][1]['reference']}").json()
    assert organization["name"] == "Riverside Rehab"
    assert {t["system"]: t["value"] for t in organization["telecom"]} == {
        "phone": "503-555-0100", "fax": "503-555-0101", "email": "intake@direct.riverside.example"}
    # the baselines are Observations the Goals address; the precautions are CarePlan notes
    goal = clinic_client.get(f"/fhir/{care_plan['goal'][0]['reference']}").json()
    baseline = clinic_client.get(f"/fhir/{goal['addresses'][1]['reference']}").json()
    assert (baseline["status"], baseline["valueQuantity"]["value"], baseline["code"]["coding"][0]["code"]) == (
        "final", 7, "72514-3")
    assert validate_resource(baseline) == [] and validate_resource(care_plan) == []
    assert [n["text"] for n in care_plan["note"]] == [
        "Precaution: No lumbar flexion beyond 60 degrees", "Precaution: Monitor blood pressure"]


def test_signing_records_the_signed_pdf_and_a_provenance_whose_data_is_that_pdf(
    clinic_client: TestClient, clock: Clock
) -> None:
    view, plan, _ = planned(clinic_client, clock)
    certification = next(o for o in plan["obligations"] if o["kind"] == "certification")
    task = certification["task"].split("/")[1]
    # a typed name declared as a PNG is refused: the record must say what it really is
    typed_name = base64.b64encode(b"Dr. Okafor").decode()
    wrong = clinic_client.post(f"/certifications/{task}/sign",
                               json={"signature": typed_name, "signature_type": "image/png"})
    assert wrong.status_code == 400 and "not image/png data" in wrong.text
    clock.now += timedelta(days=2, hours=3)
    signed = clinic_client.post(f"/certifications/{task}/sign",
                                json={"signature": base64.b64encode(b"Dr. Okafor").decode()})
    assert signed.status_code == 200, signed.text
    mark = clinic_client.get(f"/fhir/Task/{task}").json()["output"][0]["valueAttachment"]
    assert mark["contentType"] == "text/plain"

    [entry] = clinic_client.get("/fhir/Provenance", params={"target": plan["care_plan"]}).json()["entry"]
    provenance = entry["resource"]
    assert validate_resource(provenance) == []
    [signature] = provenance["signature"]
    assert (signature["sigFormat"], signature["targetFormat"]) == ("application/pdf", "application/pdf")
    assert signature["who"]["reference"] == view["requester"]
    pdf = base64.b64decode(signature["data"], validate=True)
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf)  # it really is a PDF: the signed version of the page
    assert "SIGNED" in text and "electronically signed by Dr. Chidi Okafor on 2026-03-05T12:00" in text
    assert "/s/ Dr. Chidi Okafor" in text and "NPI: 1234567893" in text and "Kim Lee" in text

    signed_ref = next(t["reference"] for t in provenance["target"] if t["reference"].startswith("DocumentReference/"))
    signed_doc = clinic_client.get(f"/fhir/{signed_ref}").json()
    assert validate_resource(signed_doc) == []
    attachment = signed_doc["content"][0]["attachment"]
    assert attachment["data"] == signature["data"]
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(pdf).digest()).decode()
    assert signed_doc["relatesTo"] == [{"code": "signs", "target": {"reference": plan["document"]}}]
    assert signed_doc["authenticator"]["reference"] == view["requester"]
    unsigned = clinic_client.get(f"/fhir/{plan['document']}").json()
    assert unsigned["content"][0]["attachment"]["data"] != attachment["data"]
    assert "SIGNED" not in pdf_text(base64.b64decode(unsigned["content"][0]["attachment"]["data"]))


def test_without_fax_or_address_the_page_does_not_ask_for_a_fax(client: TestClient) -> None:
    view = client.post("/referrals", json=referral()).json()
    task_id = view["task"].split("/")[1]
    client.post(f"/referrals/{task_id}/status", json={"status": "accepted"})
    body = {**PLAN, "author": "PractitionerRole/unknown-therapist", "therapist_name": "Sam Ortiz, PT"}
    plan = client.post(f"/referrals/{task_id}/plan-of-care", json=body).json()
    document = client.get(f"/fhir/{plan['document']}").json()
    text = pdf_text(base64.b64decode(document["content"][0]["attachment"]["data"]))
    assert "fax" not in text.lower().replace("fax by", "")
    assert "then return it" in text and "Sam Ortiz, PT" in text
