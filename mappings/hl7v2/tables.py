"""Code tables of the HL7 v2 mappings: edit them here (plain dicts; keys compared upper-cased).

Every table maps what a partner sends to what the hub stores, and back. When a partner uses a
local code, add it to the inbound side only (several codes may point at one FHIR value); the
outbound side (``*_OUT``) says which code the hub sends. A code that is not in a table is refused
with HL7 error 103 (table value not found) naming the field, never silently dropped.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

#: MSH-12 versions accepted (others: 203 unsupported version id, AR)
SUPPORTED_VERSIONS: Final = frozenset({"2.5.1", "2.5"})
#: the version the hub writes
VERSION: Final = "2.5.1"
#: MSH-11 processing ids accepted (P production, T training, D debugging)
PROCESSING_IDS: Final = frozenset({"P", "T", "D"})

#: message code -> trigger events the hub accepts
SUPPORTED_MESSAGES: Final = MappingProxyType(
    {
        "REF": frozenset({"I12"}),
        "OMG": frozenset({"O19"}),
        "ADT": frozenset({"A04", "A08", "A31"}),
    }
)

# ------------------------------------------------------------------------------ administrative sex

#: PID-8 (HL7 table 0001) -> Patient.gender
SEX_IN: Final = MappingProxyType(
    {
        "M": "male",
        "F": "female",
        "O": "other",
        "A": "other",  # ambiguous
        "N": "unknown",  # not applicable
        "U": "unknown",
    }
)
#: Patient.gender -> PID-8
SEX_OUT: Final = MappingProxyType({"male": "M", "female": "F", "other": "O", "unknown": "U"})

# ------------------------------------------------------------------------------------ disciplines

#: RF1-3 referral type / OBR-4 universal service id (code or text) -> discipline (PT, OT, SLP).
#: SNOMED CT codes of ``mappings.referral.intake.DISCIPLINES`` are recognised too.
DISCIPLINE_IN: Final = MappingProxyType(
    {
        "PT": "PT",
        "PHY": "PT",
        "PHYS": "PT",
        "PHYSICAL THERAPY": "PT",
        "PHYSIOTHERAPY": "PT",
        "97161": "PT",  # CPT: PT evaluation, low complexity
        "97162": "PT",
        "97163": "PT",
        "91251008": "PT",
        "OT": "OT",
        "OCC": "OT",
        "OCCUPATIONAL THERAPY": "OT",
        "97165": "OT",  # CPT: OT evaluation
        "97166": "OT",
        "97167": "OT",
        "84478008": "OT",
        "SLP": "SLP",
        "ST": "SLP",
        "SPEECH": "SLP",
        "SPEECH THERAPY": "SLP",
        "SPEECH-LANGUAGE PATHOLOGY": "SLP",
        "92521": "SLP",  # CPT: speech evaluation
        "92522": "SLP",
        "92523": "SLP",
        "5154007": "SLP",
    }
)
#: discipline -> (code, text, coding system) written in RF1-3 and OBR-4
DISCIPLINE_OUT: Final = MappingProxyType(
    {
        "PT": ("91251008", "Physical therapy procedure", "SCT"),
        "OT": ("84478008", "Occupational therapy", "SCT"),
        "SLP": ("5154007", "Speech therapy", "SCT"),
    }
)

# ---------------------------------------------------------------------------------------- priority

#: RF1-2 (table 0280) / TQ1-9 (table 0485) -> ServiceRequest.priority
PRIORITY_IN: Final = MappingProxyType(
    {
        "S": "stat",
        "A": "asap",
        "R": "routine",
        "U": "urgent",  # local: table 0280 has no "urgent"
        "STAT": "stat",
        "ASAP": "asap",
        "ROUTINE": "routine",
        "URGENT": "urgent",
    }
)
PRIORITY_OUT: Final = MappingProxyType({"stat": "S", "asap": "A", "routine": "R", "urgent": "U"})

# -------------------------------------------------------------------------------------- diagnoses

#: DG1-3.3 / OBR-31.3 coding systems accepted as ICD-10-CM (empty: assumed ICD-10-CM)
ICD10_SYSTEMS: Final = frozenset({"", "I10", "I10C", "ICD10", "ICD10CM", "ICD-10-CM", "ICD-10"})
ICD10_OUT: Final = "I10C"

# ---------------------------------------------------------------------------------------- insurers

#: IN1-3 insurance company id (upper-cased) -> (payer id, payer name) the hub stores
INSURER_IN: Final = MappingProxyType(
    {
        "MCR": ("MEDICARE", "Medicare Part B"),
        "MEDICARE": ("MEDICARE", "Medicare Part B"),
        "MCD": ("MEDICAID", "Medicaid"),
        "MEDICAID": ("MEDICAID", "Medicaid"),
        "BCBS": ("BCBS", "Blue Cross Blue Shield"),
        "WC": ("WORKCOMP", "Workers' compensation"),
    }
)

# ------------------------------------------------------------------------------------- identifiers

#: base of the Identifier.system made for a v2 assigning authority given only by a namespace id
NAMESPACE_SYSTEM_BASE: Final = "https://therapy-hub.example/sid/hl7v2/"
#: assigning authority namespace id -> Identifier.system (and back, for the namespaces listed)
NAMESPACE_SYSTEMS: Final = MappingProxyType(
    {
        "NPI": "http://hl7.org/fhir/sid/us-npi",
        "SSA": "http://hl7.org/fhir/sid/us-ssn",
        "HUB": "https://therapy-hub.example/sid/patient",
    }
)
#: CX-5 identifier type codes never imported (data minimisation: social security numbers)
DROPPED_IDENTIFIER_TYPES: Final = frozenset({"SS"})

# --------------------------------------------------------------------------------- attachments (ED)

#: (ED-2 type of data, ED-3 subtype) upper-cased -> MIME type
MIME_IN: Final = MappingProxyType(
    {
        ("AP", "PDF"): "application/pdf",
        ("APPLICATION", "PDF"): "application/pdf",
        ("AP", "RTF"): "application/rtf",
        ("AP", "XML"): "application/xml",
        ("AP", "OCTET-STREAM"): "application/octet-stream",
        ("IM", "JPEG"): "image/jpeg",
        ("IM", "JPG"): "image/jpeg",
        ("IM", "PNG"): "image/png",
        ("IM", "TIFF"): "image/tiff",
        ("IMAGE", "JPEG"): "image/jpeg",
        ("IMAGE", "PNG"): "image/png",
        ("TEXT", "PLAIN"): "text/plain",
        ("TX", "PLAIN"): "text/plain",
        ("TEXT", "HTML"): "text/html",
        ("TEXT", "RTF"): "text/rtf",
    }
)
#: MIME type -> (type of data, subtype) written in OBX-5 (others: AP^<subtype of the MIME type>)
MIME_OUT: Final = MappingProxyType(
    {
        "application/pdf": ("AP", "PDF"),
        "image/jpeg": ("IM", "JPEG"),
        "image/png": ("IM", "PNG"),
        "image/tiff": ("IM", "TIFF"),
        "text/plain": ("TEXT", "PLAIN"),
        "text/html": ("TEXT", "HTML"),
    }
)

# ---------------------------------------------------------------------------------- referral status

#: Task.status -> RF1-1 referral status (table 0283: A accepted, P pending, R rejected, E expired)
REFERRAL_STATUS_OUT: Final = MappingProxyType(
    {
        "draft": "P",
        "requested": "P",
        "received": "P",
        "ready": "A",
        "accepted": "A",
        "in-progress": "A",
        "on-hold": "P",
        "completed": "A",
        "rejected": "R",
        "cancelled": "R",
        "failed": "R",
        "entered-in-error": "R",
    }
)
#: Task.status -> ORC-5 order status (table 0038) for OSU^O51
ORDER_STATUS_OUT: Final = MappingProxyType(
    {
        "draft": "SC",
        "requested": "SC",
        "received": "SC",
        "ready": "SC",
        "accepted": "IP",
        "in-progress": "IP",
        "on-hold": "HD",
        "completed": "CM",
        "rejected": "CA",
        "cancelled": "CA",
        "failed": "ER",
        "entered-in-error": "ER",
    }
)
#: coding system of the exact Task.status carried in ORC-25 / RF1-10 (HL7 "99" local: the FHIR code)
TASK_STATUS_V2_SYSTEM: Final = "HL7FHIRTS"
#: RF1-1 / ORC-5 -> Task.status when a partner sends no exact status
REFERRAL_STATUS_IN: Final = MappingProxyType(
    {"A": "accepted", "P": "requested", "R": "rejected", "E": "cancelled"}
)
ORDER_STATUS_IN: Final = MappingProxyType(
    {
        "SC": "requested",
        "IP": "in-progress",
        "HD": "on-hold",
        "CM": "completed",
        "CA": "cancelled",
        "DC": "cancelled",
        "ER": "failed",
        "A": "in-progress",
    }
)
