"""FHIR R4 helpers shared by every mapping: the one place where the FHIR release is pinned.

``fhir.resources`` ships R5 at its top level and R4B (4.3.0) under ``fhir.resources.R4B``; there is
no R4 package. R4B models are wire-compatible with R4 for the resource types the hub serves, so we
validate with R4B and speak R4 (4.0.1) on the wire.
"""

from __future__ import annotations

from functools import cache
from typing import Any

FHIR_VERSION = "4.0.1"
FHIR_MODELS_PACKAGE = "fhir.resources.R4B"

#: Resource types the hub stores and serves.
SUPPORTED_TYPES: tuple[str, ...] = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "ServiceRequest",
    "Task",
    "CarePlan",
    "Goal",
    "Condition",
    "Coverage",
    "Encounter",
    "Appointment",
    "Observation",
    "DocumentReference",
    "Communication",
    "Provenance",
    "Composition",
    "AuditEvent",
    "Location",
    # billing (issue #14): what a visit charges, the claim, the payer's answer, and eligibility checks
    "ChargeItem",
    "Claim",
    "ClaimResponse",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
)


@cache
def model_class(resource_type: str) -> Any:
    """The pydantic model class of ``resource_type`` (imported lazily: each module costs ~150 ms)."""
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)
