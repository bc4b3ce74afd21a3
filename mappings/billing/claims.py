"""Finished therapy visits -> one FHIR R4 ``Claim`` (:func:`claim_from_visits`); a FHIR ``Claim`` and
what it points to -> the flat :class:`~mappings.billing.model.ProfessionalClaim`
(:func:`professional_claim`, in :mod:`.claim_reading`).

What the visits give:

* ``Encounter`` -- one visit. ``diagnosis[].condition`` (ordered by ``rank``) names Conditions, which
  are passed in (``conditions``); ``reasonCode`` / ``reasonReference`` add ICD-10-CM codes. **Place of
  service**: R4 Encounter has no element for the CMS place-of-service code (``serviceType`` is the
  kind of service, ``class`` the setting in v3 terms), so it is the extension :data:`POS_EXTENSION`
  (valueCoding, system ``POS_SYSTEM``) or else a ``type`` / ``serviceType`` coding in ``POS_SYSTEM``;
  without either it is ``11`` (office).
* ``ChargeItem`` -- one billed code. ``code`` (CPT or HCPCS system), ``context`` the Encounter,
  ``subject`` the Patient, ``occurrenceDateTime`` (else the Encounter's start), ``performer[].actor``
  the Practitioner; a performer is an **assistant** when its ``function`` has code ``assistant`` in
  :data:`PERFORMER_FUNCTION_SYSTEM` (or any coding ``PTA``/``COTA``/``OTA``), or the performer has
  :data:`ASSISTANT_EXTENSION` true. ``quantity`` with unit or code ``min`` is **minutes**, anything
  else is **units** (with :data:`TIMED_MINUTES_EXTENSION` giving the minutes beside them, if known).
  ``reason`` ICD-10-CM codes are the line's diagnoses (else the visit's, at most four).
  :data:`MODIFIER_EXTENSION` adds a modifier (59, XU...). The unit price is ``priceOverride``, else
  the ``fee_schedule`` entry of the code.

Units: for each visit, the timed codes given in minutes become units by ``units_rule``
(:func:`mappings.billing.units.units_by_code`), several ChargeItems of one code in one visit counting
as one line; untimed codes are one unit; a line that comes to no unit (7 minutes alone) is not
billed. Modifiers, in order: the discipline (GP/GO/GN, from the plan of care's category, else from an
evaluation code), CQ/CO on a line an assistant took part in, the ChargeItem's own, KX when ``kx``.

The ``Claim``: status active, type professional, use claim, ``identifier`` the patient control number
(``PATIENT_CONTROL_SYSTEM``), ``provider`` the billing Organization, ``insurer`` the Coverage's first ``payor`` (an
Organization), ``careTeam`` the rendering therapist (role ``primary``, qualification ``therapist``), other therapists
(role ``other``) and the assistants (role ``assist``, qualification ``assistant``), ``referral`` the referral
ServiceRequest (from the CarePlan's ``supportingInfo``, else an Encounter's ``basedOn``), ``supportingInfo`` the
CarePlan (code ``plan-of-care``), the initial treatment date (the plan's start) and the onset (principal Condition's
``onsetDateTime``), ``diagnosis`` ICD-10-CM codeable concepts, one ``item`` per line (with the timed minutes and the
line control number ``<claim number>-<sequence>`` as extensions), ``total``. Its id is uuid5 over Claim + patient
control number (+ ``id_scope``); amounts are ``Decimal`` (serialise with :func:`mappings.fhir.jsonio.dumps`).

Pure: no I/O, no clock (``created`` is passed in), no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from mappings.billing.claim_reading import professional_claim
from mappings.billing.codes import (
    ASSISTANT_EXTENSION,
    ASSISTANT_MODIFIERS,
    CLAIM_INFO_SYSTEM,
    DISCIPLINE_MODIFIERS,
    EVALUATION_DISCIPLINE,
    KX,
    LINE_CONTROL_EXTENSION,
    MODIFIER_EXTENSION,
    PERFORMER_FUNCTION_SYSTEM,
    POS_EXTENSION,
    TIMED_MINUTES_EXTENSION,
    UNTIMED_CODES,
    is_therapy,
)
from mappings.billing.errors import ClaimDataError
from mappings.billing.fhir_read import careplan_discipline, coding_in, ref_of, reference_text
from mappings.billing.model import (
    CPT_SYSTEM,
    HCPCS_SYSTEM,
    ICD10CM_SYSTEM,
    LINE_CONTROL_SYSTEM,
    MODIFIER_SYSTEM,
    PATIENT_CONTROL_SYSTEM,
    POS_SYSTEM,
    Discipline,
    UnitsRule,
)
from mappings.billing.units import units_by_code, units_for_minutes
from mappings.fhir.ids import deterministic_id

__all__ = ["ClaimDataError", "claim_from_visits", "professional_claim"]

CLAIM_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/claim-type"
PRIORITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/processpriority"
CARE_TEAM_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/claimcareteamrole"
RELATED_SYSTEM = "http://terminology.hl7.org/CodeSystem/ex-relatedclaimrelationship"
INFO_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/claiminformationcategory"
_ASSISTANT_CODES = {"assistant", "PTA", "COTA", "OTA"}


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _money(value: Decimal) -> dict[str, Any]:
    return {"value": value.quantize(Decimal("0.01")), "currency": "USD"}


def _place_of_service(encounter: dict[str, Any]) -> str:
    for ext in encounter.get("extension") or []:
        if ext.get("url") == POS_EXTENSION and (ext.get("valueCoding") or {}).get("code"):
            return str(ext["valueCoding"]["code"])
    for concept in [*(encounter.get("type") or []), encounter.get("serviceType")]:
        coding = coding_in(concept, POS_SYSTEM)
        if coding is not None and coding.get("code"):
            return str(coding["code"])
    return "11"


def _is_assistant(performer: dict[str, Any]) -> bool:
    for ext in performer.get("extension") or []:
        if ext.get("url") == ASSISTANT_EXTENSION and ext.get("valueBoolean") is True:
            return True
    function = performer.get("function") or {}
    return any(c.get("code") in _ASSISTANT_CODES for c in function.get("coding") or [])


class _Line:
    """One Claim.item in the making: the ChargeItems of one code (and kind) in one visit."""

    def __init__(self, code: str, system: str, display: str | None, encounter: str, date: str) -> None:
        self.code, self.system, self.display = code, system, display
        self.encounter, self.date = encounter, date
        self.minutes: int | None = None
        self.units: Decimal | None = None
        self.price: Decimal | None = None
        self.therapists: list[str] = []
        self.assistants: list[str] = []
        self.modifiers: list[str] = []
        self.reasons: list[dict[str, Any]] = []


def _read_charge(number: int, charge: dict[str, Any], encounters: Mapping[str, dict[str, Any]], patient: str) -> _Line:
    where = f"ChargeItem[{number}]"
    subject = reference_text(charge.get("subject"))
    if subject is not None and subject != patient:
        raise ClaimDataError(f"{where}.subject", "the charge is not for the claim's patient")
    coding = coding_in(charge.get("code"), CPT_SYSTEM) or coding_in(charge.get("code"), HCPCS_SYSTEM)
    if coding is None or not coding.get("code"):
        raise ClaimDataError(f"{where}.code", "no CPT or HCPCS coding")
    encounter_ref = reference_text(charge.get("context"))
    if encounter_ref is None or encounter_ref not in encounters:
        raise ClaimDataError(f"{where}.context", "must point to one of the Encounters passed in")
    date = charge.get("occurrenceDateTime") or (charge.get("occurrencePeriod") or {}).get("start")
    date = date or (encounters[encounter_ref].get("period") or {}).get("start")
    if not date:
        raise ClaimDataError(f"{where}.occurrenceDateTime", "no date of service (nor Encounter.period.start)")
    line = _Line(str(coding["code"]).upper(), str(coding["system"]), coding.get("display"), encounter_ref, date[:10])
    quantity = charge.get("quantity") or {}
    value = quantity.get("value", 1)
    if "min" in (quantity.get("unit"), quantity.get("code")):
        line.minutes = int(value)
    else:
        line.units = Decimal(str(value))
        line.minutes = next(
            (int(e["valueInteger"]) for e in charge.get("extension") or [] if e.get("url") == TIMED_MINUTES_EXTENSION),
            None,
        )
    price = (charge.get("priceOverride") or {}).get("value")
    line.price = None if price is None else Decimal(str(price))
    for p_number, performer in enumerate(charge.get("performer") or []):
        actor = reference_text(performer.get("actor"))
        if actor is None:
            raise ClaimDataError(f"{where}.performer[{p_number}].actor", "no reference")
        (line.assistants if _is_assistant(performer) else line.therapists).append(actor)
    for ext in charge.get("extension") or []:
        if ext.get("url") == MODIFIER_EXTENSION and (ext.get("valueCoding") or {}).get("code"):
            line.modifiers.append(str(ext["valueCoding"]["code"]).upper())
    line.reasons = [c for c in charge.get("reason") or [] if coding_in(c, ICD10CM_SYSTEM)]
    return line


def _merge(lines: list[_Line]) -> list[_Line]:
    merged: dict[tuple[str, str, bool], _Line] = {}
    for line in lines:
        key = (line.encounter, line.code, line.units is None)
        if key not in merged:
            merged[key] = line
            continue
        into = merged[key]
        if line.minutes is not None:
            into.minutes = (into.minutes or 0) + line.minutes
        if line.units is not None and into.units is not None:
            into.units += line.units
        for attr in ("therapists", "assistants", "modifiers"):
            values = getattr(into, attr)
            values.extend(v for v in getattr(line, attr) if v not in values)
        into.reasons.extend(line.reasons)
    return list(merged.values())


def _set_units(lines: list[_Line], units_rule: UnitsRule) -> None:
    by_visit: dict[str, list[_Line]] = {}
    for line in lines:
        by_visit.setdefault(line.encounter, []).append(line)
    for visit in by_visit.values():
        timed = [x for x in visit if x.units is None and x.code not in UNTIMED_CODES]
        minutes = {x.code: x.minutes or 0 for x in timed}
        units = units_by_code(minutes, units_rule)
        for line in visit:
            if line.code in UNTIMED_CODES:
                line.units = Decimal(1)
            elif line.units is None:
                count = units.get(line.code)
                line.units = Decimal(count if count is not None else units_for_minutes(line.minutes or 0))


def _diagnoses(
    encounters: Sequence[dict[str, Any]], conditions: Mapping[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, list[str]], dict[str, Any] | None]:
    """Claim diagnosis concepts (ICD-10-CM codings) in order, each visit's codes, the principal Condition."""
    codings: dict[str, dict[str, Any]] = {}
    per_visit: dict[str, list[str]] = {}
    principal: dict[str, Any] | None = None
    for number, encounter in enumerate(encounters):
        visit: list[str] = []
        ranked = sorted(enumerate(encounter.get("diagnosis") or []), key=lambda d: (d[1].get("rank", 10**6), d[0]))
        concepts = []
        for d_number, diagnosis in ranked:
            ref = reference_text(diagnosis.get("condition"))
            if ref is None or ref not in conditions:
                raise ClaimDataError(
                    f"Encounter[{number}].diagnosis[{d_number}].condition", "the Condition it names was not passed in"
                )
            principal = principal or conditions[ref]
            concepts.append(conditions[ref].get("code"))
        for ref_value in encounter.get("reasonReference") or []:
            reason = reference_text(ref_value)
            if reason is not None and reason in conditions:
                concepts.append(conditions[reason].get("code"))
        concepts.extend(encounter.get("reasonCode") or [])
        for concept in concepts:
            coding = coding_in(concept, ICD10CM_SYSTEM)
            if coding is None or not coding.get("code"):
                continue
            key = str(coding["code"]).replace(".", "").upper()
            codings.setdefault(key, coding)
            if key not in visit:
                visit.append(key)
        per_visit[ref_of(encounter, f"Encounter[{number}]")] = visit
    return list(codings.values()), per_visit, principal


def claim_from_visits(
    encounters: Sequence[dict[str, Any]],
    charges: Sequence[dict[str, Any]],
    coverage: dict[str, Any],
    patient: dict[str, Any],
    *,
    billing_org: dict[str, Any],
    careplan: dict[str, Any] | None,
    claim_number: str,
    created: datetime,
    units_rule: UnitsRule,
    conditions: Sequence[dict[str, Any]] = (),
    fee_schedule: Mapping[str, Decimal] | None = None,
    kx: bool = False,
    replaces: str | None = None,
    id_scope: str | None = None,
) -> dict[str, Any]:
    """The FHIR R4 ``Claim`` (a dict) billing ``charges`` (ChargeItems) of ``encounters`` to ``coverage``.

    ``replaces``: the payer's claim number of the claim this one replaces (837P frequency 7 with
    REF*F8), written as ``related`` with relationship ``prior``. ``id_scope`` (e.g. the tenant) joins
    the patient control number in the uuid5 of the Claim's id, for control numbers unique per tenant.

    Raises :class:`ClaimDataError` naming the FHIR path of what is missing."""
    if created.tzinfo is None or created.utcoffset() is None:
        raise ValueError("created must be timezone-aware")
    if not claim_number:
        raise ClaimDataError("claim_number", "the patient control number is empty")
    visits = {ref_of(e, f"Encounter[{n}]"): e for n, e in enumerate(encounters)}
    by_ref = {ref_of(c, f"Condition[{n}]"): c for n, c in enumerate(conditions)}
    patient_ref = ref_of(patient, "Patient")
    lines = _merge([_read_charge(n, c, visits, patient_ref) for n, c in enumerate(charges)])
    _set_units(lines, units_rule)
    lines = [line for line in lines if line.units]
    if not lines:
        raise ClaimDataError("ChargeItem", "no charge comes to a billable unit")
    lines.sort(key=lambda x: (x.date, list(visits).index(x.encounter)))
    discipline: Discipline | None = careplan_discipline(careplan) if careplan else None
    if discipline is None:
        discipline = next((EVALUATION_DISCIPLINE[x.code] for x in lines if x.code in EVALUATION_DISCIPLINE), None)

    # care team: therapists first (the first is the rendering provider), then the assistants
    therapists = [t for x in lines for t in x.therapists]
    if not therapists:
        author = reference_text((careplan or {}).get("author"))
        if author is None or not author.startswith("Practitioner/"):
            raise ClaimDataError("ChargeItem.performer", "no therapist (a performer who is not an assistant)")
        therapists = [author]
    team: dict[str, int] = {}
    care_team: list[dict[str, Any]] = []
    for ref, assistant in [*((t, False) for t in therapists), *((a, True) for x in lines for a in x.assistants)]:
        if ref in team:
            continue
        team[ref] = len(team) + 1
        role = "assist" if assistant else ("primary" if not care_team else "other")
        entry: dict[str, Any] = {
            "sequence": team[ref],
            "provider": {"reference": ref},
            "role": _concept(CARE_TEAM_ROLE_SYSTEM, role),
            "qualification": _concept(PERFORMER_FUNCTION_SYSTEM, "assistant" if assistant else "therapist"),
        }
        if role == "primary":
            entry["responsible"] = True
        care_team.append(entry)

    diagnosis_codings, per_visit, principal = _diagnoses(encounters, by_ref)
    for line in lines:
        for concept in line.reasons:
            coding = coding_in(concept, ICD10CM_SYSTEM)
            if coding and coding.get("code"):
                diagnosis_codings.append(coding)
    seq_of: dict[str, int] = {}
    diagnosis: list[dict[str, Any]] = []
    for coding in diagnosis_codings:
        key = str(coding["code"]).replace(".", "").upper()
        if key in seq_of:
            continue
        seq_of[key] = len(seq_of) + 1
        concept = {"coding": [{k: coding[k] for k in ("system", "code", "display") if k in coding}]}
        diagnosis.append({"sequence": seq_of[key], "diagnosisCodeableConcept": concept})

    items: list[dict[str, Any]] = []
    total = Decimal("0.00")
    for sequence, line in enumerate(lines, start=1):
        price = line.price
        if price is None and fee_schedule is not None:
            price = fee_schedule.get(line.code)
        if price is None:
            raise ClaimDataError(f"ChargeItem({line.code}).priceOverride", "no price and no fee schedule entry")
        assert line.units is not None
        net = (price * line.units).quantize(Decimal("0.01"))
        total += net
        modifiers: list[str] = []
        if discipline is not None and is_therapy(line.code):
            modifiers.append(DISCIPLINE_MODIFIERS[discipline])
            if line.assistants and discipline in ASSISTANT_MODIFIERS:
                modifiers.append(ASSISTANT_MODIFIERS[discipline])
        modifiers.extend(m for m in line.modifiers if m not in modifiers)
        if kx and is_therapy(line.code) and KX not in modifiers:
            modifiers.append(KX)
        reason_keys = [
            str(c["code"]).replace(".", "").upper()
            for c in (coding_in(r, ICD10CM_SYSTEM) for r in line.reasons)
            if c and c.get("code")
        ]
        pointers = [seq_of[k] for k in (reason_keys or per_visit[line.encounter]) if k in seq_of][:4]
        therapist = line.therapists[0] if line.therapists else therapists[0]
        extensions: list[dict[str, Any]] = []
        if line.minutes is not None and line.code not in UNTIMED_CODES:  # untimed codes have no timed minutes
            extensions.append({"url": TIMED_MINUTES_EXTENSION, "valueInteger": line.minutes})
        extensions.append(
            {
                "url": LINE_CONTROL_EXTENSION,
                "valueIdentifier": {"system": LINE_CONTROL_SYSTEM, "value": f"{claim_number}-{sequence}"},
            }
        )
        item: dict[str, Any] = {
            "extension": extensions,
            "sequence": sequence,
            "careTeamSequence": [team[therapist], *(team[a] for a in line.assistants)],
            "diagnosisSequence": pointers,
            "productOrService": _concept(line.system, line.code, line.display),
            "servicedDate": line.date,
            "locationCodeableConcept": _concept(POS_SYSTEM, _place_of_service(visits[line.encounter])),
            "quantity": {"value": line.units},
            "unitPrice": _money(price),
            "net": _money(net),
            "encounter": [{"reference": line.encounter}],
        }
        if modifiers:
            item["modifier"] = [_concept(MODIFIER_SYSTEM, m) for m in modifiers]
        if not pointers:
            del item["diagnosisSequence"]
        items.append(item)

    info_category = _concept(INFO_CATEGORY_SYSTEM, "info")
    supporting: list[dict[str, Any]] = []
    referral: str | None = None
    if careplan is not None:
        plan_ref = ref_of(careplan, "CarePlan")
        supporting.append(
            {
                "category": info_category,
                "code": _concept(CLAIM_INFO_SYSTEM, "plan-of-care"),
                "valueReference": {"reference": plan_ref},
            }
        )
        start = (careplan.get("period") or {}).get("start")
        if start:
            supporting.append(
                {
                    "category": info_category,
                    "code": _concept(CLAIM_INFO_SYSTEM, "initial-treatment"),
                    "timingDate": str(start)[:10],
                }
            )
        referral = next(
            (
                r
                for r in (reference_text(s) for s in careplan.get("supportingInfo") or [])
                if r and r.startswith("ServiceRequest/")
            ),
            None,
        )
    if referral is None:
        referral = next(
            (
                r
                for e in encounters
                for r in (reference_text(b) for b in e.get("basedOn") or [])
                if r and r.startswith("ServiceRequest/")
            ),
            None,
        )
    onset = (principal or {}).get("onsetDateTime")
    if onset:
        supporting.append({"category": _concept(INFO_CATEGORY_SYSTEM, "onset"), "timingDate": str(onset)[:10]})
    for number, info in enumerate(supporting, start=1):
        info["sequence"] = number

    claim: dict[str, Any] = {
        "resourceType": "Claim",
        "id": deterministic_id("Claim", PATIENT_CONTROL_SYSTEM, claim_number, id_scope),
        "identifier": [{"system": PATIENT_CONTROL_SYSTEM, "value": claim_number}],
        "status": "active",
        "type": _concept(CLAIM_TYPE_SYSTEM, "professional"),
        "use": "claim",
        "patient": {"reference": patient_ref},
        "billablePeriod": {"start": lines[0].date, "end": max(x.date for x in lines)},
        "created": created.isoformat(),
        "provider": {"reference": ref_of(billing_org, "billing Organization")},
        "priority": _concept(PRIORITY_SYSTEM, "normal"),
        "careTeam": care_team,
        "diagnosis": diagnosis,
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": ref_of(coverage, "Coverage")}}],
        "item": items,
        "total": _money(total),
    }
    insurer = reference_text(next(iter(coverage.get("payor") or []), None))
    if insurer is not None and insurer.startswith("Organization/"):
        claim["insurer"] = {"reference": insurer}  # the payer, whose ClaimResponse names it back
    if replaces:
        claim["related"] = [{"relationship": _concept(RELATED_SYSTEM, "prior"), "reference": {"value": replaces}}]
    if referral is not None:
        claim["referral"] = {"reference": referral}
    if supporting:
        claim["supportingInfo"] = supporting
    if not diagnosis:
        del claim["diagnosis"]
    return claim
