"""Units against the documented minutes (``units.cms-8-minute`` / ``units.per-code``) and untimed
codes billed as one unit (``units.untimed``).

Timed lines are grouped by date of service (the CMS rule counts a day's timed minutes together);
lines without documented minutes are not checked. Several lines of one code on one day count as one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from mappings.billing.codes import UNTIMED_CODES, is_timed
from mappings.billing.model import Finding, ProfessionalClaim, ScrubContext, ServiceLine
from mappings.billing.units import units_by_code


def check(claim: ProfessionalClaim, context: ScrubContext) -> Iterator[Finding]:
    rule = context.rules.units_rule
    by_day: dict[date, list[ServiceLine]] = {}
    for line in claim.lines:
        if line.code in UNTIMED_CODES and line.units != 1:
            yield Finding(
                rule="units.untimed",
                severity="error",
                line=line.line_number,
                message=f"{line.code} is an untimed (service-based) code billed as {line.units} units",
                fix="bill untimed codes as 1 unit per visit",
            )
        elif is_timed(line.code) and line.minutes is not None:
            by_day.setdefault(line.service_date, []).append(line)
    for day_lines in by_day.values():
        minutes: dict[str, int] = {}
        billed: dict[str, Decimal] = {}
        for line in day_lines:
            minutes[line.code] = minutes.get(line.code, 0) + (line.minutes or 0)
            billed[line.code] = billed.get(line.code, Decimal(0)) + line.units
        expected = units_by_code(minutes, rule)
        total = sum(minutes.values())
        reported: set[str] = set()
        for line in day_lines:
            if line.code in reported or billed[line.code] == expected[line.code]:
                continue
            reported.add(line.code)
            yield Finding(
                rule=f"units.{rule}",
                severity="error",
                line=line.line_number,
                message=(
                    f"{line.code} is billed as {billed[line.code]} units for {minutes[line.code]} minutes "
                    f"({total} timed minutes that day); the {rule} rule gives {expected[line.code]}"
                ),
                fix=f"bill {expected[line.code]} units of {line.code}, or correct the documented minutes",
            )
