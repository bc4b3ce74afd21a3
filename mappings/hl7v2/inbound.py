"""Inbound HL7 v2.5.1 -> FHIR R4 transaction Bundles (pure: ``now`` and the clinic are passed in).

* ``REF^I12`` (referral) and ``OMG^O19`` (360X referral order, one ServiceRequest per ORC/OBR group)
  -> Patient, Practitioner + PractitionerRole (the referring provider, NPI), Condition(s) (ICD-10),
  Coverage, DocumentReference(s) (OBX ED attachments) and the ServiceRequest, built by
  :func:`mappings.referral.intake.build_referral_bundle`: the same resources and the same uuid5 ids as
  a referral posted to ``/referrals``, so a re-sent message (or the same referral by another route)
  updates instead of duplicating. The hub opens the referral Task when the ServiceRequest is created.
* ``ADT^A04`` / ``A08`` / ``A31`` -> one Patient, PUT to the id derived from its first identifier.

Field map (REF^I12; OMG^O19 in brackets):

=====================================  ========================================================
RF1-6 originating referral id (EI)     ServiceRequest.identifier [ORC-2 placer order number]
RF1-3 referral type                    ServiceRequest.category PT/OT/SLP via ``tables.DISCIPLINE_IN``
                                       [OBR-4 universal service id]
RF1-2 priority                         ServiceRequest.priority [TQ1-9]
RF1-7 effective date, else MSH-7       ServiceRequest.authoredOn [ORC-9, else MSH-7]
PRD (role RP, else the first)          Practitioner/PractitionerRole: PRD-2 name, PRD-7 NPI (PLN type
                                       NPI), PRD-5 fax / Direct e-mail, PRD-4.4 organisation
                                       [ORC-12 ordering provider XCN, ORC-14 call-back, ORC-21; else
                                       OBR-16; else a v2.7+ PRT with PRT-4 OP or RP: PRT-5 XCN,
                                       PRT-15 telecom, PRT-8 organisation]
PID-3/5/7/8/11/13/14                   Patient identifier/name/birthDate/gender/address/telecom
DG1-3 (ICD-10-CM)                      Condition(s), ServiceRequest.reasonReference [DG1, OBR-31]
IN1-3/4/36 (IN1-49)                    Coverage payor id/name, subscriberId
OBX (value type ED)                    DocumentReference (OBX-3.2 title, ED type/subtype -> MIME)
NTE (not under OBR/OBX)                ServiceRequest.note [NTE under MSH or in the order group, also
                                       after its DG1, not under OBX]

Segments out of place, repeated or unknown to the v2.5.1 structure are kept and read where they
stand (see :mod:`~mappings.hl7v2.structures`); :attr:`Translation.warnings` lists them.
=====================================  ========================================================
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from mappings.fhir.ids import deterministic_id
from mappings.hl7v2 import tables
from mappings.hl7v2.ack import Header, check_supported, read_header
from mappings.hl7v2.datatypes import (
    fhir_date,
    read_cx,
    read_dtm,
    read_ei,
    read_xad,
    read_xpn,
    read_xtn,
)
from mappings.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    UNSUPPORTED_MESSAGE_TYPE,
    ErrorLocation,
    Hl7Error,
    at,
)
from mappings.hl7v2.structures import DEFAULT_STRUCTURE, check_structure
from mappings.hl7v2.syntax import V2Message, V2Segment, parse
from mappings.referral.intake import (
    ICD10_SYSTEM,
    AttachmentIn,
    CoverageIn,
    IdentifierIn,
    PatientIn,
    ReasonIn,
    ReferralIn,
    ReferrerIn,
    build_referral_bundle,
)

__all__ = ["Translation", "patient_resource", "referrals_of", "structure_warnings", "to_fhir", "translate"]

MAX_ATTACHMENTS = 20
_ICD10 = re.compile(r"[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?")


@dataclass(frozen=True, slots=True)
class Translation:
    """What a message became: its header, the transaction Bundle and the main resource written."""

    header: Header
    bundle: dict[str, Any] = field(repr=False)
    kind: str  # "referral" | "patient"
    primary: list[str]  # e.g. ["ServiceRequest/<id>"]
    #: what was kept although out of place (severity W, for the ACK's ERR segments)
    warnings: list[Hl7Error] = field(default_factory=list)


def translate(
    raw: bytes | str | V2Message, *, clinic_ref: str, now: datetime, line_endings: str = "normalise"
) -> Translation:
    """Parse, check (header, version, structure, required fields, tables) and translate one message.

    ``now`` (naive UTC) dates the referral when the message carries no date; ``clinic_ref`` is the
    clinic Organization that receives referrals. Raises :class:`Hl7Error`.
    """
    message = raw if isinstance(raw, V2Message) else parse(raw, line_endings=line_endings)
    header = read_header(message)
    check_supported(header)
    return to_fhir(message, header, clinic_ref=clinic_ref, now=now)


def structure_warnings(message: V2Message, header: Header) -> list[Hl7Error]:
    """The liberal structure check of a message the hub takes (see :mod:`~mappings.hl7v2.structures`):
    its warnings (severity W); raises Hl7Error 100 only when a required segment is absent."""
    structure = DEFAULT_STRUCTURE.get(header.message_type)
    if structure is None:
        raise Hl7Error(UNSUPPORTED_MESSAGE_TYPE, "unsupported message type", at("MSH", 1, 9, 1, 1), ack="AR")
    return check_structure(structure, message.names)


def to_fhir(message: V2Message, header: Header, *, clinic_ref: str, now: datetime) -> Translation:
    warnings = structure_warnings(message, header)
    if header.message_code in ("REF", "OMG"):
        referrals = referrals_of(message, header, now=now)
        bundle = _merge([_referral_bundle(r, clinic_ref=clinic_ref) for r in referrals])
        primary = [f"ServiceRequest/{r.service_request_id}" for r in referrals]
        return Translation(header, bundle, "referral", primary, warnings)
    if header.message_code != "ADT":  # RRI/OSU are status updates: read_status_update, not resources
        raise Hl7Error(
            UNSUPPORTED_MESSAGE_TYPE,
            f"{header.message_type} is a status update (read it with read_status_update)",
            at("MSH", 1, 9, 1, 1),
            ack="AR",
        )
    pid = message.first("PID")
    assert pid is not None  # the structure requires it
    patient = patient_resource(pid, _default_namespace(header))
    entry = {
        "fullUrl": f"urn:uuid:{patient['id']}",
        "resource": patient,
        "request": {"method": "PUT", "url": f"Patient/{patient['id']}"},
    }
    return Translation(
        header,
        {"resourceType": "Bundle", "type": "transaction", "entry": [entry]},
        "patient",
        [f"Patient/{patient['id']}"],
        warnings,
    )


# ------------------------------------------------------------------------------------- referrals


@dataclass(slots=True)
class _Referral:
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


def _default_namespace(header: Header) -> str:
    """Whose identifiers those are when a CX/EI names no assigning authority: the sending facility."""
    return header.sending_facility or header.sending_application


def referrals_of(message: V2Message, header: Header, *, now: datetime) -> list[_Referral]:
    """The referrals a REF^I12 (one) or OMG^O19 (one per ORC group) carries."""
    namespace = _default_namespace(header)
    pid = message.first("PID")
    if pid is None:
        raise Hl7Error(SEGMENT_SEQUENCE_ERROR, "required segment PID is missing", at("PID"))
    patient = patient_resource(pid, namespace)
    patient_in = _patient_in(pid, patient)
    coverage = _coverage(message.first("IN1"))
    if header.message_code == "REF":
        return [_ref_referral(message, header, namespace, patient, patient_in, coverage, now)]
    return [
        _omg_referral(message, group, header, namespace, patient, patient_in, coverage, now)
        for group in _order_groups(message)
    ]


def _ref_referral(
    message: V2Message,
    header: Header,
    namespace: str,
    patient: dict[str, Any],
    patient_in: PatientIn,
    coverage: CoverageIn | None,
    now: datetime,
) -> _Referral:
    rf1 = message.first("RF1")
    if rf1 is None:
        raise Hl7Error(SEGMENT_SEQUENCE_ERROR, "required segment RF1 is missing", at("RF1"))
    system, value = read_ei(rf1, 6, namespace)
    if not value:
        raise Hl7Error(
            REQUIRED_FIELD_MISSING, "RF1-6 (originating referral identifier) is required", rf1.loc(6)
        )
    if not system:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "RF1-6 needs an assigning authority", rf1.loc(6, 1, 2))
    discipline = _discipline(rf1, 3)
    priority = _priority(rf1, 2)
    when = read_dtm(rf1, 7) or header.timestamp or now
    prds = message.all("PRD")
    prd = next((p for p in prds if p.get(1).upper() == "RP"), prds[0] if prds else None)
    if prd is None:
        raise Hl7Error(SEGMENT_SEQUENCE_ERROR, "required segment PRD is missing", at("PRD"))
    referrer = _referrer_from_prd(prd)
    reasons = _diagnoses(message.all("DG1"))
    if not reasons:
        raise Hl7Error(SEGMENT_SEQUENCE_ERROR, "a DG1 segment with the diagnosis is required", at("DG1"))
    notes = _notes(message.segments, skip_after={"OBR", "OBX"})
    attachments = _attachments([s for s in message.segments if s.name == "OBX"])
    model = _model(
        identifier=(system, value),
        discipline=discipline,
        patient=patient_in,
        referrer=referrer,
        reason=reasons[0],
        coverage=coverage,
        priority=priority,
        attachments=attachments,
    )
    return _Referral(model, when, patient, reasons[1:], notes)


def _order_groups(message: V2Message) -> list[list[V2Segment]]:
    groups: list[list[V2Segment]] = []
    for segment in message.segments:
        if segment.name == "ORC":
            groups.append([segment])
        elif groups:
            groups[-1].append(segment)
    return groups


def _omg_referral(
    message: V2Message,
    group: list[V2Segment],
    header: Header,
    namespace: str,
    patient: dict[str, Any],
    patient_in: PatientIn,
    coverage: CoverageIn | None,
    now: datetime,
) -> _Referral:
    orc = group[0]
    obr = next((s for s in group if s.name == "OBR"), None)
    assert obr is not None  # the structure requires it
    control = orc.get(1).upper()
    if control not in ("NW", "XO", "CA", "DC", "SC"):
        raise Hl7Error(
            TABLE_VALUE_NOT_FOUND, "ORC-1 order control code not supported (NW, XO, SC, CA, DC)", orc.loc(1)
        )
    system, value = read_ei(orc, 2, namespace)
    if not value:
        system, value = read_ei(obr, 2, namespace)
    if not value:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "ORC-2 (placer order number) is required", orc.loc(2))
    if not system:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "ORC-2 needs an assigning authority", orc.loc(2, 1, 2))
    discipline = _discipline(obr, 4)
    tq1 = next((s for s in group if s.name == "TQ1"), None)
    priority = _priority(tq1, 9) if tq1 is not None else "routine"
    when = read_dtm(orc, 9) or header.timestamp or now
    referrer = _referrer_from_xcn(orc, 12) if orc.get(12) else None
    if referrer is None and obr.get(16):
        referrer = _referrer_from_xcn(obr, 16)
    if referrer is None:  # v2.7+ senders name the ordering provider in a PRT (ORC-12 is deprecated there)
        prt = next((s for s in group if s.name == "PRT" and s.get(4, 1, 1).upper() in _PRT_ORDERING), None)
        referrer = _referrer_from_xcn(prt, 5) if prt is not None and prt.get(5) else None
    if referrer is None:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "ORC-12 (ordering provider) is required", orc.loc(12))
    reasons = _diagnoses([s for s in group if s.name == "DG1"])
    for rep in obr.repetitions(31):
        reasons += _diagnosis_codes(obr, 31, rep)
    if not reasons:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "a diagnosis (DG1 or OBR-31) is required", obr.loc(31))
    notes = _notes(
        [s for s in message.segments if s.index < orc.index],
        skip_after={"PID", "PD1", "NK1", "PV1", "PV2", "IN1", "IN2", "IN3", "GT1", "AL1", "OBX"},
    )
    notes += _notes(group, skip_after={"OBX"})
    attachments = _attachments([s for s in group if s.name == "OBX"])
    model = _model(
        identifier=(system, value),
        discipline=discipline,
        patient=patient_in,
        referrer=referrer,
        reason=reasons[0],
        coverage=coverage,
        priority=priority,
        attachments=attachments,
    )
    status = "revoked" if control in ("CA", "DC") else "active"
    return _Referral(model, when, patient, reasons[1:], notes, status)


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
        raise _model_error(exc, "RF1") from None


def _model_error(exc: ValidationError, segment: str) -> Hl7Error:
    """A ValidationError of the intake model as a 102, located (no input values quoted)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    path = tuple(str(p) for p in first["loc"])
    where = _MODEL_LOCATIONS.get(path[:2]) or _MODEL_LOCATIONS.get(path[:1]) or at(segment)
    return Hl7Error(
        DATA_TYPE_ERROR, f"value does not fit the referral ({'.'.join(path)}: {first['type']})", where
    )


_MODEL_LOCATIONS: dict[tuple[str, ...], ErrorLocation] = {
    ("identifier",): at("RF1", 1, 6),
    ("patient", "identifier"): at("PID", 1, 3),
    ("patient", "family"): at("PID", 1, 5, 1, 1),
    ("patient", "given"): at("PID", 1, 5, 1, 2),
    ("patient", "birth_date"): at("PID", 1, 7),
    ("patient", "phone"): at("PID", 1, 13),
    ("referrer", "npi"): at("PRD", 1, 7),
    ("referrer", "family"): at("PRD", 1, 2, 1, 1),
    ("referrer", "given"): at("PRD", 1, 2, 1, 2),
    ("reason", "icd10"): at("DG1", 1, 3, 1, 1),
    ("reason", "display"): at("DG1", 1, 3, 1, 2),
    ("coverage",): at("IN1", 1),
    ("attachments",): at("OBX", 1, 5),
}


# ------------------------------------------------------------------------------------ segments


def _discipline(seg: V2Segment, n: int) -> str:
    code, text = seg.get(n, 1, 1), seg.get(n, 1, 2)
    if not code and not text:
        raise Hl7Error(REQUIRED_FIELD_MISSING, f"{seg.name}-{n} (therapy discipline) is required", seg.loc(n))
    for key in (code, text, seg.get(n, 1, 4), seg.get(n, 1, 5)):
        found = tables.DISCIPLINE_IN.get(key.upper()) if key else None
        if found:
            return found
    raise Hl7Error(
        TABLE_VALUE_NOT_FOUND,
        f"{seg.name}-{n} is not a known therapy discipline (PT, OT, SLP)",
        seg.loc(n, 1, 1),
    )


def _priority(seg: V2Segment, n: int) -> str:
    code = seg.get(n, 1, 1).upper()
    if not code:
        return "routine"
    priority = tables.PRIORITY_IN.get(code)
    if priority is None:
        raise Hl7Error(TABLE_VALUE_NOT_FOUND, f"{seg.name}-{n} is not a known priority", seg.loc(n, 1, 1))
    return priority


def _npi(seg: V2Segment, n: int, rep: int, comp: int) -> str:
    npi = seg.get(n, rep, comp)
    if not (len(npi) == 10 and npi.isascii() and npi.isdigit()):
        raise Hl7Error(DATA_TYPE_ERROR, "the NPI must be 10 digits", seg.loc(n, rep, comp))
    return npi


def _referrer_from_prd(prd: V2Segment) -> ReferrerIn:
    npi = ""
    for rep in prd.repetitions(7):
        if prd.get(7, rep, 2).upper() in ("NPI", ""):
            npi = _npi(prd, 7, rep, 1)
            break
    if not npi:
        raise Hl7Error(
            REQUIRED_FIELD_MISSING, "PRD-7 needs the referring provider's NPI (type NPI)", prd.loc(7)
        )
    family, given, _ = read_xpn(prd, 2)
    if not family:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "PRD-2 (provider name) is required", prd.loc(2, 1, 1))
    direct = fax = None
    for rep in prd.repetitions(5):
        point = read_xtn(prd, 5, rep)
        if point and point["system"] == "email" and direct is None:
            direct = point["value"]
        elif point and point["system"] == "fax" and fax is None:
            fax = point["value"]
    organization = prd.get(4, 1, 4, 1) or None
    try:
        return ReferrerIn(
            npi=npi, family=family, given=given, organization=organization, direct_address=direct, fax=fax
        )
    except ValidationError as exc:
        raise _model_error(exc, "PRD") from None


#: PRT-4 participations (HL7 table 0912) that name who asks for the therapy
_PRT_ORDERING = ("OP", "RP")
#: segment -> (its call-back telecom field, its organisation field) beside an XCN provider
_XCN_CONTACT = {"ORC": (14, 21), "PRT": (15, 8)}


def _referrer_from_xcn(seg: V2Segment, n: int) -> ReferrerIn:
    """The ordering provider of ORC-12 / OBR-16 (XCN: id ^ family ^ given ^ middle ^ ^ prefix ...)."""
    authority = seg.get(n, 1, 9, 1).upper()
    id_type = seg.get(n, 1, 13).upper()
    if authority not in ("NPI", "") or id_type not in ("NPI", ""):
        raise Hl7Error(REQUIRED_FIELD_MISSING, f"{seg.name}-{n} needs the provider's NPI", seg.loc(n, 1, 1))
    npi = _npi(seg, n, 1, 1)
    family, given, _ = read_xpn(seg, n, offset=1)
    if not family:
        raise Hl7Error(
            REQUIRED_FIELD_MISSING, f"{seg.name}-{n}.2 (family name) is required", seg.loc(n, 1, 2)
        )
    direct = fax = None
    telecom, org_field = _XCN_CONTACT.get(seg.name, (0, 0))
    for rep in seg.repetitions(telecom) if telecom else ():
        point = read_xtn(seg, telecom, rep)
        if point and point["system"] == "email" and direct is None:
            direct = point["value"]
        elif point and point["system"] == "fax" and fax is None:
            fax = point["value"]
    organization = (seg.get(org_field, 1, 1) or None) if org_field else None
    try:
        return ReferrerIn(
            npi=npi, family=family, given=given, organization=organization, direct_address=direct, fax=fax
        )
    except ValidationError as exc:
        raise _model_error(exc, seg.name) from None


def _icd10(seg: V2Segment, n: int, rep: int) -> tuple[str, str] | None:
    code = seg.get(n, rep, 1).upper()
    if not code:
        return None
    if seg.get(n, rep, 3).upper() not in tables.ICD10_SYSTEMS:
        raise Hl7Error(
            TABLE_VALUE_NOT_FOUND, "the diagnosis coding system must be ICD-10-CM (I10C)", seg.loc(n, rep, 3)
        )
    if "." not in code and len(code) > 3:
        code = f"{code[:3]}.{code[3:]}"
    if not _ICD10.fullmatch(code):
        raise Hl7Error(DATA_TYPE_ERROR, "not an ICD-10-CM code", seg.loc(n, rep, 1))
    return code, seg.get(n, rep, 2) or code


def _diagnosis_codes(seg: V2Segment, n: int, rep: int) -> list[tuple[str, str]]:
    found = _icd10(seg, n, rep)
    return [found] if found else []


def _diagnoses(dg1s: list[V2Segment]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for dg1 in dg1s:
        found = _icd10(dg1, 3, 1)
        if found is None:
            raise Hl7Error(REQUIRED_FIELD_MISSING, "DG1-3 (diagnosis code) is required", dg1.loc(3))
        code, display = found
        if display == code and dg1.get(4):
            display = dg1.get(4)
        if all(code != c for c, _ in out):
            out.append((code, display))
    return out


def _coverage(in1: V2Segment | None) -> CoverageIn | None:
    if in1 is None:
        return None
    payer_id = in1.get(3, 1, 1)
    payer = in1.get(4, 1, 1)
    known = tables.INSURER_IN.get(payer_id.upper()) if payer_id else None
    if known:
        payer_id, payer = known[0], payer or known[1]
    member = in1.get(36) or in1.get(49, 1, 1)
    if not member:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "IN1-36 (policy number) is required", in1.loc(36))
    if not payer:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "IN1-4 (insurance company name) is required", in1.loc(4))
    try:
        return CoverageIn(payer=payer, member_id=member, payer_id=payer_id or None)
    except ValidationError as exc:
        raise _model_error(exc, "IN1") from None


def _notes(segments: list[V2Segment], *, skip_after: set[str]) -> list[str]:
    notes: list[str] = []
    anchor = ""
    for segment in segments:
        if segment.name != "NTE":
            anchor = segment.name
            continue
        if anchor in skip_after:
            continue
        lines = [segment.get(3, rep) for rep in range(1, segment.count(3) + 1)]
        text = "\n".join(lines)
        if text:
            notes.append(text)
    return notes


def _attachments(obxs: list[V2Segment]) -> list[AttachmentIn]:
    out: list[AttachmentIn] = []
    for obx in obxs:
        if obx.get(2).upper() != "ED":
            continue  # other observations are not part of a referral (yet)
        if len(out) == MAX_ATTACHMENTS:
            raise Hl7Error(DATA_TYPE_ERROR, f"at most {MAX_ATTACHMENTS} attachments per referral", obx.loc())
        kind, subtype, encoding = obx.get(5, 1, 2), obx.get(5, 1, 3), obx.get(5, 1, 4).upper()
        data = "".join(obx.get(5, 1, 5).split())
        if not data:
            raise Hl7Error(REQUIRED_FIELD_MISSING, "OBX-5.5 (attachment data) is required", obx.loc(5, 1, 5))
        if "/" in subtype:
            mime = subtype.lower()
        else:
            mime = tables.MIME_IN.get((kind.upper(), subtype.upper()), "")
        if not mime:
            raise Hl7Error(
                TABLE_VALUE_NOT_FOUND, "OBX-5.2/5.3 is not a known attachment type", obx.loc(5, 1, 3)
            )
        try:
            if encoding in ("BASE64", "B64"):
                base64.b64decode(data, validate=True)
            elif encoding == "HEX":
                data = base64.b64encode(bytes.fromhex(data)).decode()
            elif encoding in ("A", "NONE", ""):
                data = base64.b64encode(obx.get(5, 1, 5).encode("utf-8")).decode()
            else:
                raise Hl7Error(
                    TABLE_VALUE_NOT_FOUND, "OBX-5.4 encoding must be Base64, Hex or A", obx.loc(5, 1, 4)
                )
        except (binascii.Error, ValueError) as exc:
            if isinstance(exc, Hl7Error):
                raise
            raise Hl7Error(
                DATA_TYPE_ERROR, "OBX-5.5 is not valid in its encoding", obx.loc(5, 1, 5)
            ) from None
        title = (obx.get(3, 1, 2) or obx.get(3, 1, 1) or "Attachment")[:200]
        out.append(AttachmentIn(title=title, content_type=mime, data=data))
    return out


# -------------------------------------------------------------------------------------- patient


def patient_resource(pid: V2Segment, namespace: str) -> dict[str, Any]:
    """The Patient of a PID; its id is uuid5 over its first identifier (as in the intake mapping)."""
    identifiers: list[dict[str, str]] = []
    for rep in pid.repetitions(3):
        system, value, type_code = read_cx(pid, 3, rep, namespace)
        if not value or type_code.upper() in tables.DROPPED_IDENTIFIER_TYPES:
            continue
        if not system:
            raise Hl7Error(REQUIRED_FIELD_MISSING, "PID-3 needs an assigning authority", pid.loc(3, rep, 4))
        identifiers.append({"system": system, "value": value})
    if not identifiers:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "PID-3 (patient identifier) is required", pid.loc(3))
    names = []
    for rep in pid.repetitions(5):
        family, given, prefix = read_xpn(pid, 5, rep)
        name: dict[str, Any] = {}
        if family:
            name["family"] = family
        if given:
            name["given"] = given
        if prefix:
            name["prefix"] = prefix
        if name:
            names.append(name)
    if not names or "family" not in names[0]:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "PID-5 (patient family name) is required", pid.loc(5, 1, 1))
    sex = pid.get(8).upper()
    gender = tables.SEX_IN.get(sex) if sex else "unknown"
    if gender is None:
        raise Hl7Error(
            TABLE_VALUE_NOT_FOUND, "PID-8 is not a known administrative sex (table 0001)", pid.loc(8)
        )
    first = identifiers[0]
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": deterministic_id("Patient", first["system"], first["value"]),
        "identifier": identifiers,
        "name": names,
        "gender": gender,
    }
    birth = fhir_date(pid, 7)
    if birth:
        patient["birthDate"] = birth
    telecom = []
    for n in (13, 14):
        for rep in pid.repetitions(n):
            point = read_xtn(pid, n, rep)
            if point is not None:
                if n == 14 and point["system"] != "email" and "use" not in point:
                    point["use"] = "work"
                telecom.append(point)
    if telecom:
        patient["telecom"] = telecom
    addresses = [a for a in (read_xad(pid, 11, rep) for rep in pid.repetitions(11)) if a]
    if addresses:
        patient["address"] = addresses
    return patient


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
        raise _model_error(exc, "PID") from None


# --------------------------------------------------------------------------------------- bundles


def _referral_bundle(referral: _Referral, *, clinic_ref: str) -> dict[str, Any]:
    bundle = build_referral_bundle(referral.model, clinic_ref=clinic_ref, now=referral.when)
    entries = bundle["entry"]
    by_type = {e["resource"]["resourceType"]: e["resource"] for e in entries}
    # the PID says more than the intake model holds (every identifier, name, phone, the address)
    patient = dict(referral.patient)
    by_type["Patient"].clear()
    by_type["Patient"].update(patient)
    service_request = by_type["ServiceRequest"]
    ref_key = f"{referral.model.identifier.system}|{referral.model.identifier.value}"
    subject = {"reference": f"Patient/{patient['id']}"}
    template = by_type["Condition"]
    for code, display in referral.extra_reasons:
        condition = {
            **template,
            "id": deterministic_id("Condition", ref_key, code),
            "code": {"coding": [{"system": ICD10_SYSTEM, "code": code, "display": display}]},
            "subject": subject,
        }
        entries.insert(
            -1,
            {
                "fullUrl": f"urn:uuid:{condition['id']}",
                "resource": condition,
                "request": {"method": "PUT", "url": f"Condition/{condition['id']}"},
            },
        )
        service_request["reasonReference"].append({"reference": f"Condition/{condition['id']}"})
    if referral.notes:
        service_request["note"] = [{"text": text} for text in referral.notes]
    if referral.status != "active":
        service_request["status"] = referral.status
    return bundle


def _merge(bundles: list[dict[str, Any]]) -> dict[str, Any]:
    if len(bundles) == 1:
        return bundles[0]
    seen: set[str] = set()
    entries = []
    for bundle in bundles:
        for entry in bundle["entry"]:
            if entry["fullUrl"] not in seen:
                seen.add(entry["fullUrl"])
                entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
