"""A week of therapy visits as FHIR R4 dicts, for the billing tests and whoever needs claims to test.

The week of 2025-03-10 (Medicare Part B patient, one clinic):

* PT: Mon evaluation 97162 + 23 min 97110; Thu 33 min 97110 + 7 min 97140 (40 min -> 2 + 1 units);
  Fri with the PT assistant: 24 min 97110 + 23 min 97112 (47 min -> 2 + 1), hot pack 97010 and
  unattended e-stim G0283.
* OT: Tue evaluation 97166 + 30 min 97535; Thu with the OT assistant 40 min 97530.
* SLP: Wed evaluation 92610 + treatment of swallowing 92526.

:func:`week` builds them all; :func:`claim_for` bills one discipline's visits;
:func:`resources_of` is what :func:`professional_claim` needs; :func:`context_for` the scrub
context (plans on file, year to date); :func:`over_kx_threshold` a patient whose year's PT/SLP
amount passes the KX threshold with this week's PT claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from mappings.billing.claims import claim_from_visits
from mappings.billing.codes import (
    ASSISTANT_EXTENSION,
    FILING_INDICATOR_SYSTEM,
    NUCC_TAXONOMY_SYSTEM,
    PAYER_ID_SYSTEM,
    PERFORMER_FUNCTION_SYSTEM,
    POS_EXTENSION,
    npi_with_check_digit,
)
from mappings.billing.model import (
    CPT_SYSTEM,
    HCPCS_SYSTEM,
    ICD10CM_SYSTEM,
    NPI_SYSTEM,
    POS_SYSTEM,
    TAX_ID_SYSTEM,
    Discipline,
    PlanOnFile,
    ScrubContext,
    UnitsRule,
)

CREATED = datetime(2025, 3, 15, 9, 0, tzinfo=UTC)
SNOMED = "http://snomed.info/sct"
ADDRESS = {"line": ["100 Main St", "Suite 2"], "city": "Springfield", "state": "IL", "postalCode": "62701-1234"}
NPI = {
    "clinic": npi_with_check_digit("123456789"),
    "pt": npi_with_check_digit("198765432"),
    "pta": npi_with_check_digit("155555555"),
    "ot": npi_with_check_digit("166666666"),
    "cota": npi_with_check_digit("177777777"),
    "slp": npi_with_check_digit("188888888"),
    "physician": npi_with_check_digit("144444444"),
}
#: the clinic's fee schedule (charges, not what the payer allows)
FEES: dict[str, Decimal] = {
    "97162": Decimal("180.00"),
    "97166": Decimal("180.00"),
    "92610": Decimal("190.00"),
    "97110": Decimal("45.00"),
    "97112": Decimal("48.00"),
    "97140": Decimal("42.00"),
    "97535": Decimal("46.00"),
    "97530": Decimal("50.00"),
    "92526": Decimal("110.00"),
    "97010": Decimal("15.00"),
    "G0283": Decimal("20.00"),
}
DISCIPLINE_SNOMED = {
    "PT": ("91251008", "Physical therapy procedure"),
    "OT": ("84478008", "Occupational therapy"),
    "SLP": ("5154007", "Speech therapy"),
}
TAXONOMY = {
    "pt": "225100000X",
    "pta": "225200000X",
    "ot": "225X00000X",
    "cota": "224Z00000X",
    "slp": "235Z00000X",
    "physician": "207X00000X",
}
NAMES = {
    "pt": ("Rivera", "Ana"),
    "pta": ("Cole", "Ben"),
    "ot": ("Nguyen", "Lin"),
    "cota": ("Ortiz", "Sam"),
    "slp": ("Brooks", "Kim"),
    "physician": ("Hale", "Morgan"),
}


def practitioner(key: str) -> dict[str, Any]:
    family, given = NAMES[key]
    return {
        "resourceType": "Practitioner",
        "id": key,
        "identifier": [{"system": NPI_SYSTEM, "value": NPI[key]}],
        "name": [{"family": family, "given": [given]}],
        "qualification": [{"code": {"coding": [{"system": NUCC_TAXONOMY_SYSTEM, "code": TAXONOMY[key]}]}}],
    }


def condition(cid: str, code: str, display: str, onset: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": "Patient/pat-1"},
        "code": {"coding": [{"system": ICD10CM_SYSTEM, "code": code, "display": display}]},
    }
    if onset:
        resource["onsetDateTime"] = onset
    return resource


def encounter(eid: str, day: str, diagnoses: list[str], *, pos: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/pat-1"},
        "basedOn": [{"reference": "ServiceRequest/referral-1"}],
        "period": {"start": f"{day}T09:00:00-06:00", "end": f"{day}T10:00:00-06:00"},
        "diagnosis": [{"condition": {"reference": f"Condition/{c}"}, "rank": n} for n, c in enumerate(diagnoses, 1)],
    }
    if pos:
        resource["extension"] = [{"url": POS_EXTENSION, "valueCoding": {"system": POS_SYSTEM, "code": pos}}]
    return resource


def charge(
    cid: str,
    code: str,
    eid: str,
    day: str,
    performer: str,
    *,
    minutes: int | None = None,
    units: int | None = None,
    assistant: str | None = None,
    supervisor_marks: str = "function",
) -> dict[str, Any]:
    """A ChargeItem; ``minutes`` as UCUM min, else ``units`` (default 1); ``assistant`` adds the PTA/COTA,
    marked by performer.function (or by the extension, ``supervisor_marks="extension"``)."""
    system = HCPCS_SYSTEM if code.startswith("G") else CPT_SYSTEM
    performers: list[dict[str, Any]] = [
        {
            "function": {"coding": [{"system": PERFORMER_FUNCTION_SYSTEM, "code": "therapist"}]},
            "actor": {"reference": f"Practitioner/{performer}"},
        }
    ]
    if assistant:
        marked: dict[str, Any] = (
            {"function": {"coding": [{"system": PERFORMER_FUNCTION_SYSTEM, "code": "assistant"}]}}
            if supervisor_marks == "function"
            else {"extension": [{"url": ASSISTANT_EXTENSION, "valueBoolean": True}]}
        )
        performers.append({**marked, "actor": {"reference": f"Practitioner/{assistant}"}})
    quantity = (
        {"value": minutes, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}
        if minutes is not None
        else {"value": units or 1}
    )
    return {
        "resourceType": "ChargeItem",
        "id": cid,
        "status": "billable",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/pat-1"},
        "context": {"reference": f"Encounter/{eid}"},
        "occurrenceDateTime": f"{day}T09:00:00-06:00",
        "performer": performers,
        "quantity": quantity,
    }


def careplan(discipline: Discipline, start: str = "2025-03-10", end: str = "2025-05-04") -> dict[str, Any]:
    code, display = DISCIPLINE_SNOMED[discipline]
    author = {"PT": "pt", "OT": "ot", "SLP": "slp"}[discipline]
    return {
        "resourceType": "CarePlan",
        "id": f"plan-{discipline.lower()}",
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": SNOMED, "code": code, "display": display}], "text": discipline}],
        "subject": {"reference": "Patient/pat-1"},
        "period": {"start": start, "end": end},
        "author": {"reference": f"Practitioner/{author}"},
        "supportingInfo": [{"reference": "ServiceRequest/referral-1"}],
    }


@dataclass
class Week:
    patient: dict[str, Any]
    coverage: dict[str, Any]
    clinic: dict[str, Any]
    payer: dict[str, Any]
    referral: dict[str, Any]
    practitioners: dict[str, dict[str, Any]]
    conditions: list[dict[str, Any]]
    careplans: dict[str, dict[str, Any]]
    encounters: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    charges: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def week() -> Week:
    patient = {
        "resourceType": "Patient",
        "id": "pat-1",
        "name": [{"family": "Doe", "given": ["Jordan", "Q"]}],
        "birthDate": "1950-07-04",
        "gender": "female",
        "address": [ADDRESS],
    }
    payer = {
        "resourceType": "Organization",
        "id": "medicare",
        "identifier": [{"system": PAYER_ID_SYSTEM, "value": "00430"}],
        "name": "Medicare Part B",
        "address": [ADDRESS],
    }
    coverage = {
        "resourceType": "Coverage",
        "id": "cov-1",
        "status": "active",
        "type": {"coding": [{"system": FILING_INDICATOR_SYSTEM, "code": "MB"}]},
        "subscriberId": "1EG4TE5MK73",
        "beneficiary": {"reference": "Patient/pat-1"},
        "relationship": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code": "self"}]
        },
        "payor": [{"reference": "Organization/medicare"}],
    }
    clinic = {
        "resourceType": "Organization",
        "id": "clinic",
        "identifier": [
            {"system": NPI_SYSTEM, "value": NPI["clinic"]},
            {"system": TAX_ID_SYSTEM, "value": "12-3456789"},
        ],
        "type": [{"coding": [{"system": NUCC_TAXONOMY_SYSTEM, "code": "261QR0400X"}]}],
        "name": "Springfield Rehab",
        "address": [ADDRESS],
        "telecom": [{"system": "phone", "value": "217-555-0100"}],
    }
    referral = {
        "resourceType": "ServiceRequest",
        "id": "referral-1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/pat-1"},
        "requester": {"reference": "Practitioner/physician"},
    }
    conditions = [
        condition("lbp", "M54.50", "Low back pain, unspecified", onset="2025-02-20"),
        condition("weak", "M62.81", "Muscle weakness (generalized)"),
        condition("wrist", "M25.631", "Stiffness of right wrist"),
        condition("dysphagia", "R13.12", "Dysphagia, oropharyngeal phase"),
    ]
    w = Week(
        patient=patient,
        coverage=coverage,
        clinic=clinic,
        payer=payer,
        referral=referral,
        practitioners={k: practitioner(k) for k in NAMES},
        conditions=conditions,
        careplans={d: careplan(d) for d in ("PT", "OT", "SLP")},
    )
    w.encounters["PT"] = [
        encounter("pt-mon", "2025-03-10", ["lbp", "weak"]),
        encounter("pt-thu", "2025-03-13", ["lbp", "weak"]),
        encounter("pt-fri", "2025-03-14", ["lbp"]),
    ]
    w.charges["PT"] = [
        charge("c1", "97162", "pt-mon", "2025-03-10", "pt"),
        charge("c2", "97110", "pt-mon", "2025-03-10", "pt", minutes=23),
        charge("c3", "97110", "pt-thu", "2025-03-13", "pt", minutes=33),
        charge("c4", "97140", "pt-thu", "2025-03-13", "pt", minutes=7),
        charge("c5", "97110", "pt-fri", "2025-03-14", "pt", minutes=24, assistant="pta"),
        charge("c6", "97112", "pt-fri", "2025-03-14", "pt", minutes=23, assistant="pta"),
        charge("c7", "97010", "pt-fri", "2025-03-14", "pt", assistant="pta", supervisor_marks="extension"),
        charge("c8", "G0283", "pt-fri", "2025-03-14", "pt", minutes=15, assistant="pta"),
    ]
    w.encounters["OT"] = [
        encounter("ot-tue", "2025-03-11", ["wrist"]),
        encounter("ot-thu", "2025-03-13", ["wrist"]),
    ]
    w.charges["OT"] = [
        charge("o1", "97166", "ot-tue", "2025-03-11", "ot"),
        charge("o2", "97535", "ot-tue", "2025-03-11", "ot", minutes=30),
        charge("o3", "97530", "ot-thu", "2025-03-13", "ot", minutes=40, assistant="cota"),
    ]
    w.encounters["SLP"] = [encounter("slp-wed", "2025-03-12", ["dysphagia"])]
    w.charges["SLP"] = [
        charge("s1", "92610", "slp-wed", "2025-03-12", "slp"),
        charge("s2", "92526", "slp-wed", "2025-03-12", "slp", minutes=30),
    ]
    return w


def claim_for(
    w: Week,
    discipline: Discipline,
    *,
    units_rule: UnitsRule = "cms-8-minute",
    number: str | None = None,
    kx: bool = False,
) -> dict[str, Any]:
    return claim_from_visits(
        w.encounters[discipline],
        w.charges[discipline],
        w.coverage,
        w.patient,
        billing_org=w.clinic,
        careplan=w.careplans[discipline],
        claim_number=number or f"W11-{discipline}",
        created=CREATED,
        units_rule=units_rule,
        conditions=w.conditions,
        fee_schedule=FEES,
        kx=kx,
    )


def resources_of(w: Week) -> dict[str, dict[str, Any]]:
    everything = [
        w.patient,
        w.coverage,
        w.clinic,
        w.payer,
        w.referral,
        *w.practitioners.values(),
        *w.conditions,
        *w.careplans.values(),
        *(e for es in w.encounters.values() for e in es),
    ]
    return {f"{r['resourceType']}/{r['id']}": r for r in everything}


def plan_on_file(
    discipline: Discipline, *, certified: bool = True, start: date = date(2025, 3, 10), end: date = date(2025, 5, 4)
) -> PlanOnFile:
    return PlanOnFile(
        careplan_ref=f"CarePlan/plan-{discipline.lower()}",
        discipline=discipline,
        start=start,
        end=end,
        certified=certified,
    )


def context_for(*disciplines: Discipline, year_to_date: tuple[tuple[str, Decimal], ...] = ()) -> ScrubContext:
    return ScrubContext(plans=tuple(plan_on_file(d) for d in disciplines), year_to_date=year_to_date)


def over_kx_threshold() -> ScrubContext:
    """The PT scrub context of a patient with $2,100 of PT/SLP billed in 2025 (threshold $2,410): this
    week's PT claim ($575) passes it with the Thursday 97110 line (line 3): $2,100 + 180 + 90 + 90."""
    return context_for("PT", year_to_date=(("PT/SLP", Decimal("2100.00")), ("OT", Decimal("0.00"))))
