"""Required value-set bindings of FHIR R4 (4.0.1) for the resource types the hub serves.

``fhir.resources`` checks structure and datatypes but not code bindings: it accepts
``"status": "bogus"``. These tables list the elements whose binding strength is *required* in R4,
so the hub can refuse values outside them. A path is dotted; lists are walked automatically.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Binding:
    path: str
    codes: frozenset[str]
    #: for CodeableConcept/Coding elements, the code system the codes belong to
    system: str | None = None
    #: the element is mandatory (1..1) in R4
    required: bool = False


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


REQUEST_PRIORITY = _codes("routine urgent asap stat")
IDENTIFIER_USE = _codes("usual official temp secondary old")
CONTACT_SYSTEM = _codes("phone fax email pager url sms other")
CONTACT_USE = _codes("home work temp old mobile")
NAME_USE = _codes("usual official temp nickname anonymous old maiden")
ADDRESS_USE = _codes("home work temp old billing")
ADDRESS_TYPE = _codes("postal physical both")
GENDER = _codes("male female other unknown")
NARRATIVE_STATUS = _codes("generated extensions additional empty")
FINANCIAL_STATUS = _codes("active cancelled draft entered-in-error")
CLAIM_USE = _codes("claim preauthorization predetermination")
REMITTANCE_OUTCOME = _codes("queued complete error partial")
ELIGIBILITY_PURPOSE = _codes("auth-requirements benefits discovery validation")
NOTE_TYPE = _codes("display print printoper")

_COMMON: tuple[Binding, ...] = (
    Binding("text.status", NARRATIVE_STATUS),
    Binding("identifier.use", IDENTIFIER_USE),
)
_PEOPLE: tuple[Binding, ...] = (
    Binding("telecom.system", CONTACT_SYSTEM),
    Binding("telecom.use", CONTACT_USE),
    Binding("name.use", NAME_USE),
    Binding("address.use", ADDRESS_USE),
    Binding("address.type", ADDRESS_TYPE),
    Binding("gender", GENDER),
)

REQUIRED_BINDINGS: dict[str, tuple[Binding, ...]] = {
    "Patient": _PEOPLE
    + (
        Binding("link.type", _codes("replaced-by replaces refer seealso")),
        Binding("contact.gender", GENDER),
    ),
    "Practitioner": _PEOPLE,
    "PractitionerRole": (
        Binding("telecom.system", CONTACT_SYSTEM),
        Binding("telecom.use", CONTACT_USE),
        Binding("availableTime.daysOfWeek", _codes("mon tue wed thu fri sat sun")),
    ),
    "Organization": (
        Binding("telecom.system", CONTACT_SYSTEM),
        Binding("telecom.use", CONTACT_USE),
        Binding("address.use", ADDRESS_USE),
        Binding("address.type", ADDRESS_TYPE),
    ),
    "ServiceRequest": (
        Binding(
            "status",
            _codes("draft active on-hold revoked completed entered-in-error unknown"),
            required=True,
        ),
        Binding(
            "intent",
            _codes(
                "proposal plan directive order original-order reflex-order filler-order instance-order option"
            ),
            required=True,
        ),
        Binding("priority", REQUEST_PRIORITY),
    ),
    "Task": (
        Binding(
            "status",
            _codes(
                "draft requested received accepted rejected ready cancelled in-progress on-hold failed "
                "completed entered-in-error"
            ),
            required=True,
        ),
        Binding(
            "intent",
            _codes("unknown proposal plan order original-order reflex-order filler-order instance-order option"),
            required=True,
        ),
        Binding("priority", REQUEST_PRIORITY),
    ),
    "CarePlan": (
        Binding(
            "status",
            _codes("draft active on-hold revoked completed entered-in-error unknown"),
            required=True,
        ),
        Binding("intent", _codes("proposal plan order option"), required=True),
        Binding(
            "activity.detail.status",
            _codes("not-started scheduled in-progress on-hold completed cancelled stopped unknown entered-in-error"),
        ),
        Binding(
            "activity.detail.kind",
            _codes(
                "Appointment CommunicationRequest DeviceRequest MedicationRequest NutritionOrder Task "
                "ServiceRequest VisionPrescription"
            ),
        ),
    ),
    "Goal": (
        Binding(
            "lifecycleStatus",
            _codes("proposed planned accepted active on-hold completed cancelled entered-in-error rejected"),
            required=True,
        ),
    ),
    "Condition": (
        Binding(
            "clinicalStatus",
            _codes("active recurrence relapse inactive remission resolved"),
            system="http://terminology.hl7.org/CodeSystem/condition-clinical",
        ),
        Binding(
            "verificationStatus",
            _codes("unconfirmed provisional differential confirmed refuted entered-in-error"),
            system="http://terminology.hl7.org/CodeSystem/condition-ver-status",
        ),
    ),
    "Coverage": (
        Binding("status", _codes("active cancelled draft entered-in-error"), required=True),
    ),
    "Encounter": (
        Binding(
            "status",
            _codes("planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown"),
            required=True,
        ),
        Binding(
            "statusHistory.status",
            _codes("planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown"),
        ),
        Binding("location.status", _codes("planned active reserved completed")),
    ),
    "Appointment": (
        Binding(
            "status",
            _codes("proposed pending booked arrived fulfilled cancelled noshow entered-in-error checked-in waitlist"),
            required=True,
        ),
        Binding("participant.required", _codes("required optional information-only")),
        Binding("participant.status", _codes("accepted declined tentative needs-action")),
    ),
    "Observation": (
        Binding(
            "status",
            _codes("registered preliminary final amended corrected cancelled entered-in-error unknown"),
            required=True,
        ),
    ),
    "DocumentReference": (
        Binding("status", _codes("current superseded entered-in-error"), required=True),
        Binding("docStatus", _codes("preliminary final amended entered-in-error")),
        Binding("relatesTo.code", _codes("replaces transforms signs appends")),
    ),
    "Communication": (
        Binding(
            "status",
            _codes("preparation in-progress not-done on-hold stopped completed entered-in-error unknown"),
            required=True,
        ),
        Binding("priority", REQUEST_PRIORITY),
    ),
    "Composition": (
        Binding("status", _codes("preliminary final amended entered-in-error"), required=True),
        Binding("confidentiality", _codes("U L M N R V")),
        Binding("section.mode", _codes("working snapshot changes")),
    ),
    "AuditEvent": (
        Binding("action", _codes("C R U D E")),
        Binding("outcome", _codes("0 4 8 12")),
    ),
    "Provenance": (Binding("entity.role", _codes("derivation revision quotation source removal")),),
    "Location": (
        Binding("status", _codes("active suspended inactive")),
        Binding("mode", _codes("instance kind")),
        Binding("telecom.system", CONTACT_SYSTEM),
        Binding("telecom.use", CONTACT_USE),
        Binding("address.use", ADDRESS_USE),
        Binding("address.type", ADDRESS_TYPE),
        Binding("hoursOfOperation.daysOfWeek", _codes("mon tue wed thu fri sat sun")),
    ),
    # billing (issue #14)
    "ChargeItem": (
        Binding("status", _codes("planned billable not-billable aborted billed entered-in-error unknown"),
                required=True),
    ),
    "Claim": (
        Binding("status", FINANCIAL_STATUS, required=True),
        Binding("use", CLAIM_USE, required=True),
    ),
    "ClaimResponse": (
        Binding("status", FINANCIAL_STATUS, required=True),
        Binding("use", CLAIM_USE, required=True),
        Binding("outcome", REMITTANCE_OUTCOME, required=True),
        Binding("processNote.type", NOTE_TYPE),
    ),
    "CoverageEligibilityRequest": (
        Binding("status", FINANCIAL_STATUS, required=True),
        Binding("purpose", ELIGIBILITY_PURPOSE, required=True),
    ),
    "CoverageEligibilityResponse": (
        Binding("status", FINANCIAL_STATUS, required=True),
        Binding("purpose", ELIGIBILITY_PURPOSE, required=True),
        Binding("outcome", REMITTANCE_OUTCOME, required=True),
    ),
}


QUANTITY_COMPARATOR = _codes("< <= >= >")
UNITS_OF_TIME = _codes("s min h d wk mo a")

#: Required bindings of datatypes, checked wherever the datatype occurs (``Task.for.identifier.use``,
#: ``Patient.contact.telecom[0].system``, ``Observation.valueQuantity.comparator``...). Keyed by the
#: datatype (model class) name; paths are relative to the datatype.
DATATYPE_BINDINGS: dict[str, tuple[Binding, ...]] = {
    "Identifier": (Binding("use", IDENTIFIER_USE),),
    "ContactPoint": (Binding("system", CONTACT_SYSTEM), Binding("use", CONTACT_USE)),
    "HumanName": (Binding("use", NAME_USE),),
    "Address": (Binding("use", ADDRESS_USE), Binding("type", ADDRESS_TYPE)),
    "Narrative": (Binding("status", NARRATIVE_STATUS),),
    "Quantity": (Binding("comparator", QUANTITY_COMPARATOR),),
    "Age": (Binding("comparator", QUANTITY_COMPARATOR),),
    "Count": (Binding("comparator", QUANTITY_COMPARATOR),),
    "Distance": (Binding("comparator", QUANTITY_COMPARATOR),),
    "Duration": (Binding("comparator", QUANTITY_COMPARATOR),),
    "TimingRepeat": (
        Binding("durationUnit", UNITS_OF_TIME),
        Binding("periodUnit", UNITS_OF_TIME),
        Binding("dayOfWeek", _codes("mon tue wed thu fri sat sun")),
    ),
}


def bindings_for(resource_type: str) -> tuple[Binding, ...]:
    return _COMMON + REQUIRED_BINDINGS.get(resource_type, ())
