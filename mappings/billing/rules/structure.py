"""Diagnoses and lines: at least one diagnosis (``diagnosis.missing``), at most twelve
(``diagnosis.too-many``), pointers 1..n and at most four a line (``diagnosis.pointer``), same-day
NCCI pairs (``ncci.pair``), medically unlikely edits (``mue.units``), the total (``claim.total``)
and at most 50 lines (``claim.lines-max``, the 837P's limit of a claim).

NCCI: when both codes of a pair are billed on one date, the column-2 line needs a distinct-service
modifier; when the payer lists the pair both ways (97140/97530 and 97530/97140), a distinct modifier
on either line answers it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from mappings.billing.model import Finding, ProfessionalClaim, ScrubContext, ServiceLine

MAX_LINES = 50
MAX_DIAGNOSES = 12


def _diagnoses(claim: ProfessionalClaim) -> Iterator[Finding]:
    count = len(claim.diagnoses)
    if count == 0:
        yield Finding(
            rule="diagnosis.missing",
            severity="error",
            message="the claim has no diagnosis",
            fix="add the ICD-10-CM diagnosis the visits treated",
        )
    elif count > MAX_DIAGNOSES:
        yield Finding(
            rule="diagnosis.too-many",
            severity="error",
            message=f"the claim has {count} diagnoses; a professional claim takes at most {MAX_DIAGNOSES}",
            fix="split the claim or keep the diagnoses the lines point to",
        )
    for line in claim.lines:
        pointers = line.diagnosis_pointers
        if not pointers and count:
            yield Finding(
                rule="diagnosis.pointer",
                severity="error",
                line=line.line_number,
                message=f"{line.code} points to no diagnosis",
                fix="point the line to 1-4 of the claim's diagnoses",
            )
        if len(pointers) > 4:
            yield Finding(
                rule="diagnosis.pointer",
                severity="error",
                line=line.line_number,
                message=f"{line.code} has {len(pointers)} diagnosis pointers; at most four",
                fix="keep the four diagnoses most related to the service",
            )
        wrong = [p for p in pointers if not 1 <= p <= min(count, MAX_DIAGNOSES)]
        if wrong:
            yield Finding(
                rule="diagnosis.pointer",
                severity="error",
                line=line.line_number,
                message=f"{line.code} points to diagnosis {', '.join(map(str, wrong))} of {count}",
                fix=f"use pointers between 1 and {min(count, MAX_DIAGNOSES)}",
            )


def _ncci(claim: ProfessionalClaim, context: ScrubContext) -> Iterator[Finding]:
    rules = context.rules
    pairs = set(rules.ncci_pairs)
    by_day: dict[date, dict[str, list[ServiceLine]]] = {}
    for line in claim.lines:
        by_day.setdefault(line.service_date, {}).setdefault(line.code, []).append(line)

    def distinct(lines: list[ServiceLine]) -> bool:
        return all(any(m in rules.distinct_modifiers for m in x.modifiers) for x in lines)

    for day, codes in by_day.items():
        for first, second in rules.ncci_pairs:
            if first not in codes or second not in codes or distinct(codes[second]):
                continue
            if (second, first) in pairs and distinct(codes[first]):
                continue
            for line in codes[second]:
                yield Finding(
                    rule="ncci.pair",
                    severity="error",
                    line=line.line_number,
                    message=f"{second} with {first} on {day.isoformat()} is an NCCI pair without a distinct modifier",
                    fix=(
                        f"add a distinct-service modifier ({', '.join(rules.distinct_modifiers)}) if the services "
                        f"were separate and distinct, else do not bill {second}"
                    ),
                )


def _mue(claim: ProfessionalClaim, context: ScrubContext) -> Iterator[Finding]:
    limits = dict(context.rules.mue)
    totals: dict[tuple[date, str], tuple[Decimal, ServiceLine]] = {}
    for line in claim.lines:
        if line.code in limits:
            key = (line.service_date, line.code)
            before = totals.get(key)
            totals[key] = ((before[0] if before else Decimal(0)) + line.units, before[1] if before else line)
    for (day, code), (units, line) in totals.items():
        if units > limits[code]:
            yield Finding(
                rule="mue.units",
                severity="error",
                line=line.line_number,
                message=f"{code} is billed {units} units on {day.isoformat()}; the payer allows {limits[code]} a day",
                fix=f"bill at most {limits[code]} units of {code} a day, or appeal with documentation",
            )


def check(claim: ProfessionalClaim, context: ScrubContext) -> Iterator[Finding]:
    yield from _diagnoses(claim)
    yield from _ncci(claim, context)
    yield from _mue(claim, context)
    if claim.total_charge <= 0:
        yield Finding(
            rule="claim.total",
            severity="error",
            message=f"the claim's total charge is {claim.total_charge}",
            fix="bill lines with their charges",
        )
    if len(claim.lines) > MAX_LINES:
        yield Finding(
            rule="claim.lines-max",
            severity="error",
            message=f"the claim has {len(claim.lines)} lines; an 837P claim takes at most {MAX_LINES}",
            fix="split the services into several claims",
        )
