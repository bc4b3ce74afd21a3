"""CarePlans as the hub stores them (visits, a billable service, home exercises) and their deliveries."""

from __future__ import annotations

import copy
import json
from typing import Any

from connectors.base import Delivery
from mappings.hep.program_codes import (
    HEP_EXERCISE_SYSTEM,
    HOLD_EXTENSION,
    LOAD_EXTENSION,
    MEDIA_EXTENSION,
    REPETITIONS_EXTENSION,
    SETS_EXTENSION,
)

SNOMED = "http://snomed.info/sct"
EXERCISE_CATEGORY = {"coding": [{"system": SNOMED, "code": "229065009", "display": "Exercise therapy"}]}

PATIENT: dict[str, Any] = {
    "resourceType": "Patient", "id": "pat-7", "name": [{"use": "official", "family": "Rivera", "given": ["Ana", "M"]}],
    "telecom": [{"system": "phone", "value": "+15551230000", "use": "home"},
                {"system": "phone", "value": "+15559870000", "use": "mobile"},
                {"system": "email", "value": "ana@example.org"}],
    "birthDate": "1961-04-02",
}


def bridge(**dose: Any) -> dict[str, Any]:
    extensions = [{"url": SETS_EXTENSION, "valueInteger": dose.get("sets", 3)},
                  {"url": REPETITIONS_EXTENSION, "valueInteger": dose.get("reps", 10)},
                  {"url": HOLD_EXTENSION, "valueDuration": {"value": 5, "unit": "s", "code": "s"}},
                  {"url": MEDIA_EXTENSION, "valueAttachment": {"contentType": "video/mp4",
                                                               "url": "https://media.example/bridge.mp4"}}]
    return {"detail": {
        "extension": extensions, "kind": "ServiceRequest", "status": "scheduled",
        "code": {"coding": [{"system": HEP_EXERCISE_SYSTEM, "code": "BR-01", "display": "Bridge"}],
                 "text": "Bridging"},
        "description": "Lie on your back, knees bent; lift the hips.",
        "scheduledTiming": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d",
                                       "dayOfWeek": ["mon", "tue", "wed", "thu", "fri"]}}}}


def squat() -> dict[str, Any]:
    return {"detail": {
        "extension": [{"url": SETS_EXTENSION, "valueInteger": 2},
                      {"url": LOAD_EXTENSION, "valueQuantity": {"value": 5, "unit": "lb", "code": "[lb_av]"}}],
        "kind": "ServiceRequest", "status": "in-progress", "code": {"coding": [
            {"system": HEP_EXERCISE_SYSTEM, "code": "SQ-02", "display": "Mini squat"}]},
        "category": [EXERCISE_CATEGORY], "quantity": {"value": 12, "unit": "repetitions"},
        "scheduledTiming": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "wk"}}}}


SR_EXERCISE: dict[str, Any] = {
    "resourceType": "ServiceRequest", "id": "sr-hamstring", "status": "active", "intent": "plan",
    "category": [EXERCISE_CATEGORY], "subject": {"reference": "Patient/pat-7"},
    "code": {"coding": [{"system": HEP_EXERCISE_SYSTEM, "code": "HS-03", "display": "Hamstring stretch"}]},
    "occurrenceTiming": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
    "patientInstruction": "3 x 2, hold 30 seconds each side",
    "extension": [{"url": MEDIA_EXTENSION, "valueUrl": "https://media.example/hamstring.png"}],
}
SR_SERVICE: dict[str, Any] = {
    "resourceType": "ServiceRequest", "id": "sr-97110", "status": "active", "intent": "plan",
    "subject": {"reference": "Patient/pat-7"},
    "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "97110",
                         "display": "Therapeutic exercise"}]},
}


def care_plan(*activities: dict[str, Any], status: str = "active") -> dict[str, Any]:
    visits = {"detail": {"kind": "Appointment", "status": "scheduled", "code": {"text": "Physical therapy"},
                         "scheduledTiming": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "wk"}}}}
    chosen = list(activities) if activities else [
        bridge(), squat(), {"reference": {"reference": "ServiceRequest/sr-hamstring"}}]
    return {
        "resourceType": "CarePlan", "id": "cp-1", "status": status, "intent": "plan",
        "title": "Physical therapy plan of care", "subject": {"reference": "Patient/pat-7"},
        "period": {"start": "2026-03-02", "end": "2026-04-13"},
        "note": [{"text": "Precaution: no lifting over 10 lb"}],
        "activity": [visits, {"reference": {"reference": "ServiceRequest/sr-97110"}}, *chosen],
    }


def bundle(plan: dict[str, Any], *others: dict[str, Any]) -> bytes:
    resources = [plan, *(others or (PATIENT, SR_SERVICE, SR_EXERCISE))]
    entries = [{"fullUrl": f"http://hub.test/fhir/{r['resourceType']}/{r['id']}", "resource": copy.deepcopy(r)}
               for r in resources]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()


def delivery(payload: bytes, *, key: str = "job-1", previous: bytes | None = None) -> Delivery:
    return Delivery(payload=payload, content_type="application/fhir+json", idempotency_key=key,
                    correlation_id="corr-1", resource_type="CarePlan", resource_id="cp-1",
                    event="CarePlan.update", previous=previous)
