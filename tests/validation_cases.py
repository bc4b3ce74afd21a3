"""Minimal valid resources of every supported type, and the helpers of the validation unit tests."""

from __future__ import annotations

from typing import Any

from mappings.fhir.validation import Issue, validate_resource

SECRET = "Wilhelmina Gruffydd-Oyelaran"  # must never come back in a diagnostic or an expression

MINIMAL: dict[str, dict[str, Any]] = {
    "Patient": {},
    "Practitioner": {},
    "PractitionerRole": {},
    "Organization": {"name": "Riverside Rehab"},
    "ServiceRequest": {"status": "active", "intent": "order", "subject": {"reference": "Patient/p1"}},
    "Task": {"status": "requested", "intent": "order"},
    "CarePlan": {"status": "active", "intent": "plan", "subject": {"reference": "Patient/p1"}},
    "Goal": {
        "lifecycleStatus": "active",
        "description": {"text": "Walk"},
        "subject": {"reference": "Patient/p1"},
    },
    "Condition": {"subject": {"reference": "Patient/p1"}},
    "Coverage": {
        "status": "active",
        "beneficiary": {"reference": "Patient/p1"},
        "payor": [{"reference": "Organization/o"}],
    },
    "Encounter": {
        "status": "planned",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    },
    "Appointment": {
        "status": "booked",
        "start": "2024-03-04T09:00:00Z",
        "end": "2024-03-04T09:45:00Z",
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}],
    },
    "Observation": {"status": "final", "code": {"text": "Pain"}},
    "DocumentReference": {
        "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf"}}],
    },
    "Communication": {"status": "completed"},
    "Provenance": {
        "target": [{"reference": "Patient/p1"}],
        "recorded": "2024-03-01T10:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/pr1"}}],
    },
    "AuditEvent": {
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "recorded": "2024-03-01T10:00:00Z",
        "agent": [{"requestor": True, "altId": "client-1"}],
        "source": {"observer": {"display": "therapy-hub"}},
    },
    "Composition": {
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
        "date": "2024-03-01T10:00:00Z",
        "author": [{"reference": "Practitioner/pr1"}],
        "title": "Referral feedback",
    },
    "Location": {"name": "Riverside Rehab, Main St"},
    "ChargeItem": {
        "status": "billable",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "97110"}]},
        "subject": {"reference": "Patient/p1"},
    },
    "Claim": {
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim",
        "patient": {"reference": "Patient/p1"},
        "created": "2024-03-05",
        "provider": {"reference": "Organization/o"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/c1"}}],
    },
    "ClaimResponse": {
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim",
        "patient": {"reference": "Patient/p1"},
        "created": "2024-03-20",
        "insurer": {"reference": "Organization/payer"},
        "outcome": "complete",
    },
    "CoverageEligibilityRequest": {
        "status": "active",
        "purpose": ["benefits"],
        "patient": {"reference": "Patient/p1"},
        "created": "2024-03-01",
        "insurer": {"reference": "Organization/payer"},
    },
    "CoverageEligibilityResponse": {
        "status": "active",
        "purpose": ["benefits"],
        "patient": {"reference": "Patient/p1"},
        "created": "2024-03-01",
        "request": {"reference": "CoverageEligibilityRequest/e1"},
        "outcome": "complete",
        "insurer": {"reference": "Organization/payer"},
    },
}


def resource(resource_type: str, **fields: Any) -> dict[str, Any]:
    out = {"resourceType": resource_type, **MINIMAL[resource_type], **fields}
    return {k: v for k, v in out.items() if v is not ...}


def found(issues: list[Issue]) -> set[tuple[str, str | None]]:
    return {(i.code, i.expression) for i in issues}


def errors(value: Any, expected: str | None = None) -> list[Issue]:
    issues = validate_resource(value, expected)
    assert all(i.severity in ("error", "fatal") for i in issues)
    return issues
