"""What a Direct delivery takes from the delivery Bundle: the recipient's Direct address, the PDF (and
a C-CDA when present) and the patient's identifier. Pure.

The Bundle is the hub's ``collection`` of the certification Task first, then what it references
(context ``references``) and the plan's certification DocumentReference (context ``documents``).
The recipient is the Task's owner PractitionerRole: any of its ``telecom`` with ``system`` email
(a ``use`` of work first) is its Direct address.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PlanParts", "PlanProblem", "direct_address", "plan_parts", "recipient_of"]

CDA_TYPES = ("application/hl7-cda+xml", "text/xml", "application/xml")


class PlanProblem(ValueError):
    """The Bundle lacks something a Direct message needs; the message names it, never PHI."""


@dataclass(frozen=True)
class PlanParts:
    recipient: str
    pdf: bytes = field(repr=False)
    cda: bytes | None = field(repr=False)
    document_id: str
    patient_id: str  # CX id^^^&oid&ISO (or the bare value)


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry") or [] if isinstance(e, dict)
            and isinstance(e.get("resource"), dict)]


def _find(resources: list[dict[str, Any]], reference: str | None) -> dict[str, Any] | None:
    if not reference or "/" not in reference:
        return None
    kind, _, ident = reference.rstrip("/").rpartition("/")
    kind = kind.rpartition("/")[2]
    return next((r for r in resources if r.get("resourceType") == kind and r.get("id") == ident), None)


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


def _attachment_data(attachment: dict[str, Any]) -> bytes | None:
    data = attachment.get("data")
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise PlanProblem("a DocumentReference attachment is not valid base64") from None


def _owner(resources: list[dict[str, Any]]) -> dict[str, Any]:
    task = next((r for r in resources if r.get("resourceType") == "Task"), None)
    if task is None:
        raise PlanProblem("the Bundle holds no Task")
    owner = task.get("owner")
    role = _find(resources, owner.get("reference") if isinstance(owner, dict) else None)
    if role is None or role.get("resourceType") != "PractitionerRole":
        raise PlanProblem("the Task's owner PractitionerRole is not in the Bundle")
    return role


def recipient_of(payload: bytes) -> str | None:
    """The Direct address of the Task's owner PractitionerRole in the Bundle ``payload``, or None."""
    try:
        bundle = json.loads(payload)
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            return None
        return direct_address(_owner(_resources(bundle)))
    except (ValueError, AttributeError):  # PlanProblem is a ValueError
        return None


def plan_parts(payload: bytes) -> PlanParts:
    try:
        bundle = json.loads(payload)
    except ValueError:
        raise PlanProblem("the payload is not JSON") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise PlanProblem("the payload is not a Bundle (the connector needs context references, documents)")
    resources = _resources(bundle)
    role = _owner(resources)
    task = next(r for r in resources if r.get("resourceType") == "Task")
    recipient = direct_address(role)
    if recipient is None:
        raise PlanProblem("the Task's owner PractitionerRole has no email telecom (Direct address)")
    pdf: bytes | None = None
    cda: bytes | None = None
    document_id = ""
    for resource in resources:
        if resource.get("resourceType") != "DocumentReference":
            continue
        for item in resource.get("content") or []:
            attachment = item.get("attachment") if isinstance(item, dict) else None
            if not isinstance(attachment, dict):
                continue
            kind = str(attachment.get("contentType") or "").split(";")[0].strip().lower()
            if kind == "application/pdf" and pdf is None:
                pdf = _attachment_data(attachment)
                document_id = str(resource.get("id") or "")
            elif kind in CDA_TYPES and cda is None:
                cda = _attachment_data(attachment)
    if pdf is None:
        raise PlanProblem("the Bundle holds no DocumentReference with an inline PDF")
    return PlanParts(recipient=recipient, pdf=pdf, cda=cda, document_id=document_id,
                     patient_id=_patient_id(_find(resources, (task.get("for") or {}).get("reference"))))
