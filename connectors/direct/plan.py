"""What a Direct delivery takes from the delivery Bundle: the recipient's Direct address, the PDF (and
a C-CDA when present) and the patient's identifier. Pure.

The Bundle is the hub's ``collection`` of the certification Task first, then what it references
(context ``references``) and the plan's certification DocumentReference (context ``documents``),
read by :mod:`connectors.certification`.
The recipient is the Task's owner PractitionerRole: any of its ``telecom`` with ``system`` email
(a ``use`` of work first) is its Direct address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.certification import CertificationDelivery, DeliveryProblem, Problem, read_delivery

__all__ = ["PlanParts", "PlanProblem", "direct_address", "plan_parts", "recipient_of"]

CDA_TYPES = ("application/hl7-cda+xml", "text/xml", "application/xml")

_PROBLEMS: dict[Problem, str] = {
    "not_json": "the payload is not JSON",
    "not_bundle": "the payload is not a Bundle (the connector needs context references, documents)",
    "no_task": "the Bundle holds no Task",
    "bad_base64": "a DocumentReference attachment is not valid base64",
}


class PlanProblem(ValueError):
    """The Bundle lacks something a Direct message needs; the message names it, never PHI."""


@dataclass(frozen=True)
class PlanParts:
    recipient: str
    pdf: bytes = field(repr=False)
    cda: bytes | None = field(repr=False)
    document_id: str
    patient_id: str  # CX id^^^&oid&ISO (or the bare value)


def direct_address(role: dict[str, Any]) -> str | None:
    emails = [t for t in role.get("telecom") or [] if isinstance(t, dict) and t.get("system") == "email"
              and isinstance(t.get("value"), str) and "@" in t["value"]]
    emails.sort(key=lambda t: 0 if t.get("use") == "work" else 1)
    return str(emails[0]["value"]).strip().removeprefix("mailto:") if emails else None


def _patient_id(patient: dict[str, Any] | None) -> str:
    for identifier in (patient or {}).get("identifier") or []:
        value = identifier.get("value") if isinstance(identifier, dict) else None
        if isinstance(value, str) and value:
            system = str(identifier.get("system") or "")
            if system.startswith("urn:oid:"):
                return f"{value}^^^&{system[8:]}&ISO"
            return value
    raise PlanProblem("the patient has no identifier")


def _read(payload: bytes) -> tuple[CertificationDelivery, dict[str, Any]]:
    try:
        delivery = read_delivery(payload)
    except DeliveryProblem as exc:
        raise PlanProblem(_PROBLEMS[exc.code]) from None
    if delivery.owner_role is None:
        raise PlanProblem("the Task's owner PractitionerRole is not in the Bundle")
    return delivery, delivery.owner_role


def recipient_of(payload: bytes) -> str | None:
    """The Direct address of the Task's owner PractitionerRole in the Bundle ``payload``, or None."""
    try:
        return direct_address(_read(payload)[1])
    except (ValueError, AttributeError):  # PlanProblem is a ValueError
        return None


def plan_parts(payload: bytes) -> PlanParts:
    delivery, role = _read(payload)
    recipient = direct_address(role)
    if recipient is None:
        raise PlanProblem("the Task's owner PractitionerRole has no email telecom (Direct address)")
    try:
        pdf = delivery.first_attachment(("application/pdf",))
        cda = delivery.first_attachment(CDA_TYPES)
    except DeliveryProblem as exc:
        raise PlanProblem(_PROBLEMS[exc.code]) from None
    if pdf is None:
        raise PlanProblem("the Bundle holds no DocumentReference with an inline PDF")
    return PlanParts(recipient=recipient, pdf=pdf[1], cda=cda[1] if cda else None, document_id=pdf[0],
                     patient_id=_patient_id(delivery.patient))
