"""FHIR R4 Coverage, Patient and Organizations for eligibility inquiries, for tests to reuse."""

from __future__ import annotations

from typing import Any

NPI = "http://hl7.org/fhir/sid/us-npi"
RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"


def clinic_org() -> dict[str, Any]:
    return {"resourceType": "Organization", "id": "clinic", "name": "Riverside Rehab Clinic",
            "identifier": [{"system": NPI, "value": "1234567893"},
                           {"system": "urn:oid:2.16.840.1.113883.4.4", "value": "123456789"}]}


def payer_org() -> dict[str, Any]:
    return {"resourceType": "Organization", "id": "acme", "name": "Acme Health Plan",
            "identifier": [{"system": "https://clearinghouse.example/payer-id", "value": "ACME1"}]}


def patient(family: str = "Smith", given: tuple[str, ...] = ("Laura", "J"), *, birth: str = "1980-06-01",
            gender: str = "female", pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "birthDate": birth, "gender": gender,
            "name": [{"use": "official", "family": family, "given": list(given)}],
            "address": [{"use": "home", "line": ["7 Birch Lane"], "city": "Springfield", "state": "IL",
                         "postalCode": "62704"}]}


def coverage(relationship: str = "self", *, group: str | None = "GRP-7788") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Coverage", "id": "cov1", "status": "active", "subscriberId": "ACM123456701",
        "beneficiary": {"reference": "Patient/p1"}, "payor": [{"reference": "Organization/acme"}],
        "relationship": {"coding": [{"system": RELATIONSHIP, "code": relationship}]},
    }
    if group:
        resource["class"] = [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                                   "code": "group"}]}, "value": group}]
    return resource
