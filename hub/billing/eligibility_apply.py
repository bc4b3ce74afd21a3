"""Applying a 271: one ``CoverageEligibilityResponse`` per person answered, written through the FHIR
store and linked to its ``CoverageEligibilityRequest`` (by the 270's trace number, TRN02) and through
it to the ``Coverage`` and the patient; without a request on file, to the ``Coverage`` carrying the
member id (identifier) of the answer. An answer that matches neither is kept as unmatched."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hub.billing.imports_result import SetOutcome
from hub.errors import HubError, describe
from hub.fhir.service import FhirService
from mappings.fhir import jsonio
from mappings.x12.eligibility_fhir import TRACE_SYSTEM, coverage_eligibility_response
from mappings.x12.read271 import EligibilityResult


def entry_resource(entry: dict[str, Any]) -> dict[str, Any]:
    """The resource of a search Bundle entry (the store hands it as raw JSON text)."""
    value = entry.get("resource")
    encoded = getattr(value, "encoded_json", None)
    if isinstance(encoded, str):
        return dict(jsonio.loads(encoded))
    return dict(value) if isinstance(value, dict) else {}


def _first(fhir: FhirService, resource_type: str, token: str) -> dict[str, Any] | None:
    found = fhir.search(resource_type, [("identifier", token), ("_count", "2")], strict=True)
    matches = [e for e in found.get("entry", []) if e.get("search", {}).get("mode") == "match"]
    return entry_resource(matches[0]) if len(matches) == 1 else None


def apply_271(fhir: FhirService, results: list[EligibilityResult], *, control_number: str,
              now: datetime) -> SetOutcome:
    outcome = SetOutcome("271", control_number)
    outcome.applied = True
    for result in results:
        trace = next((number for _, number in result.trace_numbers if number), None) or result.reference or ""
        request = _first(fhir, "CoverageEligibilityRequest", f"{TRACE_SYSTEM}|{trace}") if trace else None
        coverage_ref = patient_ref = insurer_ref = request_ref = None
        if request is not None:
            request_ref = f"CoverageEligibilityRequest/{request['id']}"
            patient_ref = (request.get("patient") or {}).get("reference")
            insurer_ref = (request.get("insurer") or {}).get("reference")
            insurance = request.get("insurance") or [{}]
            coverage_ref = (insurance[0].get("coverage") or {}).get("reference")
        elif result.patient is not None and result.patient.member_id:
            coverage = _first(fhir, "Coverage", result.patient.member_id)
            if coverage is not None:
                coverage_ref = f"Coverage/{coverage['id']}"
                patient_ref = (coverage.get("beneficiary") or {}).get("reference")
                payors = coverage.get("payor") or [{}]
                insurer_ref = payors[0].get("reference")
        if patient_ref is None:
            outcome.unmatched.append(trace or result.control_number)
            continue
        try:
            resource = coverage_eligibility_response(result, patient_ref=patient_ref, insurer_ref=insurer_ref,
                                                     request_ref=request_ref, coverage_ref=coverage_ref,
                                                     created=now.replace(tzinfo=UTC))
            written = fhir.update("CoverageEligibilityResponse", resource["id"], jsonio.loads(jsonio.dumps(resource)))
        except (HubError, ValueError) as exc:
            outcome.errors.append(f"271 {control_number}: the CoverageEligibilityResponse was refused: "
                                  f"{describe(exc) if isinstance(exc, HubError) else 'invalid'} [billing.271.response]")
            continue
        outcome.resources.append(f"CoverageEligibilityResponse/{written.stored.id}")
        outcome.count("eligibility")
    return outcome
