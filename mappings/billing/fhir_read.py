"""Small, liberal readers of FHIR JSON shared by the claim builder and the claim reader."""

from __future__ import annotations

from typing import Any

from mappings.billing.codes import MODIFIER_DISCIPLINE
from mappings.billing.errors import ClaimDataError
from mappings.billing.model import Discipline
from mappings.plan_of_care.codes import DISCIPLINES, SNOMED

__all__ = ["careplan_discipline", "coding_in", "ref_of", "reference_text"]

_BY_SNOMED: dict[str, Discipline] = {"91251008": "PT", "84478008": "OT", "5154007": "SLP"}
_NAMES: dict[str, Discipline] = {"PT": "PT", "OT": "OT", "SLP": "SLP", "ST": "SLP", "SPEECH": "SLP"}
assert set(_BY_SNOMED) == {code for code, _, _ in DISCIPLINES.values()}


def coding_in(concept: Any, system: str) -> dict[str, Any] | None:
    """The first coding of ``concept`` (a CodeableConcept dict) in ``system``."""
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == system:
            return coding
    return None


def reference_text(reference: Any) -> str | None:
    """``Type/id`` of a Reference dict (the tail of an absolute URL), or None."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    text: str = reference["reference"]
    if text.startswith("#") or text.startswith("urn:"):
        return text
    parts = text.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else text


def ref_of(resource: dict[str, Any], what: str) -> str:
    """``Type/id`` of a resource; ClaimDataError when it has no id (it cannot be referred to)."""
    kind, rid = resource.get("resourceType"), resource.get("id")
    if not kind or not rid:
        raise ClaimDataError(f"{what}.id", "the resource has no resourceType or id to refer to")
    return f"{kind}/{rid}"


def careplan_discipline(careplan: dict[str, Any]) -> Discipline | None:
    """The discipline of a plan of care: its category (SNOMED CT as the hub writes it, or a code or
    text PT/OT/SLP), else None."""
    for category in careplan.get("category") or []:
        coding = coding_in(category, SNOMED)
        if coding is not None and coding.get("code") in _BY_SNOMED:
            return _BY_SNOMED[coding["code"]]
        for any_coding in category.get("coding") or []:
            code = str(any_coding.get("code", "")).upper()
            if code in _NAMES:
                return _NAMES[code]
            if code in MODIFIER_DISCIPLINE:
                return MODIFIER_DISCIPLINE[code]
        text = str(category.get("text", "")).upper()
        if text in _NAMES:
            return _NAMES[text]
    return None
