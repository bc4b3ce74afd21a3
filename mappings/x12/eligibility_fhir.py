"""A 271 eligibility result as a FHIR R4 ``CoverageEligibilityResponse`` (purpose ``benefits``).

How the EB segments become ``insurance[0].item[]`` (choices the hub's readers rely on):

* one item per service type (EB03, each repetition; ``30`` when none is sent), network (EB12 Y ->
  ``in``, N -> ``out``, W or none -> no network) and coverage level (EB02 IND -> ``individual``,
  FAM -> ``family``); ``category`` is coded in :data:`SERVICE_TYPE_SYSTEM`.
* ``item.benefit`` per EB01: ``F`` limitations with a visit quantity (EB09 VS) -> ``visit``
  (``allowedUnsignedInt``/``usedUnsignedInt``), with an amount -> ``benefit`` (money); ``B``
  co-payment -> ``copay``; ``A`` co-insurance -> ``copay-percent`` (EB08 0.20 -> 20); ``C``
  deductible -> ``deductible``; ``G`` out of pocket -> ``copay-maximum`` (R4's benefit-type has no
  out-of-pocket code; the closest one, with text "Out of pocket (stop loss)").
* the time period decides allowed or used: 29 remaining -> used = allowed - remaining when the
  allowance is known, else ``allowedString`` "<n> remaining"; 24 year to date -> used; any other
  period (22, 23, 27...) or none -> allowed. EB06 22/23 set ``item.term`` ``annual``, 32 ``lifetime``.
* EB01 6 (inactive) or I (non-covered) for a service type -> ``item.excluded`` true, 1 -> false.
* EB11 Y/N -> ``item.authorizationRequired``; EB01 1 (active) / 6 (inactive) -> ``insurance.inforce``;
  DTP*291 (plan) or 346/347 of the member -> ``insurance.benefitPeriod``; MSG and EB05 ->
  ``item.description``.
* AAA rejections -> ``error[].code`` (:data:`REJECT_REASON_SYSTEM`); ``outcome`` is ``error`` when
  the payer rejected and sent no benefit, ``partial`` when it did both, else ``complete``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from mappings.fhir import model_class
from mappings.x12.read271 import SERVICE_TYPES, Benefit, EligibilityResult, Member

SERVICE_TYPE_SYSTEM = "https://x12.org/codes/service-type-codes"
REJECT_REASON_SYSTEM = "https://x12.org/codes/reject-reason-codes"
BENEFIT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/benefit-type"
NETWORK_SYSTEM = "http://terminology.hl7.org/CodeSystem/benefit-network"
UNIT_SYSTEM = "http://terminology.hl7.org/CodeSystem/benefit-unit"
TERM_SYSTEM = "http://terminology.hl7.org/CodeSystem/benefit-term"
#: the trace number of the 270 the payer echoes in the 271 (TRN*2), the hub's inquiry number
TRACE_SYSTEM = "https://therapy-hub.example/sid/eligibility-trace-number"
_NAMESPACE = uuid.UUID("4c7a2d10-3b8e-5f61-a9d2-271000000001")
_NETWORK = {"Y": ("in", "In Network"), "N": ("out", "Out of Network")}
_UNIT = {"IND": ("individual", "Individual"), "FAM": ("family", "Family")}
_TERM = {"22": ("annual", "Annual"), "23": ("annual", "Annual"), "32": ("lifetime", "Lifetime")}
_TYPE_DISPLAY = {"visit": "Visit", "copay": "Copayment per service", "copay-percent": "Copayment Percent per service",
                 "deductible": "Deductible", "copay-maximum": "Copayment maximum per service",
                 "benefit": "Benefit"}


def coverage_eligibility_response(result: EligibilityResult, *, patient_ref: str, insurer_ref: str | None,
                                  request_ref: str | None, coverage_ref: str | None,
                                  created: datetime) -> dict[str, Any]:
    """The response to one 270 about one person, validated with the R4B model.

    R4 requires ``request``, ``insurer`` and ``insurance.coverage``: without a reference they fall back
    to the 270's trace number (TRN02, or BHT03) as an identifier, the payer's name and the member id.
    Amounts are ``Decimal``: serialise with :func:`mappings.fhir.jsonio.dumps`.
    """
    trace = next((number for _, number in result.trace_numbers if number), None) or result.reference or ""
    patient = result.patient
    payer = result.source
    resource: dict[str, Any] = {
        "resourceType": "CoverageEligibilityResponse",
        "id": _id(result, trace),
        "status": "active",
        "purpose": ["benefits"],
        "patient": {"reference": patient_ref},
        "created": created.isoformat(),
        "request": ({"reference": request_ref} if request_ref
                    else {"identifier": {"system": TRACE_SYSTEM, "value": trace or "unknown"}}),
        "insurer": ({"reference": insurer_ref} if insurer_ref
                    else {"display": (payer.name if payer else "") or "payer"}),
    }
    if payer is not None and payer.name and insurer_ref:
        resource["insurer"]["display"] = payer.name
    if trace:
        resource["identifier"] = [{"system": TRACE_SYSTEM, "value": trace}]
    benefits = list(result.benefits)
    if benefits:
        resource["insurance"] = [_insurance(result, benefits, coverage_ref, patient)]
    errors = [_error(r.reason, r.description) for r in result.rejections]
    if errors:
        resource["error"] = errors
        resource["outcome"] = "partial" if benefits else "error"
        resource["disposition"] = "; ".join(r.description or f"Rejected ({r.reason})" for r in result.rejections)
    else:
        resource["outcome"] = "complete"
    model_class("CoverageEligibilityResponse").model_validate(resource)
    return resource


def _id(result: EligibilityResult, trace: str) -> str:
    payer = result.source.identifier if result.source and result.source.identifier else ""
    member = result.patient.member_id if result.patient and result.patient.member_id else ""
    key = "|".join((payer, trace, member, result.control_number))
    return str(uuid.uuid5(_NAMESPACE, "CoverageEligibilityResponse|" + key))


def _error(reason: str, description: str | None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": REJECT_REASON_SYSTEM, "code": reason or "unknown"}
    if description:
        coding["display"] = description
    return {"code": {"coding": [coding]}}


@dataclass
class _Value:
    """allowed / used / remaining of one benefit type in one item, money or count."""

    money: bool
    allowed: Decimal | None = None
    used: Decimal | None = None
    remaining: Decimal | None = None


@dataclass
class _Item:
    service_type: str
    network: str | None
    unit: str | None
    term: str | None = None
    authorization_required: bool | None = None
    excluded: bool | None = None
    descriptions: list[str] = field(default_factory=list)
    values: dict[str, _Value] = field(default_factory=dict)


def _insurance(result: EligibilityResult, benefits: list[Benefit], coverage_ref: str | None,
               patient: Member | None) -> dict[str, Any]:
    codes = {b.info_code for b in benefits}
    if coverage_ref:
        coverage: dict[str, Any] = {"reference": coverage_ref}
    else:
        member_id = patient.member_id if patient else None
        coverage = {"identifier": {"value": member_id}} if member_id else {"display": "coverage"}
    insurance: dict[str, Any] = {"coverage": coverage}
    if "1" in codes:
        insurance["inforce"] = True
    elif "6" in codes:
        insurance["inforce"] = False
    period = _benefit_period(result)
    if period:
        insurance["benefitPeriod"] = period
    items: dict[tuple[str, str | None, str | None], _Item] = {}
    for benefit in benefits:
        for service_type in benefit.service_types or ("30",):
            key = (service_type, benefit.in_network if benefit.in_network in _NETWORK else None,
                   benefit.coverage_level if benefit.coverage_level in _UNIT else None)
            item = items.setdefault(key, _Item(*key))
            _add(item, benefit)
    rendered = [_render(item) for item in items.values()]
    if rendered:
        insurance["item"] = rendered
    return insurance


def _benefit_period(result: EligibilityResult) -> dict[str, str] | None:
    for member in (result.dependent, result.subscriber):
        if member is None:
            continue
        if "291" in member.dates:
            start, end = member.dates["291"]
            return _period(start, end)
        if "346" in member.dates or "347" in member.dates:
            begin = member.dates["346"][0] if "346" in member.dates else None
            finish = member.dates["347"][0] if "347" in member.dates else None
            return _period(begin, finish)
    return None


def _period(start: date | None, end: date | None) -> dict[str, str]:
    out = {}
    if start:
        out["start"] = start.isoformat()
    if end:
        out["end"] = end.isoformat()
    return out


def _kind(benefit: Benefit) -> tuple[str, Decimal | None, bool] | None:
    """(benefit type, value, is money) of an EB, or None when it carries no benefit value."""
    code = benefit.info_code
    if code == "F" and benefit.quantity_qualifier == "VS" and benefit.quantity is not None:
        return "visit", benefit.quantity, False
    if code == "F" and benefit.amount is not None:
        return "benefit", benefit.amount, True
    if code == "B" and benefit.amount is not None:
        return "copay", benefit.amount, True
    if code == "A" and benefit.percent is not None:
        return "copay-percent", benefit.percent * 100, False
    if code == "C" and benefit.amount is not None:
        return "deductible", benefit.amount, True
    if code == "G" and benefit.amount is not None:
        return "copay-maximum", benefit.amount, True
    return None


def _add(item: _Item, benefit: Benefit) -> None:
    if benefit.authorization_required is not None:
        item.authorization_required = item.authorization_required or benefit.authorization_required
    if benefit.info_code in ("6", "I"):  # inactive / non-covered for this service type
        item.excluded = True
    elif benefit.info_code == "1":
        item.excluded = False if item.excluded is None else item.excluded
    if benefit.time_period in _TERM:
        item.term = benefit.time_period
    for text in (benefit.plan_description, *benefit.messages):
        if text and text not in item.descriptions:
            item.descriptions.append(text)
    kind = _kind(benefit)
    if kind is None:
        return
    type_code, value, money = kind
    slot = item.values.setdefault(type_code, _Value(money))
    if benefit.time_period == "29":
        slot.remaining = value
    elif benefit.time_period == "24":
        slot.used = value
    else:
        slot.allowed = value


def _coded(system: str, pair: tuple[str, str]) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": pair[0], "display": pair[1]}]}


def _render(item: _Item) -> dict[str, Any]:
    category: dict[str, Any] = {"system": SERVICE_TYPE_SYSTEM, "code": item.service_type}
    if item.service_type in SERVICE_TYPES:
        category["display"] = SERVICE_TYPES[item.service_type]
    out: dict[str, Any] = {"category": {"coding": [category]}}
    if item.network:
        out["network"] = _coded(NETWORK_SYSTEM, _NETWORK[item.network])
    if item.unit:
        out["unit"] = _coded(UNIT_SYSTEM, _UNIT[item.unit])
    if item.term:
        out["term"] = _coded(TERM_SYSTEM, _TERM[item.term])
    if item.descriptions:
        out["description"] = "; ".join(item.descriptions)
    if item.excluded is not None:
        out["excluded"] = item.excluded
    if item.authorization_required is not None:
        out["authorizationRequired"] = item.authorization_required
    benefits = [_benefit(type_code, value) for type_code, value in item.values.items()]
    if benefits:
        out["benefit"] = benefits
    return out


def _benefit(type_code: str, value: _Value) -> dict[str, Any]:
    concept = _coded(BENEFIT_TYPE_SYSTEM, (type_code, _TYPE_DISPLAY[type_code]))
    if type_code == "copay-maximum":
        concept["text"] = "Out of pocket (stop loss)"
    out: dict[str, Any] = {"type": concept}
    used = value.used
    if used is None and value.remaining is not None and value.allowed is not None:
        used = value.allowed - value.remaining
    if value.allowed is not None:
        out.update(_value("allowed", value.allowed, value.money))
    elif value.remaining is not None:
        out["allowedString"] = f"{_plain(value.remaining)} remaining"
    if used is not None:
        out.update(_value("used", used, value.money))
    return out


def _value(prefix: str, amount: Decimal, money: bool) -> dict[str, Any]:
    if money:
        return {f"{prefix}Money": {"value": amount, "currency": "USD"}}
    if amount == amount.to_integral_value() and amount >= 0:
        return {f"{prefix}UnsignedInt": int(amount)}
    return {f"{prefix}String": _plain(amount)}


def _plain(amount: Decimal) -> str:
    return format(amount.normalize(), "f") if amount == amount.to_integral_value() else format(amount, "f")
