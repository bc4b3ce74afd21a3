"""Weekly adherence, RTM days with data and interactive minutes from the delivered webhooks."""

from __future__ import annotations

import json
from decimal import Decimal

from mappings.hep.adherence import (
    Prescription,
    communication_months,
    last_activity,
    ordered,
    rtm_periods,
    sessions_of,
    weekly_adherence,
)
from mappings.hep.events import parse_event

from .conftest import events_of
from .scenario import NOW, PER_WEEK, START, d, session

PROGRAM = Prescription(per_week=PER_WEEK, starts_on=START)


def _weeks(patient: str) -> list[tuple[str, int, int, int, int, int]]:
    return [
        (w.label, w.sessions_done, w.sessions_prescribed, w.percent, w.exercises_done, w.exercises_skipped)
        for w in weekly_adherence(events_of(patient), PROGRAM, until=d(13))
    ]


def test_duplicates_are_ignored_and_events_applied_in_occurred_at_order() -> None:
    events = events_of("adherent")
    applied = ordered(events)
    assert len(applied) == len(events) - 1  # the retried event id once
    assert [e.occurred_at for e in applied] == sorted(e.occurred_at for e in applied)
    # session 1 sent twice under two event ids is one session; the late day-5 upload is there
    sessions = sessions_of(events)
    assert [s.session_id for s in sessions].count("ses_adherent_1") == 1
    assert [s.date for s in sessions] == [d(0), d(2), d(4), d(5), d(7), d(9), d(11)]


def test_weekly_adherence_per_iso_week_capped_at_100() -> None:
    # week 1: four sessions (one uploaded late) of three prescribed -> capped; week 2: one exercise skipped
    assert _weeks("adherent") == [("2026-W23", 4, 3, 100, 8, 0), ("2026-W24", 3, 3, 100, 5, 1)]
    assert _weeks("lapsing") == [("2026-W23", 2, 3, 67, 2, 2), ("2026-W24", 0, 3, 0, 0, 0)]
    assert _weeks("improving") == [("2026-W23", 2, 3, 67, 4, 0), ("2026-W24", 2, 3, 67, 4, 0)]
    assert _weeks("worsening") == [("2026-W23", 2, 3, 67, 4, 0), ("2026-W24", 2, 3, 67, 4, 0)]


def test_a_program_starting_mid_week_prescribes_the_prorated_sessions() -> None:
    late_start = Prescription(per_week=3, starts_on=d(4), ends_on=d(9))  # Friday to Wednesday
    weeks = weekly_adherence(events_of("adherent"), late_start, until=NOW.date())
    assert [(w.label, w.sessions_done, w.sessions_prescribed, w.percent) for w in weeks] == [
        ("2026-W23", 2, 2, 100),  # Fri-Sun: ceil(3 x 3/7) = 2
        ("2026-W24", 2, 2, 100),  # Mon-Wed
    ]


def test_rtm_days_with_data_per_30_day_period() -> None:
    (period,) = rtm_periods(events_of("adherent"), start=START, until=NOW.date())
    assert (period.index, period.start, period.end) == (1, START, d(29))
    # sessions on 7 days (the resent one counted once, the late one on its own day) + the day-13 score
    assert period.days_with_data == 8
    assert period.reaches_2_to_15_days and not period.reaches_16_days and not period.complete
    periods = rtm_periods(events_of("lapsing"), start=d(-29), until=NOW.date())
    assert [(p.index, p.days_with_data, p.complete) for p in periods] == [
        (1, 1, True),
        (2, 1, False),
    ]  # day 0 ends period 1


def test_sixteen_days_reach_the_full_period() -> None:
    events = [parse_event(json.dumps(session("adherent", d(i), i))) for i in range(16)]
    (period,) = rtm_periods(events, start=START, until=d(29))
    assert period.days_with_data == 16 and period.reaches_16_days and not period.reaches_2_to_15_days


def test_interactive_minutes_per_calendar_month() -> None:
    (june,) = communication_months(events_of("adherent"))
    assert (june.year, june.month, june.minutes, june.units_98980, june.units_98981) == (2026, 6, Decimal(27), 1, 0)
    (june,) = communication_months(events_of("worsening"))
    assert (june.minutes, june.units_98980, june.units_98981) == (Decimal(45), 1, 1)
    assert communication_months(events_of("lapsing")) == []


def test_last_activity() -> None:
    assert last_activity(events_of("lapsing")) == d(1)
    assert last_activity(events_of("adherent")) == d(13)
