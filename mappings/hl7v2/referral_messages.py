"""The referrals of an inbound REF^I12 (one) or OMG^O19 (one per ORC/OBR group), read into the intake
model of :mod:`mappings.referral.intake` plus what that model does not hold (every PID detail, further
diagnoses, notes, a cancelled order's status). The field map is in :mod:`mappings.hl7v2.inbound`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from mappings.fhir.ids import deterministic_id
from mappings.hl7v2 import referral_fields as fields
from mappings.hl7v2.ack import Header
from mappings.hl7v2.datatypes import fhir_date, read_dtm, read_ei
from mappings.hl7v2.errors import (
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    Hl7Error,
    at,
)
from mappings.hl7v2.patient import default_namespace, patient_resource
from mappings.hl7v2.syntax import V2Message, V2Segment
from mappings.referral.intake import (
    AttachmentIn,
    CoverageIn,
    IdentifierIn,
    PatientIn,
    ReasonIn,
    ReferralIn,
    ReferrerIn,
)

__all__ = ["InboundReferral", "referrals_of"]


@dataclass(slots=True)
class InboundReferral:
    """One referral read from a message: the intake model plus what it does not hold."""

    model: ReferralIn
    when: datetime
    patient: dict[str, Any]
    extra_reasons: list[tuple[str, str]]
    notes: list[str]
    status: str = "active"

    @property
    def service_request_id(self) -> str:
        return deterministic_id("ServiceRequest", self.model.identifier.system, self.model.identifier.value)


def referrals_of(message: V2Message, header: Header, *, now: datetime) -> list[InboundReferral]:
    """The referrals a REF^I12 (one) or OMG^O19 (one per ORC group) carries."""
    namespace = default_namespace(header)
    pid = message.first("PID")
    if pid is None:
        raise Hl7Error(SEGMENT_SEQUENCE_ERROR, "required segment PID is missing", at("PID"))
    patient = patient_resource(pid, namespace)
    common = _Common(header, namespace, patient, _patient_in(pid, patient), fields.coverage(message.first("IN1")), now)
    if header.message_code == "REF":
        return [_ref_referral(message, common)]
    return [_omg_referral(message, group, common) for group in _order_groups(message)]


@dataclass(frozen=True, slots=True)
class _Common:
    """What every referral of one message shares: its header, patient and coverage."""

    header: Header
    namespace: str
    patient: dict[str, Any]
    patient_in: PatientIn
    coverage: CoverageIn | None
    now: datetime

    def when(self, segment: V2Segment, field: int) -> datetime:
        """The referral's time: this field, else the message's, else now."""
        return read_dtm(segment, field) or self.header.timestamp or self.now

    def identifier(self, segment: V2Segment, field: int, what: str,
                   read: tuple[str | None, str] | None = None) -> tuple[str, str]:
        """The referral's identifier (an EI field, or the value ``read`` from it or its fallback):
        both the value and the assigning authority are required."""
        system, value = read if read is not None else read_ei(segment, field, self.namespace)
        name = f"{segment.name}-{field}"
        if not value:
            raise Hl7Error(REQUIRED_FIELD_MISSING, f"{name} ({what}) is required", segment.loc(field))
        if not system:
            raise Hl7Error(REQUIRED_FIELD_MISSING, f"{name} needs an assigning authority", segment.loc(field, 1, 2))
        return system, value

    def referral(
        self,
        *,
        identifier: tuple[str, str],
        discipline: str,
        referrer: ReferrerIn,
        reasons: list[tuple[str, str]],
        priority: str,
        attachments: list[AttachmentIn],
        when: datetime,
        notes: list[str],
        status: str = "active",
    ) -> InboundReferral:
        """The referral read: the intake model (first diagnosis as its reason) and the rest."""
        model = _model(
            identifier=identifier,
            discipline=discipline,
            patient=self.patient_in,
            referrer=referrer,
            reason=reasons[0],
            coverage=self.coverage,
            priority=priority,
            attachments=attachments,
        )
        return InboundReferral(model, when, self.patient, reasons[1:], notes, status)


def _ref_referral(message: V2Message, common: _Common) -> InboundReferral:
    rf1 = message.first("RF1")
    if rf1 is None:
        raise Hl7Error(SEGMENT_SEQUENCE_ERROR, "required segment RF1 is missing", at("RF1"))
    identifier = common.identifier(rf1, 6, "originating referral identifier")
    discipline = fields.discipline(rf1, 3)
    priority = fields.priority(rf1, 2)
    when = common.when(rf1, 7)
    prds = message.all("PRD")
    prd = next((p for p in prds if p.get(1).upper() == "RP"), prds[0] if prds else None)
    if prd is None:
        raise Hl7Error(SEGMENT_SEQUENCE_ERROR, "required segment PRD is missing", at("PRD"))
    referrer = fields.referrer_from_prd(prd)
    reasons = fields.diagnoses(message.all("DG1"))
    if not reasons:
        raise Hl7Error(SEGMENT_SEQUENCE_ERROR, "a DG1 segment with the diagnosis is required", at("DG1"))
    return common.referral(
        identifier=identifier,
        discipline=discipline,
        referrer=referrer,
        reasons=reasons,
        priority=priority,
        notes=fields.notes(message.segments, skip_after={"OBR", "OBX"}),
        attachments=fields.attachments([s for s in message.segments if s.name == "OBX"]),
        when=when,
    )


def _order_groups(message: V2Message) -> list[list[V2Segment]]:
    groups: list[list[V2Segment]] = []
    for segment in message.segments:
        if segment.name == "ORC":
            groups.append([segment])
        elif groups:
            groups[-1].append(segment)
    return groups


def _omg_referral(message: V2Message, group: list[V2Segment], common: _Common) -> InboundReferral:
    orc = group[0]
    obr = next((s for s in group if s.name == "OBR"), None)
    assert obr is not None  # the structure requires it
    control = orc.get(1).upper()
    if control not in ("NW", "XO", "CA", "DC", "SC"):
        raise Hl7Error(
            TABLE_VALUE_NOT_FOUND, "ORC-1 order control code not supported (NW, XO, SC, CA, DC)", orc.loc(1)
        )
    placer = read_ei(orc, 2, common.namespace)
    if not placer[1]:
        placer = read_ei(obr, 2, common.namespace)
    identifier = common.identifier(orc, 2, "placer order number", placer)
    discipline = fields.discipline(obr, 4)
    tq1 = next((s for s in group if s.name == "TQ1"), None)
    priority = fields.priority(tq1, 9) if tq1 is not None else "routine"
    when = common.when(orc, 9)
    referrer = fields.referrer_from_xcn(orc, 12) if orc.get(12) else None
    if referrer is None and obr.get(16):
        referrer = fields.referrer_from_xcn(obr, 16)
    if referrer is None:  # v2.7+ senders name the ordering provider in a PRT (ORC-12 is deprecated there)
        prt = next((s for s in group if s.name == "PRT" and s.get(4, 1, 1).upper() in fields.PRT_ORDERING), None)
        referrer = fields.referrer_from_xcn(prt, 5) if prt is not None and prt.get(5) else None
    if referrer is None:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "ORC-12 (ordering provider) is required", orc.loc(12))
    reasons = fields.diagnoses([s for s in group if s.name == "DG1"])
    for rep in obr.repetitions(31):
        reasons += fields.diagnosis_codes(obr, 31, rep)
    if not reasons:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "a diagnosis (DG1 or OBR-31) is required", obr.loc(31))
    notes = fields.notes(
        [s for s in message.segments if s.index < orc.index],
        skip_after={"PID", "PD1", "NK1", "PV1", "PV2", "IN1", "IN2", "IN3", "GT1", "AL1", "OBX"},
    )
    notes += fields.notes(group, skip_after={"OBX"})
    return common.referral(
        identifier=identifier,
        discipline=discipline,
        referrer=referrer,
        reasons=reasons,
        priority=priority,
        attachments=fields.attachments([s for s in group if s.name == "OBX"]),
        when=when,
        notes=notes,
        status="revoked" if control in ("CA", "DC") else "active",
    )


def _model(
    *,
    identifier: tuple[str, str],
    discipline: str,
    patient: PatientIn,
    referrer: ReferrerIn,
    reason: tuple[str, str],
    coverage: CoverageIn | None,
    priority: str,
    attachments: list[AttachmentIn],
) -> ReferralIn:
    try:
        return ReferralIn(
            identifier=IdentifierIn(system=identifier[0], value=identifier[1]),
            discipline=discipline,  # type: ignore[arg-type]
            patient=patient,
            referrer=referrer,
            reason=ReasonIn(icd10=reason[0], display=reason[1]),
            coverage=coverage,
            priority=priority,  # type: ignore[arg-type]
            attachments=attachments,
        )
    except ValidationError as exc:
        raise fields.model_error(exc, "RF1") from None


def _patient_in(pid: V2Segment, patient: dict[str, Any]) -> PatientIn:
    name = patient["name"][0]
    if "birthDate" not in patient:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "PID-7 (date of birth) is required for a referral", pid.loc(7))
    fhir_date(pid, 7, full=True)
    phone = next((t["value"] for t in patient.get("telecom", []) if t["system"] == "phone"), None)
    first = patient["identifier"][0]
    try:
        return PatientIn(
            identifier=IdentifierIn(system=first["system"], value=first["value"]),
            family=name["family"],
            given=name.get("given", []),
            birth_date=patient["birthDate"],
            gender=patient["gender"],
            phone=phone,
        )
    except ValidationError as exc:
        raise fields.model_error(exc, "PID") from None
