"""How the certification page words a plan's dates and goals (a goal's baseline and target), in US
style: ``01/06/2025``, ``7 {score} (01/06/2025)``, ``Pain NRS: 2 {score}``."""

from __future__ import annotations

from datetime import date
from typing import Any

from mappings.plan_of_care.model import Goal

__all__ = ["goal_baseline_text", "goal_target_text", "us_date"]


def us_date(day: date | None) -> str:
    return day.strftime("%m/%d/%Y") if day is not None else ""


def _number(value: Any) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def goal_baseline_text(goal: Goal) -> str:
    """``7 {score} (01/06/2025)``: where the patient stood, in the target's measure."""
    if goal.baseline_quantity is not None:
        value = f"{_number(goal.baseline_quantity.value)} {goal.baseline_quantity.unit}"
    elif goal.baseline_string is not None:
        value = goal.baseline_string
    else:
        return ""
    return f"{value} ({us_date(goal.baseline_date)})" if goal.baseline_date else value


def goal_target_text(goal: Goal) -> str:
    """``Pain NRS: 2 {score}``, ``Ability to walk: community distances``, or the measure alone."""
    if goal.measure is None:
        return ""
    name = goal.measure.display or goal.measure.code
    if goal.detail_quantity is not None:
        return f"{name}: {_number(goal.detail_quantity.value)} {goal.detail_quantity.unit}"
    if goal.detail_string is not None:
        return f"{name}: {goal.detail_string}"
    return name
