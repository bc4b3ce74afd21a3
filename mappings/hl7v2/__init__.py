"""HL7 v2.5.1 <-> FHIR R4 (pure: no I/O, no clock, no random ids).

Parsing is python-hl7's tokeniser under our own checks (:mod:`~mappings.hl7v2.syntax`: character set,
segment separators, delimiters, escapes; :mod:`~mappings.hl7v2.structures`: segment order);
hl7apy was not taken: ~25x slower per message, and what it checks beyond that (groups, required
segments) is done here with HL7 error codes and locations that an ACK can carry.

* :func:`translate` - REF^I12, OMG^O19, ADT^A04/A08/A31 -> a FHIR transaction Bundle
* :func:`referral_to_ref_i12`, :func:`task_to_rri_i12`, :func:`task_to_osu_o51` - FHIR -> v2
* :func:`appointment_to_siu` - Appointment -> SIU^S12/S13/S14/S15/S26; :func:`read_appointment` back
* :func:`plan_to_mdm` - plan of care (CarePlan summary, PDF) -> MDM^T02/T08; :func:`read_plan_summary`
* :func:`build_ack`, :func:`read_ack` - acknowledgements (original and enhanced mode)
* :class:`Hl7Error` - every failure, with an HL7 error code (table 0357) and location, PHI-free
* :mod:`~mappings.hl7v2.tables` - the code tables (sex, discipline, priority, insurers, MIME, status)
"""

from mappings.hl7v2.ack import (
    AckResult,
    Header,
    accept_ack_wanted,
    application_ack_wanted,
    build_ack,
    check_supported,
    is_enhanced,
    read_ack,
    read_header,
)
from mappings.hl7v2.documents import PlanSummaryMessage, plan_to_mdm, read_plan_summary
from mappings.hl7v2.errors import ErrorLocation, Hl7Error
from mappings.hl7v2.inbound import Translation, structure_warnings, translate
from mappings.hl7v2.outbound import (
    StatusUpdate,
    read_status_update,
    referral_to_ref_i12,
    task_to_osu_o51,
    task_to_rri_i12,
)
from mappings.hl7v2.patient import patient_resource
from mappings.hl7v2.scheduling import appointment_to_siu
from mappings.hl7v2.segments import FHIR_ID_NAMESPACE, OutboundHeader, UntranslatableResource
from mappings.hl7v2.siu_reading import read_appointment
from mappings.hl7v2.syntax import Separators, V2Message, V2Segment, escape, parse, unescape

__all__ = [
    "FHIR_ID_NAMESPACE",
    "AckResult",
    "ErrorLocation",
    "Header",
    "Hl7Error",
    "OutboundHeader",
    "PlanSummaryMessage",
    "Separators",
    "StatusUpdate",
    "Translation",
    "UntranslatableResource",
    "V2Message",
    "V2Segment",
    "accept_ack_wanted",
    "application_ack_wanted",
    "appointment_to_siu",
    "build_ack",
    "check_supported",
    "escape",
    "is_enhanced",
    "parse",
    "patient_resource",
    "plan_to_mdm",
    "read_ack",
    "read_appointment",
    "read_header",
    "read_plan_summary",
    "read_status_update",
    "referral_to_ref_i12",
    "structure_warnings",
    "task_to_osu_o51",
    "task_to_rri_i12",
    "translate",
    "unescape",
]
