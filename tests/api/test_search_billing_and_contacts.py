"""Search on the billing types (ChargeItem, Claim, ClaimResponse, CoverageEligibility*) and Location,
and on contact points (telecom, phone, email) whatever their punctuation, on both backends."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.search_support import STRICT, create, found, put, search
from tests.validation_cases import MINIMAL

CPT = "http://www.ama-assn.org/go/cpt"
CLAIM_ID = "https://clinic.example/sid/claim"


def of(resource_type: str, rid: str, **fields) -> dict:  # type: ignore[no-untyped-def]
    return {"resourceType": resource_type, "id": rid, **MINIMAL[resource_type], **fields}


def test_charge_items_by_patient_code_context_occurrence_and_performer(client: TestClient) -> None:
    put(client, of("ChargeItem", "ci1", code={"coding": [{"system": CPT, "code": "97110"}]},
                   context={"reference": "Encounter/e1"}, occurrenceDateTime="2024-03-05T10:00:00Z",
                   performer=[{"actor": {"reference": "Practitioner/pt1"}}], enteredDate="2024-03-05T12:00:00Z",
                   identifier=[{"system": CLAIM_ID, "value": "C-1"}]))
    put(client, of("ChargeItem", "ci2", code={"coding": [{"system": CPT, "code": "97140"}]},
                   subject={"reference": "Patient/p2"}, occurrencePeriod={"start": "2024-04-01", "end": "2024-04-02"}))
    assert found(client, "ChargeItem", {"patient": "Patient/p1"}) == {"ci1"}
    assert found(client, "ChargeItem", {"subject": "Patient/p2"}) == {"ci2"}
    assert found(client, "ChargeItem", {"code": f"{CPT}|97140"}) == {"ci2"}
    assert found(client, "ChargeItem", {"context": "Encounter/e1"}) == {"ci1"}
    assert found(client, "ChargeItem", {"occurrence": "ge2024-04-01"}) == {"ci2"}
    assert found(client, "ChargeItem", {"performer-actor": "Practitioner/pt1"}) == {"ci1"}
    assert found(client, "ChargeItem", {"entered-date": "2024-03-05"}) == {"ci1"}
    assert found(client, "ChargeItem", {"identifier": f"{CLAIM_ID}|C-1"}) == {"ci1"}


def test_claims_by_status_use_encounter_provider_insurer_care_team_and_facility(client: TestClient) -> None:
    put(client, of("Claim", "cl1", insurer={"reference": "Organization/payer"},
                   facility={"reference": "Location/l1"},
                   careTeam=[{"sequence": 1, "provider": {"reference": "Practitioner/pt1"}}],
                   item=[{"sequence": 1, "productOrService": {"coding": [{"system": CPT, "code": "97110"}]},
                          "encounter": [{"reference": "Encounter/e1"}]}]))
    put(client, of("Claim", "cl2", status="draft", use="preauthorization", created="2024-05-01"))
    assert found(client, "Claim", {"patient": "Patient/p1"}) == {"cl1", "cl2"}
    assert found(client, "Claim", {"status": "draft"}) == {"cl2"}
    assert found(client, "Claim", {"use": "claim"}) == {"cl1"}
    assert found(client, "Claim", {"created": "lt2024-04-01"}) == {"cl1"}
    assert found(client, "Claim", {"encounter": "Encounter/e1"}) == {"cl1"}
    assert found(client, "Claim", {"provider": "Organization/o"}) == {"cl1", "cl2"}
    assert found(client, "Claim", {"insurer": "Organization/payer"}) == {"cl1"}
    assert found(client, "Claim", {"care-team": "Practitioner/pt1"}) == {"cl1"}
    assert found(client, "Claim", {"facility": "Location/l1"}) == {"cl1"}


def test_claim_responses_and_eligibility(client: TestClient) -> None:
    put(client, of("ClaimResponse", "cr1", request={"reference": "Claim/cl1"},
                   disposition="Claim settled as per contract", requestor={"reference": "Organization/o"}, payment={
                       "type": {"coding": [{"code": "complete"}]}, "date": "2024-03-28",
                       "amount": {"value": 80, "currency": "USD"}}))
    put(client, of("ClaimResponse", "cr2", outcome="error", use="preauthorization"))
    assert found(client, "ClaimResponse", {"request": "Claim/cl1"}) == {"cr1"}
    assert found(client, "ClaimResponse", {"outcome": "error"}) == {"cr2"}
    assert found(client, "ClaimResponse", {"use": "preauthorization"}) == {"cr2"}
    assert found(client, "ClaimResponse", {"disposition": "claim settled"}) == {"cr1"}
    assert found(client, "ClaimResponse", {"payment-date": "2024-03"}) == {"cr1"}
    assert found(client, "ClaimResponse", {"requestor": "Organization/o"}) == {"cr1"}
    assert found(client, "ClaimResponse", {"insurer": "Organization/payer", "status": "active"}) == {"cr1", "cr2"}

    put(client, of("CoverageEligibilityRequest", "er1", provider={"reference": "Organization/o"}))
    put(client, of("CoverageEligibilityResponse", "es1", request={"reference": "CoverageEligibilityRequest/er1"},
                   disposition="Policy is currently in effect", requestor={"reference": "Organization/o"}))
    assert found(client, "CoverageEligibilityRequest",
                 {"provider": "Organization/o", "created": "2024-03-01"}) == {"er1"}
    assert found(client, "CoverageEligibilityResponse", {
        "request": "CoverageEligibilityRequest/er1", "outcome": "complete", "insurer": "Organization/payer",
        "requestor": "Organization/o", "disposition": "policy", "patient": "Patient/p1"}) == {"es1"}
    # the R4 parameters are the ones the CapabilityStatement announces, so strict handling accepts them
    search(client, "ClaimResponse", {"payment-date": "2024", "disposition": "x"}, headers=STRICT)


def test_locations_and_the_appointments_that_reference_them(client: TestClient) -> None:
    put(client, of("Location", "l1", status="active", managingOrganization={"reference": "Organization/o"}))
    create(client, {**of("Appointment", "a1"), "participant": [
        {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
        {"actor": {"reference": "Location/l1"}, "status": "accepted"}]})
    assert found(client, "Location", {"name": "riverside", "organization": "Organization/o"}) == {"l1"}
    bundle = search(client, "Appointment", {"location": "Location/l1", "_include": "Appointment:location"})
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"Appointment", "Location"}


def test_every_billing_type_is_in_the_capability_statement(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    by_type = {r["type"]: {p["name"] for p in r["searchParam"]} for r in statement["rest"][0]["resource"]}
    assert {"patient", "code", "context", "occurrence", "performer-actor", "entered-date"} <= by_type["ChargeItem"]
    assert {"encounter", "care-team", "facility", "insurer", "use"} <= by_type["Claim"]
    assert {"request", "outcome", "payment-date", "disposition", "requestor"} <= by_type["ClaimResponse"]
    assert {"provider", "created", "status"} <= by_type["CoverageEligibilityRequest"]
    assert {"request", "outcome", "insurer", "disposition"} <= by_type["CoverageEligibilityResponse"]
    assert {"telecom", "phone", "email"} <= by_type["PractitionerRole"]


def test_telecom_matches_a_number_whatever_its_punctuation(client: TestClient) -> None:
    put(client, {"resourceType": "PractitionerRole", "id": "r1", "telecom": [
        {"system": "fax", "value": "+1 (555) 010-2000"}, {"system": "phone", "value": "555.010.3000"},
        {"system": "email", "value": "Dr.Lee@Direct.Example"}]})
    put(client, {"resourceType": "PractitionerRole", "id": "r2", "telecom": [{"system": "fax", "value": "5550109999"}]})
    assert found(client, "PractitionerRole", {"telecom": "fax|15550102000"}) == {"r1"}
    assert found(client, "PractitionerRole", {"telecom": "fax|555-010-2000"}) == {"r1"}
    assert found(client, "PractitionerRole", {"telecom": "fax|+1 (555) 010-2000"}) == {"r1"}  # as written
    assert found(client, "PractitionerRole", {"telecom": "phone|15550102000"}) == set()  # a fax is not a phone
    assert found(client, "PractitionerRole", {"telecom": "(555) 010-9999"}) == {"r2"}
    assert found(client, "PractitionerRole", {"phone": "+15550103000"}) == {"r1"}
    assert found(client, "PractitionerRole", {"phone": "15550102000"}) == set()  # phone: phone contacts only
    assert found(client, "PractitionerRole", {"email": "dr.lee@direct.example"}) == {"r1"}
    assert found(client, "PractitionerRole", {"telecom": "email|mailto:DR.LEE@direct.example"}) == {"r1"}
