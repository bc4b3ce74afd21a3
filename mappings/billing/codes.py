"""Therapy billing code tables: timed and untimed CPT/HCPCS codes, evaluation codes per discipline,
the modifiers therapy claims carry, and the hub's own extensions and code systems on ``ChargeItem``
and ``Claim``.

* **Timed** codes are billed in 15-minute units (CMS 8-minute rule, or per code, see
  :mod:`.units`). 97129 (cognitive function, first 15 minutes) and its add-on 97130 (each further 15
  minutes) are a pair: 97129 is at most one unit a day and 97130 carries the rest; both are counted as
  timed minutes here and the MUE table of the payer limits 97129.
* **Untimed** (service-based) codes are one unit a visit whatever the minutes: evaluations and
  re-evaluations, group therapy 97150, supervised modalities (97010-97028, G0283), 92507/92508/92526.
* Every code in these tables is a therapy code: its line carries the discipline modifier GP (PT),
  GO (OT) or GN (SLP). Lines by an assistant add CQ (physical therapist assistant) or CO
  (occupational therapy assistant). Same-day NCCI pairs need a distinct-service modifier
  (59, XE, XS, XP, XU) on the column-2 code.

Pure: tables and small functions, no I/O.
"""

from __future__ import annotations

import re
from typing import Final

from mappings.billing.model import Discipline

__all__ = [
    "ASSISTANT_EXTENSION",
    "ASSISTANT_MODIFIERS",
    "CLAIM_INFO_SYSTEM",
    "DISCIPLINE_MODIFIERS",
    "DISTINCT_MODIFIERS",
    "EVALUATION_DISCIPLINE",
    "FILING_INDICATOR_SYSTEM",
    "ICD10CM_PATTERN",
    "KX",
    "LINE_CONTROL_EXTENSION",
    "MODIFIER_DISCIPLINE",
    "MODIFIER_EXTENSION",
    "NUCC_TAXONOMY_SYSTEM",
    "PAYER_ID_SYSTEM",
    "PERFORMER_FUNCTION_SYSTEM",
    "POS_EXTENSION",
    "TIMED_CODES",
    "TIMED_MINUTES_EXTENSION",
    "UNTIMED_CODES",
    "is_therapy",
    "is_timed",
    "npi_is_valid",
    "npi_with_check_digit",
]

#: timed CPT codes (15-minute units) -> short description
TIMED_CODES: Final[dict[str, str]] = {
    "97032": "Electrical stimulation, attended",
    "97033": "Iontophoresis",
    "97034": "Contrast baths",
    "97035": "Ultrasound",
    "97036": "Hubbard tank",
    "97110": "Therapeutic exercise",
    "97112": "Neuromuscular re-education",
    "97113": "Aquatic therapy",
    "97116": "Gait training",
    "97124": "Massage",
    "97129": "Cognitive function intervention, first 15 minutes",
    "97130": "Cognitive function intervention, each additional 15 minutes",
    "97140": "Manual therapy",
    "97530": "Therapeutic activities",
    "97533": "Sensory integration",
    "97535": "Self-care/home management training",
    "97537": "Community/work reintegration training",
    "97542": "Wheelchair management training",
    "97750": "Physical performance test",
    "97755": "Assistive technology assessment",
    "97760": "Orthotic management and training",
    "97761": "Prosthetic training",
    "97763": "Orthotic/prosthetic management, subsequent",
}

#: untimed (service-based) codes: one unit a visit -> short description
UNTIMED_CODES: Final[dict[str, str]] = {
    "97161": "PT evaluation, low complexity",
    "97162": "PT evaluation, moderate complexity",
    "97163": "PT evaluation, high complexity",
    "97164": "PT re-evaluation",
    "97165": "OT evaluation, low complexity",
    "97166": "OT evaluation, moderate complexity",
    "97167": "OT evaluation, high complexity",
    "97168": "OT re-evaluation",
    "92521": "Evaluation of speech fluency",
    "92522": "Evaluation of speech sound production",
    "92523": "Evaluation of speech sound production with language",
    "92524": "Behavioral and qualitative analysis of voice and resonance",
    "92610": "Evaluation of swallowing function",
    "92507": "Treatment of speech, language, voice, communication, individual",
    "92508": "Treatment of speech, language, voice, communication, group",
    "92526": "Treatment of swallowing dysfunction",
    "97150": "Therapeutic procedure, group",
    "97010": "Hot or cold packs",
    "97012": "Mechanical traction",
    "97014": "Electrical stimulation, unattended",
    "97016": "Vasopneumatic devices",
    "97018": "Paraffin bath",
    "97022": "Whirlpool",
    "97024": "Diathermy",
    "97026": "Infrared",
    "97028": "Ultraviolet",
    "G0283": "Electrical stimulation, unattended, other than wound care",
}

#: evaluation and re-evaluation codes -> the only discipline that may bill them
EVALUATION_DISCIPLINE: Final[dict[str, Discipline]] = {
    **{code: "PT" for code in ("97161", "97162", "97163", "97164")},
    **{code: "OT" for code in ("97165", "97166", "97167", "97168")},
    **{code: "SLP" for code in ("92521", "92522", "92523", "92524", "92610")},
}

DISCIPLINE_MODIFIERS: Final[dict[Discipline, str]] = {"PT": "GP", "OT": "GO", "SLP": "GN"}
MODIFIER_DISCIPLINE: Final[dict[str, Discipline]] = {m: d for d, m in DISCIPLINE_MODIFIERS.items()}
#: services furnished in whole or part by an assistant (Medicare pays them at 85 %); SLP has none
ASSISTANT_MODIFIERS: Final[dict[Discipline, str]] = {"PT": "CQ", "OT": "CO"}
#: NCCI distinct-procedural-service modifiers
DISTINCT_MODIFIERS: Final[tuple[str, ...]] = ("59", "XE", "XS", "XP", "XU")
KX: Final = "KX"

#: ICD-10-CM as the claim carries it: letter, digit, letter or digit, then up to four more; no dot
ICD10CM_PATTERN: Final = re.compile(r"[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}")

_BASE = "https://therapy-hub.example"
#: ChargeItem / Claim.item: the documented timed minutes of the line (valueInteger)
TIMED_MINUTES_EXTENSION: Final = f"{_BASE}/StructureDefinition/timed-minutes"
#: Claim.item: the line item control number (valueIdentifier, system LINE_CONTROL_SYSTEM), REF*6R
LINE_CONTROL_EXTENSION: Final = f"{_BASE}/StructureDefinition/line-control-number"
#: ChargeItem: an extra CPT/HCPCS modifier (valueCoding, system MODIFIER_SYSTEM): 59, XU, KX...
MODIFIER_EXTENSION: Final = f"{_BASE}/StructureDefinition/procedure-modifier"
#: ChargeItem.performer: valueBoolean true when the performer is an assistant (PTA, COTA)
ASSISTANT_EXTENSION: Final = f"{_BASE}/StructureDefinition/performer-is-assistant"
#: Encounter (or ChargeItem): the CMS place of service (valueCoding, system POS_SYSTEM)
POS_EXTENSION: Final = f"{_BASE}/StructureDefinition/place-of-service"
#: ChargeItem.performer.function and Claim.careTeam.qualification: codes ``therapist``, ``assistant``
PERFORMER_FUNCTION_SYSTEM: Final = f"{_BASE}/CodeSystem/therapy-performer-function"
#: Claim.supportingInfo.code: ``initial-treatment`` (DTP*454), ``plan-of-care`` (the CarePlan)
CLAIM_INFO_SYSTEM: Final = f"{_BASE}/CodeSystem/claim-information"
#: Coverage.type coding with the X12 claim filing indicator (SBR09) as code: MB, MC, CI, BL...
FILING_INDICATOR_SYSTEM: Final = f"{_BASE}/CodeSystem/claim-filing-indicator"
#: payer Organization.identifier: the clearinghouse's payer id (NM109 PI)
PAYER_ID_SYSTEM: Final = f"{_BASE}/sid/payer-id"
NUCC_TAXONOMY_SYSTEM: Final = "http://nucc.org/provider-taxonomy"


def is_timed(code: str) -> bool:
    return code.upper() in TIMED_CODES


def is_therapy(code: str) -> bool:
    """Whether the line needs a discipline modifier: every code of the two tables."""
    code = code.upper()
    return code in TIMED_CODES or code in UNTIMED_CODES


def _luhn_sum(digits: str) -> int:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total


def npi_is_valid(npi: str) -> bool:
    """Ten digits whose last is the Luhn check digit over the card issuer prefix 80840 + the NPI."""
    return len(npi) == 10 and npi.isdigit() and _luhn_sum("80840" + npi) % 10 == 0


def npi_with_check_digit(first_nine: str) -> str:
    """The NPI made of nine digits and their check digit."""
    if len(first_nine) != 9 or not first_nine.isdigit():
        raise ValueError("an NPI has nine digits before its check digit")
    check = (10 - _luhn_sum("80840" + first_nine + "0") % 10) % 10
    return first_nine + str(check)
