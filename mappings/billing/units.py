"""Timed minutes -> 15-minute units, by the payer's rule (:data:`mappings.billing.model.UnitsRule`).

* ``cms-8-minute`` (Medicare): the visit's *total* timed minutes decide the number of units
  (8-22 minutes 1 unit, 23-37 2, 38-52 3, ...; under 8 none); each code first gets its full
  15 minutes, and the units left go one at a time to the codes with the largest remaining minutes
  (ties: the code listed first). 33 minutes of 97110 + 7 of 97140 = 40 minutes, 3 units: 2 + 1.
* ``per-code`` (many commercial payers): each code alone, its minutes / 15, a remainder of 8 or
  more minutes counting one more unit; 7 minutes of a code bill nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from mappings.billing.model import UnitsRule

__all__ = ["units_by_code", "units_for_minutes"]


def units_for_minutes(minutes: int) -> int:
    """Units of ``minutes`` timed minutes: whole quarter hours, plus one for a remainder of 8 or more."""
    if minutes < 0:
        raise ValueError("minutes cannot be negative")
    whole, rest = divmod(minutes, 15)
    return whole + (1 if rest >= 8 else 0)


def units_by_code(minutes: Mapping[str, int], rule: UnitsRule) -> dict[str, int]:
    """The units of each timed code of one visit (or one date of service) from its minutes."""
    if rule == "per-code":
        return {code: units_for_minutes(m) for code, m in minutes.items()}
    total = units_for_minutes(sum(minutes.values()))
    units = {code: m // 15 for code, m in minutes.items()}
    left = total - sum(units.values())
    order = sorted(minutes, key=lambda code: (-(minutes[code] % 15), list(minutes).index(code)))
    for code in order:
        if left <= 0:
            break
        if minutes[code] % 15 == 0:
            continue
        units[code] += 1
        left -= 1
    return units
