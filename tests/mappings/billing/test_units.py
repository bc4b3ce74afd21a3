"""15-minute units: the CMS 8-minute rule over a visit's timed minutes vs counting each code alone."""

from __future__ import annotations

import pytest

from mappings.billing.units import units_by_code, units_for_minutes


@pytest.mark.parametrize(
    ("minutes", "units"),
    [(0, 0), (7, 0), (8, 1), (22, 1), (23, 2), (37, 2), (38, 3), (52, 3), (53, 4), (67, 4), (68, 5), (82, 5)],
)
def test_the_cms_table_of_minutes_to_units(minutes: int, units: int) -> None:
    assert units_for_minutes(minutes) == units
    assert units_by_code({"97110": minutes}, "cms-8-minute") == {"97110": units}


def test_cms_rule_gives_the_unit_left_to_the_code_with_the_largest_remainder() -> None:
    # 33 min 97110 + 7 min 97140 = 40 min -> 3 units: 97110 two full units, 97140 the third
    assert units_by_code({"97110": 33, "97140": 7}, "cms-8-minute") == {"97110": 2, "97140": 1}
    # 24 min 97112 + 23 min 97110 = 47 min -> 3 units: the third goes to 97112 (9 left over, not 8)
    assert units_by_code({"97110": 23, "97112": 24}, "cms-8-minute") == {"97110": 1, "97112": 2}


def test_cms_rule_bills_small_codes_together_that_alone_bill_nothing() -> None:
    # 7 + 7 = 14 min -> 1 unit, to the first code listed on a tie; per code both are below 8 minutes
    assert units_by_code({"97110": 7, "97140": 7}, "cms-8-minute") == {"97110": 1, "97140": 0}
    assert units_by_code({"97110": 7, "97140": 7}, "per-code") == {"97110": 0, "97140": 0}
    # three codes of 14 minutes: 42 min -> 3 units, one each
    assert units_by_code({"97110": 14, "97112": 14, "97140": 14}, "cms-8-minute") == {
        "97110": 1,
        "97112": 1,
        "97140": 1,
    }


def test_per_code_rule_counts_each_code_alone() -> None:
    assert units_by_code({"97110": 33, "97140": 7}, "per-code") == {"97110": 2, "97140": 0}
    assert units_by_code({"97110": 24, "97112": 23}, "per-code") == {"97110": 2, "97112": 2}


def test_cms_rule_never_bills_more_units_than_the_total_minutes_allow() -> None:
    for a in range(0, 60, 3):
        for b in range(0, 60, 4):
            units = units_by_code({"97110": a, "97140": b}, "cms-8-minute")
            assert sum(units.values()) == units_for_minutes(a + b)
            assert all(units[c] >= m // 15 for c, m in (("97110", a), ("97140", b)))


def test_negative_minutes_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        units_for_minutes(-1)
