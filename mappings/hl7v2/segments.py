"""Segment builders and payload reading shared by the outbound HL7 v2 mappings.

:mod:`~mappings.hl7v2.outbound` (REF, RRI, OSU), :mod:`~mappings.hl7v2.documents` (MDM) and
:mod:`~mappings.hl7v2.scheduling` (SIU) build their MSH and PID segments here, and read the FHIR
resources of their payload through :class:`Context`. Pure: ``now`` and the control id are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mappings.hl7v2 import tables
from mappings.hl7v2.datatypes import cx, v2_date, v2_dtm, xad, xpn, xtn
from mappings.hl7v2.syntax import DEFAULT_SEPARATORS, Reps, Separators, Writer
from mappings.referral.intake import NPI_SYSTEM

__all__ = [
    "FHIR_ID_NAMESPACE",
    "Context",
    "OutboundHeader",
    "UntranslatableResource",
    "msh",
    "npi_of",
    "person_name",
    "pid",
    "ref_id",
]

#: assigning authority of FHIR logical ids sent in CX/EI fields (PID-3, RF1-11, ORC-3)
FHIR_ID_NAMESPACE = "THFHIR"


class UntranslatableResource(ValueError):
    """The FHIR payload cannot become the requested HL7 v2 message (names fields, never values)."""


@dataclass(frozen=True, slots=True)
class OutboundHeader:
    """MSH fields the sender chooses (the rest comes from the message and ``now``)."""

    sending_application: str = "THERAPY_HUB"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"
    accept_ack_type: str = ""
    application_ack_type: str = ""
    separators: Separators = DEFAULT_SEPARATORS


def msh(
    writer: Writer, header: OutboundHeader, message_type: list[str], control_id: str, now: datetime
) -> None:
    writer.segment(
        "MSH",
        header.sending_application,
        header.sending_facility,
        header.receiving_application,
        header.receiving_facility,
        v2_dtm(now),
        "",
        message_type,
        control_id,
        header.processing_id,
        tables.VERSION,
        "",
        "",
        header.accept_ack_type,
        header.application_ack_type,
        "",
        "UNICODE UTF-8",
    )


# ------------------------------------------------------------------------------------ resources


class Context:
    """The resources of a payload, by ``Type/id``; ``focus`` is the resource the payload is about (the
    payload itself, or the first entry of a Bundle)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.by_ref: dict[str, dict[str, Any]] = {}
        self.focus: dict[str, Any] | None = payload
        if payload.get("resourceType") == "Bundle":
            first = next(iter(payload.get("entry") or []), None)
            self.focus = first.get("resource") if isinstance(first, dict) else None
            if not isinstance(self.focus, dict):
                self.focus = None
            for entry in payload.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict) and resource.get("resourceType") and resource.get("id"):
                    self.by_ref[f"{resource['resourceType']}/{resource['id']}"] = resource
                    if isinstance(entry.get("fullUrl"), str):
                        self.by_ref[entry["fullUrl"]] = resource
        elif payload.get("resourceType") and payload.get("id"):
            self.by_ref[f"{payload['resourceType']}/{payload['id']}"] = payload

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        seen: dict[int, dict[str, Any]] = {}
        for resource in self.by_ref.values():
            if resource.get("resourceType") == resource_type:
                seen[id(resource)] = resource
        return list(seen.values())

    def get(self, reference: Any) -> dict[str, Any] | None:
        if isinstance(reference, dict):
            reference = reference.get("reference")
        if not isinstance(reference, str):
            return None
        if "://" in reference or reference.startswith(("urn:", "#")):
            # an absolute reference is this resource only if it is an entry's fullUrl: another
            # server's Patient/5 is not the Patient/5 of the Bundle
            return self.by_ref.get(reference)
        parts = reference.split("/")
        return self.by_ref.get("/".join(parts[:2])) if len(parts) >= 2 else None


def ref_id(reference: Any) -> str:
    text = reference.get("reference") if isinstance(reference, dict) else None
    return text.split("/")[-1] if isinstance(text, str) else ""


def npi_of(*resources: dict[str, Any] | None) -> str:
    for resource in resources:
        for identifier in (resource or {}).get("identifier") or []:
            if identifier.get("system") == NPI_SYSTEM and identifier.get("value"):
                return str(identifier["value"])
    return ""


def person_name(resource: dict[str, Any] | None) -> tuple[str, list[str], str]:
    names = (resource or {}).get("name") or []
    if isinstance(names, str):  # Organization.name
        return names, [], ""
    first = names[0] if names else {}
    return first.get("family", ""), list(first.get("given") or []), " ".join(first.get("prefix") or [])


def pid(writer: Writer, patient: dict[str, Any] | None, patient_ref: Any) -> None:
    if patient is None:
        writer.segment("PID", "1", "", [ref_id(patient_ref), "", "", [FHIR_ID_NAMESPACE], "PI"])
        return
    identifiers = [
        cx(i.get("value", ""), i.get("system")) for i in patient.get("identifier") or [] if i.get("value")
    ]
    names = [
        xpn(n.get("family", ""), list(n.get("given") or []), " ".join(n.get("prefix") or []))
        for n in patient.get("name") or []
    ]
    home = [t for t in patient.get("telecom") or [] if t.get("use") != "work" or t.get("system") == "email"]
    work = [t for t in patient.get("telecom") or [] if t.get("use") == "work" and t.get("system") != "email"]
    writer.segment(
        "PID",
        "1",
        "",
        Reps(identifiers),
        "",
        Reps(names),
        "",
        v2_date(patient.get("birthDate")),
        tables.SEX_OUT.get(patient.get("gender") or "unknown", "U"),
        "",
        "",
        Reps([xad(a) for a in patient.get("address") or []]),
        "",
        Reps([_xtn_in(t) for t in home]),
        Reps([_xtn_in(t) for t in work]),
    )


def _xtn_in(point: dict[str, Any]) -> list[Any]:
    """XTN of a patient ContactPoint (PID-14 is the business number: its ``work`` use is implied)."""
    out = xtn(point)
    if point.get("use") == "work" and point.get("system") != "email":
        out[1] = ""
    return out
