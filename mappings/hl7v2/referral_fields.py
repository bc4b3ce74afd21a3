"""Field readers of the inbound referral segments (RF1, ORC/OBR, PRD/PRT, DG1, IN1, NTE, OBX).

Each reads one part of a referral into the intake model of :mod:`mappings.referral.intake` and raises
:class:`~mappings.hl7v2.errors.Hl7Error` with the HL7 error code and location when it does not fit;
:func:`model_error` turns a ValidationError of that model into one (no input values quoted).
"""

from __future__ import annotations

import base64
import binascii
import re

from pydantic import ValidationError

from mappings.hl7v2 import tables
from mappings.hl7v2.datatypes import read_xpn, read_xtn
from mappings.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    ErrorLocation,
    Hl7Error,
    at,
)
from mappings.hl7v2.syntax import V2Segment
from mappings.referral.intake import AttachmentIn, CoverageIn, ReferrerIn

__all__ = [
    "MAX_ATTACHMENTS",
    "PRT_ORDERING",
    "attachments",
    "coverage",
    "diagnoses",
    "diagnosis_codes",
    "discipline",
    "model_error",
    "notes",
    "priority",
    "referrer_from_prd",
    "referrer_from_xcn",
]

MAX_ATTACHMENTS = 20
_ICD10 = re.compile(r"[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?")


def model_error(exc: ValidationError, segment: str) -> Hl7Error:
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


def discipline(seg: V2Segment, n: int) -> str:
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


def priority(seg: V2Segment, n: int) -> str:
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


def referrer_from_prd(prd: V2Segment) -> ReferrerIn:
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
        raise model_error(exc, "PRD") from None


#: PRT-4 participations (HL7 table 0912) that name who asks for the therapy
PRT_ORDERING = ("OP", "RP")
#: segment -> (its call-back telecom field, its organisation field) beside an XCN provider
_XCN_CONTACT = {"ORC": (14, 21), "PRT": (15, 8)}


def referrer_from_xcn(seg: V2Segment, n: int) -> ReferrerIn:
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
        raise model_error(exc, seg.name) from None


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


def diagnosis_codes(seg: V2Segment, n: int, rep: int) -> list[tuple[str, str]]:
    found = _icd10(seg, n, rep)
    return [found] if found else []


def diagnoses(dg1s: list[V2Segment]) -> list[tuple[str, str]]:
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


def coverage(in1: V2Segment | None) -> CoverageIn | None:
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
        raise model_error(exc, "IN1") from None


def notes(segments: list[V2Segment], *, skip_after: set[str]) -> list[str]:
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


def attachments(obxs: list[V2Segment]) -> list[AttachmentIn]:
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
