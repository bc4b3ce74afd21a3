"""Code tables of the HL7 v2 mappings: edit them here (plain dicts; keys compared upper-cased).

Every table maps what a partner sends to what the hub stores, and back. When a partner uses a
local code, add it to the inbound side only (several codes may point at one FHIR value); the
outbound side (``*_OUT``) says which code the hub sends. A code that is not in a table is refused
with HL7 error 103 (table value not found) naming the field, never silently dropped.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

#: later MSH-12 versions, read as 2.5.1 (HL7 v2 is backward compatible: what 2.5.1 does not know
#: is ignored) and answered with an ERR of severity W that says so
READ_AS_VERSION: Final = frozenset({"2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2", "2.9"})
#: MSH-12 versions accepted (others: 203 unsupported version id, AR)
SUPPORTED_VERSIONS: Final = frozenset({"2.5.1", "2.5"}) | READ_AS_VERSION
#: the version the hub writes
VERSION: Final = "2.5.1"
#: MSH-11 processing ids accepted (P production, T training, D debugging)
PROCESSING_IDS: Final = frozenset({"P", "T", "D"})

#: message code -> trigger events the hub accepts
SUPPORTED_MESSAGES: Final = MappingProxyType(
    {
        "REF": frozenset({"I12"}),
        "RRI": frozenset({"I12"}),  # referral status updates (hub.inbound.hl7v2)
        "OMG": frozenset({"O19"}),
        "OSU": frozenset({"O51"}),  # 360X order status updates (hub.inbound.hl7v2)
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

# ---------------------------------------------------------------------------------- coding systems

#: Coding.system -> CE-3 name of coding system (table 0396) in SCH-6/7/8 and AIS-3; others: "L"
CODING_SYSTEM_OUT: Final = MappingProxyType(
    {
        "http://hl7.org/fhir/sid/icd-10-cm": ICD10_OUT,
        "http://snomed.info/sct": "SCT",
        "http://loinc.org": "LN",
        "http://www.ama-assn.org/go/cpt": "C4",
        "http://terminology.hl7.org/CodeSystem/v2-0276": "HL70276",
    }
)
#: CE-3 (upper-cased) -> Coding.system; "L", "99zzz" and unknown names give a coding without system
CODING_SYSTEM_IN: Final = MappingProxyType(
    {
        **{name: "http://hl7.org/fhir/sid/icd-10-cm" for name in ICD10_SYSTEMS if name},
        "SCT": "http://snomed.info/sct",
        "SNM": "http://snomed.info/sct",
        "LN": "http://loinc.org",
        "C4": "http://www.ama-assn.org/go/cpt",
        "CPT": "http://www.ama-assn.org/go/cpt",
        "HL70276": "http://terminology.hl7.org/CodeSystem/v2-0276",
    }
)

# ------------------------------------------------------------------------------- scheduling (SIU)

#: SIU trigger events the hub sends -> their name (table 0003)
SIU_EVENTS: Final = MappingProxyType(
    {
        "S12": "Notification of new appointment booking",
        "S13": "Notification of appointment rescheduling",
        "S14": "Notification of appointment modification",
        "S15": "Notification of appointment cancellation",
        "S26": "Notification that patient did not show up for scheduled appointment",
    }
)
#: Appointment.status -> SCH-25 / AIS-10 / AIL-12 / AIP-12 filler status code (table 0278)
APPOINTMENT_STATUS_OUT: Final = MappingProxyType(
    {
        "proposed": "Pending",
        "pending": "Pending",
        "waitlist": "Waitlist",
        "booked": "Booked",
        "arrived": "Started",
        "checked-in": "Started",
        "fulfilled": "Complete",
        "cancelled": "Cancelled",
        "noshow": "Noshow",
        "entered-in-error": "Deleted",
    }
)
#: filler status code (table 0278, upper-cased) -> Appointment.status when no exact status is sent
APPOINTMENT_STATUS_IN: Final = MappingProxyType(
    {
        "PENDING": "pending",
        "WAITLIST": "waitlist",
        "BOOKED": "booked",
        "OVERBOOK": "booked",
        "STARTED": "arrived",
        "COMPLETE": "fulfilled",
        "CANCELLED": "cancelled",
        "DELETED": "entered-in-error",
        "NOSHOW": "noshow",
    }
)
#: coding system of the exact Appointment.status carried as the alternate coding of SCH-25
APPOINTMENT_STATUS_V2_SYSTEM: Final = "HL7FHIRAS"
#: coding system of the exact Appointment.participant.status (alternate coding of AIL-12 / AIP-12)
PARTICIPANT_STATUS_V2_SYSTEM: Final = "HL7FHIRPS"
#: coding system of a v3-ParticipationType code (Appointment.participant.type) in AIP-4
PARTICIPATION_TYPE_V2_SYSTEM: Final = "HL7V3PT"
#: AIP-4 when the participant has no v3-ParticipationType code (table 0443: attending)
DEFAULT_AIP_ROLE: Final = ("AT", "Attending", "HL70443")
#: Appointment element -> NTE-4 comment type (table 0364, user-defined) of the NTE under SCH
APPOINTMENT_NOTE_TYPES: Final = MappingProxyType(
    {
        "description": ("DE", "Description", "L"),
        "patientInstruction": ("PI", "Patient Instructions", "HL70364"),
        "comment": ("RE", "Remark", "HL70364"),
        "cancelationReason": ("1R", "Primary Reason", "HL70364"),
    }
)

# ------------------------------------------------------------------------------- documents (MDM)

#: TXA-2 document type (table 0270, user-defined) of a plan of care
PLAN_DOCUMENT_TYPE: Final = "POC"
#: OBX-3 of the plan of care lines and attachment (LOINC "Plan of care note")
PLAN_OBSERVATION: Final = ("18776-5", "Plan of care note", "LN")
#: CarePlan.status -> TXA-17 document completion status (table 0271; draft: IP in progress, else
#: AU authenticated by its author; the physician's certification is a separate signature)
PLAN_COMPLETION_OUT: Final = MappingProxyType(
    {
        "draft": "IP",
        "active": "AU",
        "on-hold": "AU",
        "completed": "AU",
        "revoked": "AU",
        "entered-in-error": "AU",
        "unknown": "AU",
    }
)
#: CarePlan.status / DocumentReference.status -> TXA-19 document availability status (table 0273;
#: others AV available)
PLAN_AVAILABILITY_OUT: Final = MappingProxyType(
    {"revoked": "OB", "superseded": "OB", "entered-in-error": "CA"}
)
