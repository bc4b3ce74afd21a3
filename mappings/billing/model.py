"""One professional claim as billing needs it: plain typed values, no FHIR references left to follow.

This is the contract between the three parts of billing:

* :mod:`mappings.billing.claims` builds it from a FHIR ``Claim`` and the resources the claim points to
  (Patient, Coverage, Organization, Practitioner...), and builds the FHIR ``Claim`` from visits;
* :mod:`mappings.billing.scrubber` checks it (with :class:`ScrubContext`: the plan of care, the
  payer's rules, the year's therapy amount) and returns :class:`Finding`\\ s;
* :mod:`mappings.x12.write837` writes claims of one submitter and payer as an 837P 005010X222A1.

Amounts are ``Decimal`` (two places), dates are ``date``; codes are kept as the partner writes them
(upper case, no dots in ICD-10-CM: ``M5450``). Names follow the 837P loops they end up in.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: identifier system of the patient control number (837P CLM01, 835 CLP01), the hub's claim number
PATIENT_CONTROL_SYSTEM = "https://therapy-hub.example/sid/patient-control-number"
#: identifier system of a service line's control number (837P REF*6R, 835 REF*6R)
LINE_CONTROL_SYSTEM = "https://therapy-hub.example/sid/line-item-control-number"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
TAX_ID_SYSTEM = "urn:oid:2.16.840.1.113883.4.4"  # US EIN
CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
HCPCS_SYSTEM = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
MODIFIER_SYSTEM = "http://www.ama-assn.org/go/cpt"  # CPT/HCPCS level II modifiers (GP, KX, 59...)
POS_SYSTEM = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
#: X12 claim filing indicator (SBR09) per payer kind: MB Medicare Part B, MC Medicaid, CI commercial...
FilingIndicator = Literal["MA", "MB", "MC", "CI", "BL", "HM", "16", "WC", "ZZ", "11", "12", "13", "14", "15",
                          "17", "AM", "CH", "DS", "FI", "LM", "OF", "TV", "VA"]
Discipline = Literal["PT", "OT", "SLP"]
#: how timed codes become units: CMS 8-minute rule over the visit's total timed minutes, or per code
UnitsRule = Literal["cms-8-minute", "per-code"]
Severity = Literal["error", "warning"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Address(_Model):
    line1: str
    line2: str | None = None
    city: str
    state: str  # two letters
    postal_code: str  # 5 or 9 digits (837P billing provider needs 9)


class Party(_Model):
    """An organisation or person as X12 names it (NM1): last name or organisation name, first name."""

    last_or_org_name: str
    first_name: str | None = None
    middle_name: str | None = None
    npi: str | None = None
    tax_id: str | None = None  # EIN, nine digits, billing provider only
    taxonomy: str | None = None  # PRV*PE/BI, ten characters, e.g. 225100000X physical therapist
    address: Address | None = None
    phone: str | None = None


class Person(_Model):
    """Subscriber or patient (2010BA / 2010CA)."""

    last_name: str
    first_name: str
    middle_name: str | None = None
    member_id: str | None = None  # subscriber only (NM109 MI)
    birth_date: date
    gender: Literal["M", "F", "U"]
    address: Address


class Payer(_Model):
    name: str
    payer_id: str  # the clearinghouse's payer id (NM109 PI)
    filing_indicator: FilingIndicator
    address: Address | None = None


class ServiceLine(_Model):
    """One 2400 loop: a CPT/HCPCS code on one date of service."""

    line_number: int = Field(ge=1)  # LX01, 1-based in order
    control_number: str  # REF*6R, unique within the claim; 835 SVC lines come back with it
    code: str  # CPT or HCPCS, e.g. 97110
    modifiers: tuple[str, ...] = ()  # up to four: GP, KX, CQ, 59, XU...
    charge: Decimal  # SV102, total for the line
    units: Decimal  # SV104 (UN)
    minutes: int | None = None  # the timed minutes documented for this code (None for untimed codes)
    service_date: date  # DTP*472
    place_of_service: str | None = None  # SV105 when it differs from the claim's
    diagnosis_pointers: tuple[int, ...] = ()  # SV107: 1-based into Claim.diagnoses, up to four
    rendering: Party | None = None  # 2420A when it differs from the claim's rendering provider
    rendering_is_assistant: bool = False  # PTA/COTA: CQ (PT) / CO (OT) modifiers are due
    encounter_ref: str | None = None  # the FHIR Encounter the line comes from ("Encounter/id")


class ProfessionalClaim(_Model):
    """One 2300 loop with what it hangs under (2000A billing provider, 2000B subscriber, 2000C patient)."""

    patient_control_number: str = Field(min_length=1, max_length=20)  # CLM01, also the FHIR Claim identifier
    claim_ref: str | None = None  # the FHIR Claim ("Claim/id") this was read from
    frequency_code: Literal["1", "7", "8"] = "1"  # CLM05-3: original, replacement, void
    original_reference: str | None = None  # REF*F8, the payer's claim number, for 7 and 8
    place_of_service: str = "11"  # CLM05-1
    billing_provider: Party  # 2010AA, organisation with NPI, EIN, address
    rendering_provider: Party | None = None  # 2310B, the treating therapist
    referring_provider: Party | None = None  # 2310A (NM1*DN), the physician who referred and certifies
    subscriber: Person  # 2010BA
    patient: Person | None = None  # 2010CA when the patient is not the subscriber
    relationship: str = "18"  # SBR02 / PAT01: 18 self, 01 spouse, 19 child, G8 other
    payer: Payer  # 2010BB
    payer_responsibility: Literal["P", "S", "T"] = "P"  # SBR01
    group_number: str | None = None  # SBR03
    prior_authorization: str | None = None  # REF*G1
    diagnoses: tuple[str, ...]  # HI: ICD-10-CM without the dot, first is the principal (ABK), up to 12
    onset_date: date | None = None  # DTP*431
    initial_treatment_date: date | None = None  # DTP*454
    discipline: Discipline | None = None  # of the plan of care the claim bills under
    lines: tuple[ServiceLine, ...]

    @property
    def total_charge(self) -> Decimal:
        return sum((line.charge for line in self.lines), Decimal("0.00"))


class Submitter(_Model):
    """Who sends the file (1000A) and to whom (1000B), with the interchange identities (ISA/GS)."""

    name: str
    etin: str  # submitter id given by the clearinghouse (NM109 46, ISA06, GS02)
    contact_name: str
    contact_phone: str | None = None
    contact_email: str | None = None
    receiver_name: str
    receiver_id: str  # NM109 46 of 1000B, ISA08, GS03
    isa_qualifier: str = "ZZ"  # ISA05 / ISA07
    usage: Literal["P", "T"] = "P"  # ISA15 production or test


class ControlNumbers(_Model):
    """Unique and persisted by the hub (one allocation per file): the writer only prints them."""

    interchange: int = Field(ge=1, le=999_999_999)  # ISA13 / IEA02, nine digits, zero padded
    group: int = Field(ge=1, le=999_999_999)  # GS06 / GE02
    transaction: int = Field(ge=1, le=999_999_999)  # ST02 / SE02, four to nine digits


class Finding(_Model):
    """One scrubber result: which rule, where, what is wrong and how to fix it."""

    rule: str  # stable id, e.g. "units.cms-8-minute", "modifier.discipline", "npi.check-digit"
    severity: Severity  # errors keep the claim from going out; warnings are shown
    line: int | None = None  # ServiceLine.line_number, None for the whole claim
    message: str  # what is wrong, naming codes and numbers, never the patient
    fix: str  # how to fix it


class PlanOnFile(_Model):
    """A certified (or not yet certified) plan of care the claim's services may fall under."""

    careplan_ref: str
    discipline: Discipline
    start: date
    end: date
    certified: bool  # signed by the referring physician


class PayerRules(_Model):
    """Per payer (or per connector default): how the scrubber counts and what it demands."""

    units_rule: UnitsRule = "cms-8-minute"
    #: per calendar year, the therapy amount past which KX is due (Medicare: 2024 $2,330, 2025 $2,410,
    #: 2026 $2,480); a year not listed -> the latest earlier year; empty -> no KX rule
    kx_thresholds: tuple[tuple[int, Decimal], ...] = (
        (2024, Decimal("2330.00")),
        (2025, Decimal("2410.00")),
        (2026, Decimal("2480.00")),
    )
    kx_combined_pt_slp: bool = True  # Medicare counts PT and SLP together, OT alone
    requires_plan_of_care: bool = True
    #: same-day pairs that need a distinct-service modifier: (column 1 code, column 2 code)
    ncci_pairs: tuple[tuple[str, str], ...] = (("97140", "97530"), ("97530", "97140"), ("97150", "97530"))
    distinct_modifiers: tuple[str, ...] = ("59", "XE", "XS", "XP", "XU")
    #: medically unlikely edits: code -> most units per day
    mue: tuple[tuple[str, int], ...] = ()


class ScrubContext(_Model):
    """What the scrubber needs besides the claim, fetched by the hub and passed in."""

    rules: PayerRules = PayerRules()
    plans: tuple[PlanOnFile, ...] = ()
    #: the patient's therapy amount already billed this calendar year before this claim, per discipline
    #: group ("PT/SLP" and "OT" under Medicare's combined rule, else the discipline)
    year_to_date: tuple[tuple[str, Decimal], ...] = ()
