"""The code systems, extensions, tables and wording that the plan of care's FHIR resources (built in
:mod:`.fhir`, read back in :mod:`.summary`, ended in :mod:`.ending`) and its PDF share."""

from __future__ import annotations

CPT = "http://www.ama-assn.org/go/cpt"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
#: CarePlan.note text that carries one precaution
PRECAUTION_PREFIX = "Precaution: "
GOAL_ACHIEVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/goal-achievement"
GOAL_TERM_SYSTEM = "https://therapy-hub.example/CodeSystem/goal-term"
REVISION_EXTENSION = "https://therapy-hub.example/StructureDefinition/plan-revision"
US_CORE_CAREPLAN_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

#: discipline -> (SNOMED CT code, SNOMED display, plain name); the codes the referral intake uses
DISCIPLINES: dict[str, tuple[str, str, str]] = {
    "PT": ("91251008", "Physical therapy procedure", "Physical therapy"),
    "OT": ("84478008", "Occupational therapy", "Occupational therapy"),
    "SLP": ("5154007", "Speech therapy", "Speech-language pathology"),
}
GOAL_TERMS: dict[str, tuple[str, str]] = {
    "short": ("short-term", "Short-term goal"),
    "long": ("long-term", "Long-term goal"),
}
GOAL_ACHIEVEMENT_DISPLAY: dict[str, str] = {
    "in-progress": "In Progress",
    "improving": "Improving",
    "worsening": "Worsening",
    "no-change": "No Change",
    "achieved": "Achieved",
    "sustaining": "Sustaining",
    "not-achieved": "Not Achieved",
    "no-progress": "No Progress",
    "not-attainable": "Not Attainable",
}


def frequency_text(frequency: int | None, frequency_max: int | None, weeks: int | None = None) -> str:
    """``2x/week``, ``2-3x/week``, with `` for 6 weeks`` when ``weeks`` is given."""
    text = f"{frequency}{f'-{frequency_max}' if frequency_max else ''}x/week"
    if weeks is not None:
        text += f" for {weeks} week{'s' if weeks != 1 else ''}"
    return text
