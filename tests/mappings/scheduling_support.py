"""Appointment and context builders, the SIU header and checks shared by the HL7 v2 scheduling tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir.resources.R4B.appointment import Appointment
from hypothesis import HealthCheck, settings

from mappings.fhir import SUPPORTED_TYPES, model_class
from mappings.fhir.validation import validate_resource
from mappings.hl7v2 import (
    OutboundHeader,
    appointment_to_siu,
    parse,
)
from mappings.hl7v2.scheduling import V3_PARTICIPATION_TYPE
from mappings.hl7v2.structures import check_structure

HEADER = OutboundHeader(
    sending_application="HUB",
    sending_facility="REHAB",
    receiving_application="EMR",
    receiving_facility="ORTHO",
)
NOW = datetime(2024, 5, 1, 8, 0, 0)
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
NPI = "http://hl7.org/fhir/sid/us-npi"
MRN = "urn:oid:2.16.840.1.113883.3.72"


def appointment(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": "appt-1",
        "identifier": [{"system": "https://rehab.example/sid/appointment", "value": "A-1001"}],
        "status": "booked",
        "serviceType": [{"coding": [{"system": SNOMED, "code": "91251008", "display": "Physical therapy"}]}],
        "reasonCode": [{"coding": [{"system": ICD10, "code": "M54.50", "display": "Low back pain"}]}],
        "appointmentType": {
            "coding": [{"system": V2_0276, "code": "FOLLOWUP", "display": "A follow up visit"}]
        },
        "description": "Follow-up visit",
        "start": "2024-05-02T09:30:00-04:00",
        "end": "2024-05-02T10:15:00-04:00",
        "minutesDuration": 45,
        "basedOn": [{"reference": "ServiceRequest/sr-1"}],
        "participant": [
            {"actor": {"reference": "Patient/pat-1"}, "status": "accepted"},
            {
                "type": [{"coding": [{"system": V3_PARTICIPATION_TYPE, "code": "PPRF"}]}],
                "actor": {"reference": "PractitionerRole/role-1"},
                "status": "accepted",
            },
            {"actor": {"reference": "Location/gym-1"}, "status": "accepted"},
        ],
    }
    base.update(overrides)
    return base


def context_bundle(focus: dict[str, Any]) -> dict[str, Any]:
    """A collection Bundle: the Appointment first, then what it references (two levels deep)."""
    resources = [
        focus,
        {
            "resourceType": "Patient",
            "id": "pat-1",
            "identifier": [{"system": MRN, "value": "MRN-77"}],
            "name": [{"family": "Okafor", "given": ["Ada", "N"]}],
            "birthDate": "1961-07-14",
            "gender": "female",
        },
        {
            "resourceType": "PractitionerRole",
            "id": "role-1",
            "practitioner": {"reference": "Practitioner/prac-1"},
        },
        {
            "resourceType": "Practitioner",
            "id": "prac-1",
            "identifier": [{"system": NPI, "value": "1234567893"}],
            "name": [{"family": "Lee", "given": ["Kim"], "prefix": ["Dr."]}],
        },
        {"resourceType": "Location", "id": "gym-1", "name": "Gym | East"},
        {
            "resourceType": "ServiceRequest",
            "id": "sr-1",
            "identifier": [{"system": "https://ortho.example/referrals", "value": "REF-7781"}],
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": SNOMED, "code": "84478008"}]}],
            "subject": {"reference": "Patient/pat-1"},
        },
    ]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"https://hub.example/fhir/{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        ],
    }


def siu(payload: dict[str, Any], previous: dict[str, Any] | None = None) -> tuple[str, Any]:
    event, text = appointment_to_siu(payload, header=HEADER, control_id="CTL-1", now=NOW, previous=previous)
    assert "\n" not in text
    message = parse(text)
    check_structure("SIU_S12", message.names)
    return event, message


def validate(resource: dict[str, Any]) -> None:
    Appointment.model_validate(resource)
    model_class("Appointment").model_validate(resource)
    if "Appointment" in SUPPORTED_TYPES:
        assert [i for i in validate_resource(resource) if i.severity in ("error", "fatal")] == []
