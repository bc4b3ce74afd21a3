"""The CapabilityStatement: generated from what the server implements, so it cannot drift."""

from __future__ import annotations

from typing import Any

from hub import __version__
from hub.fhir.searchparams import R4_SP, SEARCH_PARAMS
from mappings.fhir import FHIR_VERSION, SUPPORTED_TYPES

INTERACTIONS = ["read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type"]

#: R4 search parameters defined once for many resource types: for these types the canonical is
#: ``clinical-patient`` etc., not ``{Type}-{name}`` (which does not exist and a client cannot resolve).
#: Bases as in the R4 (4.0.1) search parameter registry.
_SHARED_R4: dict[str, frozenset[str]] = {
    "clinical-patient": frozenset(
        "AllergyIntolerance CarePlan CareTeam ClinicalImpression Composition Condition Consent DetectedIssue "
        "DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference Encounter "
        "EpisodeOfCare FamilyMemberHistory Flag Goal ImagingStudy Immunization List MedicationAdministration "
        "MedicationDispense MedicationRequest MedicationStatement NutritionOrder Observation Procedure "
        "RiskAssessment ServiceRequest SupplyDelivery VisionPrescription".split()
    ),
    "clinical-identifier": frozenset(
        "AllergyIntolerance CarePlan CareTeam Composition Condition Consent DetectedIssue DeviceRequest "
        "DiagnosticReport DocumentManifest DocumentReference Encounter EpisodeOfCare FamilyMemberHistory Goal "
        "ImagingStudy Immunization List MedicationAdministration MedicationDispense MedicationRequest "
        "MedicationStatement NutritionOrder Observation Procedure RiskAssessment ServiceRequest SupplyDelivery "
        "SupplyRequest VisionPrescription".split()
    ),
    "clinical-code": frozenset(
        "AllergyIntolerance Condition DeviceRequest DiagnosticReport FamilyMemberHistory List Medication "
        "MedicationAdministration MedicationDispense MedicationRequest MedicationStatement Observation "
        "Procedure ServiceRequest".split()
    ),
    "clinical-date": frozenset(
        "AllergyIntolerance CarePlan CareTeam ClinicalImpression Composition Consent DiagnosticReport Encounter "
        "EpisodeOfCare FamilyMemberHistory Flag Immunization List Observation Procedure RiskAssessment "
        "SupplyRequest".split()
    ),
    "clinical-encounter": frozenset(
        "Composition DeviceRequest DiagnosticReport DocumentReference Flag List NutritionOrder Observation "
        "Procedure RiskAssessment ServiceRequest VisionPrescription".split()
    ),
    "clinical-type": frozenset(
        "AllergyIntolerance Composition DocumentManifest DocumentReference Encounter EpisodeOfCare".split()
    ),
    "individual-family": frozenset({"Patient", "Practitioner"}),
    "individual-given": frozenset({"Patient", "Practitioner"}),
    "individual-gender": frozenset({"Patient", "Person", "Practitioner", "RelatedPerson"}),
    "individual-telecom": frozenset({"Patient", "Person", "Practitioner", "PractitionerRole", "RelatedPerson"}),
    "individual-phone": frozenset({"Patient", "Person", "Practitioner", "PractitionerRole", "RelatedPerson"}),
    "individual-email": frozenset({"Patient", "Person", "Practitioner", "PractitionerRole", "RelatedPerson"}),
    "individual-birthdate": frozenset({"Patient", "Person", "RelatedPerson"}),
}


def r4_definition(resource_type: str, name: str) -> str:
    """The canonical URL of the R4 SearchParameter ``name`` of ``resource_type``."""
    for shared, bases in _SHARED_R4.items():
        if shared.partition("-")[2] == name and resource_type in bases:
            return f"{R4_SP}{shared}"
    return f"{R4_SP}{resource_type}-{name}"


def _search_params(resource_type: str) -> list[dict[str, Any]]:
    out = [
        {"name": "_id", "definition": f"{R4_SP}Resource-id", "type": "token"},
        {"name": "_lastUpdated", "definition": f"{R4_SP}Resource-lastUpdated", "type": "date"},
    ]
    for param in SEARCH_PARAMS.get(resource_type, []):
        entry: dict[str, Any] = {
            "name": param.name,
            "definition": param.definition or r4_definition(resource_type, param.name),
            "type": param.type,
        }
        if param.documentation:
            entry["documentation"] = param.documentation
        out.append(entry)
    return out


def capability_statement(base_url: str, published: str) -> dict[str, Any]:
    resources = []
    for resource_type in SUPPORTED_TYPES:
        params = SEARCH_PARAMS.get(resource_type, [])
        includes = [f"{resource_type}:{p.name}" for p in params if p.type == "reference"]
        entry: dict[str, Any] = {
            "type": resource_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
            "interaction": [{"code": code} for code in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchParam": _search_params(resource_type),
        }
        if includes:  # FHIR JSON: an array is never empty (absent instead)
            entry["searchInclude"] = includes
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "id": "therapy-hub",
        "url": f"{base_url}/metadata",
        "version": __version__,
        "name": "TherapyInteropHub",
        "title": "Therapy Interop Hub FHIR R4 server",
        "status": "active",
        "experimental": False,
        "date": published,
        "publisher": "Therapy Interop Hub",
        "kind": "instance",
        "software": {"name": "Therapy Interop Hub", "version": __version__},
        "implementation": {"description": "Therapy Interop Hub FHIR R4 gateway", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Searches accept Prefer: handling=strict (unknown parameters are an error) or "
                    "handling=lenient (the default: unknown parameters are ignored and reported in an "
                    "OperationOutcome entry). Paging with _count and next links; _sort=_lastUpdated or _id; "
                    "_summary=count; _include on reference parameters."
                ),
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
                "operation": [
                    {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
                ],
            }
        ],
    }
