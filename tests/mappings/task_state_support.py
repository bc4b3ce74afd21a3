"""Constants, Task builders and checks shared by the tests of mappings.referral.task_state."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from typing import Any

from mappings.fhir import model_class
from mappings.fhir.validation import validate_resource
from mappings.referral.task_state import (
    HELD_FROM_URL,
    referral_task,
)
from mappings.referral.task_statuses import (
    DEFAULT_BUSINESS_STATUS,
    FHIR_TASK_STATUSES,
    TRANSITIONS,
)

NOW = datetime(2024, 3, 1, 14, 30)  # naive = UTC, as the hub's clock gives
LATER = NOW + timedelta(hours=2)
SR = "ServiceRequest/sr-1"
PATIENT = "Patient/p-1"
REFERRER = "PractitionerRole/dr-1"
CLINIC = "Organization/clinic-1"
IDENTIFIER = {"system": "https://referrer.example/referrals", "value": "R-2024-0042"}
REASONS = {"rejected": "Outside our scope of practice", "cancelled": "Patient moved away"}

STATUSES = sorted(TRANSITIONS)
LEGAL = sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets)
ILLEGAL = sorted(
    (a, b) for a, b in itertools.product(STATUSES, sorted(FHIR_TASK_STATUSES)) if b not in TRANSITIONS[a]
)


def new_task() -> dict[str, Any]:
    return referral_task(SR, PATIENT, REFERRER, CLINIC, identifier=IDENTIFIER, now=NOW)


def task_in(status: str, *, held_from: str | None = None) -> dict[str, Any]:
    """A referral Task in ``status`` (an on-hold one remembering ``held_from`` when given)."""
    task = new_task()
    if status == "requested":
        return task
    task["status"] = status
    code = DEFAULT_BUSINESS_STATUS.get(status)
    if code is not None:
        task["businessStatus"]["coding"][0]["code"] = code.value
    if held_from is not None:
        task["extension"] = [{"url": HELD_FROM_URL, "valueCode": held_from}]
    return task


def assert_valid(resource: dict[str, Any]) -> None:
    """Valid for the hub (structure, JSON rules, required bindings) and for fhir.resources R4B."""
    assert validate_resource(resource, resource["resourceType"]) == []
    model_class(resource["resourceType"]).model_validate(resource)


def assert_xhtml(div: str) -> None:
    root = ET.fromstring(div)
    assert root.tag == "{http://www.w3.org/1999/xhtml}div"
