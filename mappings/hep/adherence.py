"""Adherence and remote therapeutic monitoring (RTM) counts from typed HEP events.

Events are applied in ``occurred_at`` order (ties by event id) and a repeated event id is ignored
(:func:`ordered`); a session the vendor re-sends under a new event id counts once (by
``session_id``, the later event wins). Everything is bucketed by the *data* date the event carries
(``data.date``), so a late event lands in the week, period or month it belongs to.

* **Weekly adherence** (:func:`weekly_adherence`): per ISO week from the week of the program start
  to the week of ``until``, sessions done / sessions prescribed, capped at 100 %. Prescribed is the
  program's ``per_week`` prorated to the program days up to ``until`` that fall in the week
  (rounded up, at least one: a program starting on a Friday prescribes ceil(3 x 3/7) = 2 sessions that week). Exercises
  done and skipped are counted beside it.
* **RTM days with data** (:func:`rtm_periods`): consecutive 30-day periods from the start of
  monitoring (day 1 = ``start``); a day has data when the patient reported something that day (a
  completed session, with its pain and exertion ratings, or an outcome score). Interactive
  communication is treatment management, not device data, and does not count. Each period says
  whether it reaches 16 days (what CPT 98976/98977 device supply has always required) and whether it
  has 2 to 15 days (the short-period device supply codes added to CPT in 2026); which code to bill
  stays the billing side's decision.
* **Interactive communication minutes** (:func:`communication_months`): total minutes per calendar
  month, with the units they support: 98980 once the month reaches 20 minutes, 98981 for each
  further *full* 20 minutes.

Pure: no I/O, no clock (``until`` is passed in).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from mappings.hep.events import CommunicationLogged, HepEvent, OutcomeRecorded, ProgramEvent, SessionCompleted

RTM_PERIOD_DAYS = 30
RTM_FULL_DAYS = 16
RTM_SHORT_MIN_DAYS = 2
COMMUNICATION_UNIT_MINUTES = 20


@dataclass(frozen=True, slots=True)
class Prescription:
    """What the program asks of the patient: ``per_week`` sessions from ``starts_on`` to ``ends_on``."""

    per_week: int
    starts_on: date
    ends_on: date | None = None


@dataclass(frozen=True, slots=True)
class WeekAdherence:
    year: int  # ISO year
    week: int  # ISO week number
    start: date  # the Monday
    sessions_done: int
    sessions_prescribed: int
    percent: int  # 0-100, rounded half up, capped at 100
    exercises_done: int
    exercises_skipped: int

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.week:02d}"


@dataclass(frozen=True, slots=True)
class RtmPeriod:
    index: int  # 1 for the first 30 days of monitoring
    start: date
    end: date  # inclusive
    days_with_data: int
    complete: bool  # the period has ended by ``until``

    @property
    def reaches_16_days(self) -> bool:
        return self.days_with_data >= RTM_FULL_DAYS

    @property
    def reaches_2_to_15_days(self) -> bool:
        return RTM_SHORT_MIN_DAYS <= self.days_with_data < RTM_FULL_DAYS


@dataclass(frozen=True, slots=True)
class CommunicationMonth:
    year: int
    month: int
    minutes: Decimal
    units_98980: int  # 0 or 1
    units_98981: int


def ordered(events: Iterable[HepEvent]) -> list[HepEvent]:
    """The events in ``occurred_at`` order, each event id once (the first copy is kept)."""
    seen: set[str] = set()
    unique: list[HepEvent] = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            unique.append(event)
    return sorted(unique, key=lambda e: (e.occurred_at, e.event_id))


def sessions_of(events: Iterable[HepEvent]) -> list[SessionCompleted]:
    """The distinct completed sessions (by session id, the last applied wins), in date order."""
    latest: dict[str, SessionCompleted] = {}
    for event in ordered(events):
        if isinstance(event, SessionCompleted):
            latest[event.session_id] = event
    return sorted(latest.values(), key=lambda s: (s.date, s.occurred_at, s.session_id))


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def weekly_adherence(events: Iterable[HepEvent], prescription: Prescription, *, until: date) -> list[WeekAdherence]:
    """One row per ISO week from the program start to ``until`` (or the program end, if earlier)."""
    last = min(until, prescription.ends_on) if prescription.ends_on else until
    if last < prescription.starts_on or prescription.per_week < 1:
        return []
    sessions = [s for s in sessions_of(events) if prescription.starts_on <= s.date <= last]
    weeks: list[WeekAdherence] = []
    monday = _monday(prescription.starts_on)
    while monday <= last:
        sunday = monday + timedelta(days=6)
        in_program = (min(sunday, last) - max(monday, prescription.starts_on)).days + 1
        prescribed = max(1, math.ceil(prescription.per_week * in_program / 7))
        week = [s for s in sessions if monday <= s.date <= sunday]
        done = len(week)
        percent = min(100, math.floor(100 * done / prescribed + 0.5))
        year, number, _ = monday.isocalendar()
        weeks.append(
            WeekAdherence(
                year,
                number,
                monday,
                done,
                prescribed,
                percent,
                sum(s.done for s in week),
                sum(s.skipped for s in week),
            )
        )
        monday += timedelta(days=7)
    return weeks


def data_days(events: Iterable[HepEvent]) -> set[date]:
    """The days on which the patient reported data (sessions, outcome scores)."""
    days = {s.date for s in sessions_of(events)}
    days.update(e.date for e in ordered(events) if isinstance(e, OutcomeRecorded))
    return days


def rtm_periods(events: Iterable[HepEvent], *, start: date, until: date) -> list[RtmPeriod]:
    """The 30-day periods from ``start`` (monitoring day 1) to the one that holds ``until``."""
    events = list(events)
    days = data_days(events)
    periods: list[RtmPeriod] = []
    first = start
    index = 1
    while first <= until:
        end = first + timedelta(days=RTM_PERIOD_DAYS - 1)
        count = sum(1 for d in days if first <= d <= end)
        periods.append(RtmPeriod(index, first, end, count, end < until))
        first = end + timedelta(days=1)
        index += 1
    return periods


def communication_months(events: Iterable[HepEvent]) -> list[CommunicationMonth]:
    """Interactive communication minutes per calendar month (months with any), oldest first."""
    totals: dict[tuple[int, int], Decimal] = {}
    for event in ordered(events):
        if isinstance(event, CommunicationLogged):
            key = (event.date.year, event.date.month)
            totals[key] = totals.get(key, Decimal(0)) + event.minutes
    months: list[CommunicationMonth] = []
    for (year, month), minutes in sorted(totals.items()):
        units = int(minutes // COMMUNICATION_UNIT_MINUTES)
        months.append(CommunicationMonth(year, month, minutes, min(units, 1), max(units - 1, 0)))
    return months


def last_activity(events: Iterable[HepEvent]) -> date | None:
    """The latest day with HEP activity: a session, an outcome score or a program access."""
    days: list[date] = []
    for event in ordered(events):
        if isinstance(event, SessionCompleted | OutcomeRecorded):
            days.append(event.date)
        elif isinstance(event, ProgramEvent) and event.type == "program.accessed":
            days.append(event.occurred_at.date())
    return max(days) if days else None
