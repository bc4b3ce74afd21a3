"""Modifiers: the discipline (``modifier.discipline``), the assistant (``modifier.assistant``), the
therapy threshold (``modifier.kx``, ``modifier.kx-unneeded``) and at most four (``modifier.count``).

KX: the lines are counted in date order, per calendar year and per discipline group (``PT/SLP`` and
``OT`` when the payer combines PT and SLP, else each discipline), starting from the year's amount
already billed (:attr:`ScrubContext.year_to_date`). A line whose running amount passes the year's
threshold, and every later one of its group, needs KX (error when missing); KX on a line below it is a
warning. A year not in the payer's table takes the latest earlier year; none earlier: no KX rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from mappings.billing.codes import (
    ASSISTANT_MODIFIERS,
    DISCIPLINE_MODIFIERS,
    EVALUATION_DISCIPLINE,
    KX,
    MODIFIER_DISCIPLINE,
    is_therapy,
)
from mappings.billing.model import Discipline, Finding, PayerRules, ProfessionalClaim, ScrubContext, ServiceLine


def line_discipline(line: ServiceLine, claim: ProfessionalClaim) -> Discipline | None:
    """The discipline a line bills under: its modifier, else the claim's, else its evaluation code's."""
    for modifier in line.modifiers:
        if modifier in MODIFIER_DISCIPLINE:
            return MODIFIER_DISCIPLINE[modifier]
    return claim.discipline or EVALUATION_DISCIPLINE.get(line.code)


def kx_group(discipline: Discipline, rules: PayerRules) -> str:
    if rules.kx_combined_pt_slp:
        return "OT" if discipline == "OT" else "PT/SLP"
    return discipline


def threshold(year: int, rules: PayerRules) -> Decimal | None:
    earlier = [(y, amount) for y, amount in rules.kx_thresholds if y <= year]
    return max(earlier)[1] if earlier else None


def _discipline(claim: ProfessionalClaim, line: ServiceLine) -> Iterator[Finding]:
    found = [m for m in line.modifiers if m in MODIFIER_DISCIPLINE]
    expected = claim.discipline or EVALUATION_DISCIPLINE.get(line.code)
    want = DISCIPLINE_MODIFIERS[expected] if expected else "GP, GO or GN"
    if not found:
        yield Finding(
            rule="modifier.discipline",
            severity="error",
            line=line.line_number,
            message=f"therapy code {line.code} has no discipline modifier",
            fix=f"add {want}",
        )
        return
    if len(set(found)) > 1:
        yield Finding(
            rule="modifier.discipline",
            severity="error",
            line=line.line_number,
            message=f"{line.code} carries more than one discipline modifier ({', '.join(found)})",
            fix=f"keep only {want}",
        )
        return
    has = MODIFIER_DISCIPLINE[found[0]]
    if claim.discipline is not None and has != claim.discipline:
        yield Finding(
            rule="modifier.discipline",
            severity="error",
            line=line.line_number,
            message=f"{line.code} carries {found[0]} but the plan of care is {claim.discipline}",
            fix=f"use {DISCIPLINE_MODIFIERS[claim.discipline]}, or bill the line under a {has} plan of care",
        )
    evaluation = EVALUATION_DISCIPLINE.get(line.code)
    if evaluation is not None and evaluation != has:
        yield Finding(
            rule="modifier.discipline",
            severity="error",
            line=line.line_number,
            message=f"{line.code} is a {evaluation} evaluation code but carries {found[0]}",
            fix=f"use {DISCIPLINE_MODIFIERS[evaluation]}, or the evaluation code of {has}",
        )


def _assistant(claim: ProfessionalClaim, line: ServiceLine) -> Iterator[Finding]:
    discipline = line_discipline(line, claim)
    present = [m for m in line.modifiers if m in ASSISTANT_MODIFIERS.values()]
    want = ASSISTANT_MODIFIERS.get(discipline) if discipline else None
    if line.rendering_is_assistant and want is not None and want not in present:
        yield Finding(
            rule="modifier.assistant",
            severity="error",
            line=line.line_number,
            message=f"{line.code} was furnished by an assistant ({discipline}) without {want}",
            fix=f"add {want} ({'physical therapist' if want == 'CQ' else 'occupational therapy'} assistant)",
        )
    for modifier in present:
        if modifier != want:
            yield Finding(
                rule="modifier.assistant",
                severity="error",
                line=line.line_number,
                message=f"{line.code} carries {modifier}, which is not the assistant modifier of {discipline}",
                fix=f"remove {modifier}" + (f" (use {want})" if want and line.rendering_is_assistant else ""),
            )
        elif not line.rendering_is_assistant:
            yield Finding(
                rule="modifier.assistant",
                severity="warning",
                line=line.line_number,
                message=f"{line.code} carries {modifier} but no assistant is recorded on the line",
                fix=f"record the assistant on the visit, or remove {modifier}",
            )


def _kx(claim: ProfessionalClaim, context: ScrubContext) -> Iterator[Finding]:
    rules = context.rules
    if not rules.kx_thresholds:
        return
    running: dict[tuple[int, str], Decimal] = {}
    before = dict(context.year_to_date)
    for line in sorted(claim.lines, key=lambda x: (x.service_date, x.line_number)):
        discipline = line_discipline(line, claim)
        if not is_therapy(line.code) or discipline is None:
            continue
        year = line.service_date.year
        limit = threshold(year, rules)
        if limit is None:
            continue
        group = kx_group(discipline, rules)
        key = (year, group)
        running[key] = running.get(key, before.get(group, Decimal(0))) + line.charge
        over = running[key] > limit
        if over and KX not in line.modifiers:
            yield Finding(
                rule="modifier.kx",
                severity="error",
                line=line.line_number,
                message=(
                    f"{group} therapy in {year} comes to {running[key]} with this line, past the "
                    f"threshold of {limit}, and {line.code} has no KX"
                ),
                fix="add KX if the services are medically necessary (documented), else do not bill them",
            )
        elif not over and KX in line.modifiers:
            yield Finding(
                rule="modifier.kx-unneeded",
                severity="warning",
                line=line.line_number,
                message=f"{line.code} carries KX but {group} therapy in {year} is {running[key]}, within {limit}",
                fix="remove KX until the threshold is passed",
            )


def check(claim: ProfessionalClaim, context: ScrubContext) -> Iterator[Finding]:
    for line in claim.lines:
        if len(line.modifiers) > 4:
            yield Finding(
                rule="modifier.count",
                severity="error",
                line=line.line_number,
                message=f"{line.code} carries {len(line.modifiers)} modifiers; a line takes at most four",
                fix="keep the four that matter (discipline, assistant, distinct service, KX)",
            )
        if is_therapy(line.code):
            yield from _discipline(claim, line)
            yield from _assistant(claim, line)
    yield from _kx(claim, context)
