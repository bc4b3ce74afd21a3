"""How often an exercise is done, from a FHIR ``Timing`` (``scheduledTiming``/``occurrenceTiming``).

``repeat.frequency`` per ``period`` ``periodUnit``: per day (``d``, ``h``) gives ``per_day`` and, when
no ``dayOfWeek`` says otherwise, every day of the week; per week (``wk``) gives ``days_per_week``;
``dayOfWeek`` counts the days, ``timeOfDay``/``when`` the times a day. Pure.
"""

from __future__ import annotations

from typing import Any

__all__ = ["frequency_of"]


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def frequency_of(timing: object) -> tuple[int | None, int | None]:
    """(per_day, days_per_week) of ``timing``; (None, None) when it says neither."""
    repeat: Any = timing.get("repeat") if isinstance(timing, dict) else None
    if not isinstance(repeat, dict):
        return None, None
    days = repeat.get("dayOfWeek")
    days_per_week = len(set(days)) if isinstance(days, list) and days else None
    times = [t for key in ("timeOfDay", "when") for t in (repeat.get(key) or []) if isinstance(t, str)]
    per_day: int | None = len(times) or None
    frequency = _number(repeat.get("frequency")) or (1.0 if repeat.get("period") is not None else None)
    period = _number(repeat.get("period")) or 1.0
    unit = repeat.get("periodUnit")
    if frequency is not None:
        if unit == "h":
            per_day = per_day or max(1, round(frequency * 24 / period))
            days_per_week = days_per_week or 7
        elif unit == "d":
            if period == 1:
                per_day = per_day or round(frequency)
                days_per_week = days_per_week or 7
            else:
                per_day = per_day or 1
                days_per_week = days_per_week or max(1, min(7, round(7 * frequency / period)))
        elif unit == "wk":
            days_per_week = days_per_week or max(1, min(7, round(frequency / period)))
    return per_day, days_per_week
