"""A plan of care on file for each date of service (``plan.missing``, ``plan.not-certified``).

With :attr:`PayerRules.requires_plan_of_care`, every therapy line but an evaluation (which comes
before the plan) needs a plan of its discipline whose period covers the date of service. A plan that
the referring physician has not signed yet is a **warning**, not an error: Medicare accepts a
delayed certification (42 CFR 424.11(d)(3)) as long as it is signed later with the reason for the
delay, so the claim may go out while the hub chases the signature.
"""

from __future__ import annotations

from collections.abc import Iterator

from mappings.billing.codes import EVALUATION_DISCIPLINE, is_therapy
from mappings.billing.model import Finding, ProfessionalClaim, ScrubContext
from mappings.billing.rules.modifiers import line_discipline


def check(claim: ProfessionalClaim, context: ScrubContext) -> Iterator[Finding]:
    if not context.rules.requires_plan_of_care:
        return
    for line in claim.lines:
        if not is_therapy(line.code) or line.code in EVALUATION_DISCIPLINE:
            continue
        discipline = line_discipline(line, claim)
        day = line.service_date
        covering = [
            p for p in context.plans if p.start <= day <= p.end and (discipline is None or p.discipline == discipline)
        ]
        if not covering:
            yield Finding(
                rule="plan.missing",
                severity="error",
                line=line.line_number,
                message=f"no {discipline or 'therapy'} plan of care on file covers {day.isoformat()} ({line.code})",
                fix="record the plan of care for this period, or correct the date of service",
            )
        elif not any(p.certified for p in covering):
            yield Finding(
                rule="plan.not-certified",
                severity="warning",
                line=line.line_number,
                message=f"the plan of care covering {day.isoformat()} is not certified yet ({line.code})",
                fix="obtain the referring physician's signature; a delayed certification states why",
            )
