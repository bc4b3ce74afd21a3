"""Scripted patients of the sandbox HEP vendor: N days of webhooks with real-looking timing.

Four profiles over ``days`` days ending yesterday (in the patient's own time zone):

* ``adherent`` -- a session most days, every exercise done, pain easing, a little chat;
* ``lapsing`` -- sessions for the first days, then nothing (a lapse alert is due);
* ``improving`` -- sessions most days, some exercises skipped, LEFS rising past its MCID (9 points)
  and pain falling, a call and a chat with the therapist;
* (any profile) a program that ends inside the window stops there with ``program.ended``;
* ``worsening`` -- fewer sessions, more skipped, pain and exertion rising, ODI rising past its
  MCID (10 points: a higher ODI is worse), a call.

Each event (contract body: ``id``, ``type``, ``occurred_at``, ``patient``, ``program``, ``data``) gets a
send time: seconds after it happened, sometimes minutes (so that it overtakes or is overtaken:
out of order), sometimes days (late), and some are sent twice (the vendor's retry: the same event
id). :func:`build_script` returns the copies in send order; :func:`fast_order` is the same copies
shuffled (what a fast run sends at once). Everything is drawn from ``random.Random(seed)``: the
same patients, seed, days and ``now`` give the same script, ids and all.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

__all__ = ["PROFILES", "ScriptedEvent", "ScriptedExercise", "ScriptedPatient", "build_script", "event_body",
           "fast_order", "out_of_order_pairs"]

PROFILES = ("adherent", "lapsing", "improving", "worsening")


@dataclass(frozen=True)
class ScriptedExercise:
    external_id: str
    sets: int | None = None
    reps: int | None = None


@dataclass(frozen=True)
class ScriptedPatient:
    profile: str
    patient_id: str
    patient_external_id: str = field(repr=False)
    program_id: str
    program_external_id: str
    exercises: tuple[ScriptedExercise, ...]
    version: int = 1
    utc_offset_minutes: int = 0
    #: the program's last day: no sessions after it, and ``program.ended`` that evening
    ends_on: date | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError("profile must be one of " + ", ".join(PROFILES))


@dataclass(frozen=True)
class ScriptedEvent:
    """One webhook to send: ``event`` (the body) at ``sent_at``; ``duplicate`` for a resent copy."""

    event: dict[str, Any] = field(repr=False)
    sent_at: datetime
    duplicate: bool = False
    late: bool = False

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def type(self) -> str:
        return str(self.event["type"])

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromisoformat(self.event["occurred_at"])


def event_body(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode("utf-8")


class _Writer:
    def __init__(self, rng: random.Random, seed: int, patient: ScriptedPatient, start: date) -> None:
        self.rng, self.seed, self.patient, self.start = rng, seed, patient, start
        self.zone = timezone(timedelta(minutes=patient.utc_offset_minutes))
        self.events: list[dict[str, Any]] = []

    def _id(self, prefix: str, *parts: object) -> str:
        digest = hashlib.sha256("|".join(map(str, (self.seed, self.patient.program_id, *parts))).encode())
        return f"{prefix}_{digest.hexdigest()[:20]}"

    def at(self, day: int, hour: int, minute: int) -> datetime:
        return datetime.combine(self.start + timedelta(days=day), time(hour, minute), self.zone)

    def emit(self, kind: str, when: datetime, data: dict[str, Any]) -> None:
        p = self.patient
        self.events.append({
            "id": self._id("evt", kind, when.isoformat(), len(self.events)), "type": kind,
            "occurred_at": when.isoformat(),
            "patient": {"id": p.patient_id, "external_id": p.patient_external_id},
            "program": {"id": p.program_id, "external_id": p.program_external_id}, "data": data})

    def session(self, day: int, *, skip_rate: float, pain: int, exertion: int) -> datetime:
        when = self.at(day, self.rng.randint(7, 19), self.rng.randint(0, 59))
        done: list[dict[str, Any]] = []
        for exercise in self.patient.exercises:
            if self.rng.random() < skip_rate:
                done.append({"external_id": exercise.external_id, "status": "skipped"})
                continue
            item: dict[str, Any] = {"external_id": exercise.external_id, "status": "done"}
            if exercise.sets:
                item["sets_done"] = exercise.sets
            if exercise.reps:
                item["reps_done"] = exercise.reps
            done.append(item)
        data = {"session_id": self._id("ses", day), "date": when.date().isoformat(),
                "duration_seconds": self.rng.randint(6, 25) * 60, "exercises": done,
                "pain": max(0, min(10, pain)), "exertion": max(0, min(10, exertion))}
        self.emit("session.completed", when, data)
        return when

    def outcome(self, day: int, measure: str, score: float) -> None:
        when = self.at(day, 20, self.rng.randint(0, 50))
        self.emit("outcome.recorded", when, {"measure": measure, "score": score, "date": when.date().isoformat()})

    def talk(self, day: int, channel: str, minutes: int) -> None:
        when = self.at(day, self.rng.randint(9, 16), self.rng.randint(0, 59))
        self.emit("communication.logged", when, {"date": when.date().isoformat(), "minutes": minutes,
                                                 "channel": channel})


def _patient_events(writer: _Writer, days: int) -> list[dict[str, Any]]:
    rng, profile = writer.rng, writer.patient.profile
    writer.emit("program.assigned", writer.at(0, 8, rng.randint(0, 30)), {"version": 1})
    checks = sorted({0, *range(7, days, 7), days - 1})
    accessed = False
    last = days
    if writer.patient.ends_on is not None and writer.start <= writer.patient.ends_on:
        last = min(days, (writer.patient.ends_on - writer.start).days + 1)
    for day in range(last):
        share = day / max(1, days - 1)
        if profile == "adherent":
            attends, skip, pain, effort = rng.random() < 0.9, 0.03, round(5 - 3 * share), rng.randint(3, 5)
        elif profile == "lapsing":
            attends, skip, pain, effort = day < min(5, days) and rng.random() < 0.85, 0.1, 4, rng.randint(3, 5)
        elif profile == "improving":
            attends, skip, pain, effort = rng.random() < 0.75, 0.15, round(6 - 3 * share), rng.randint(4, 6)
        else:
            attends, skip, pain, effort = rng.random() < 0.6, 0.3, round(4 + 3 * share), rng.randint(6, 8)
        if day == 0:
            attends = True
        if attends:
            when = writer.session(day, skip_rate=skip, pain=pain, exertion=effort)
            if not accessed or rng.random() < 0.2:
                writer.emit("program.accessed", when - timedelta(minutes=rng.randint(1, 5)),
                            {"version": writer.patient.version if day == days - 1 else 1})
                accessed = True
        if day in checks and (profile != "lapsing" or day == 0):
            if profile == "worsening":
                writer.outcome(day, "ODI", 30 + round(14 * share))
            elif profile == "improving":
                writer.outcome(day, "LEFS", 38 + round(12 * share))
            elif profile == "adherent":
                writer.outcome(day, "LEFS", 52 + round(5 * share))
            else:
                writer.outcome(day, "LEFS", 44)
    talks = {"adherent": [(2, "chat", 6), (9, "video", 12)], "improving": [(5, "call", 11), (12, "chat", 8)],
             "worsening": [(10, "call", 15)], "lapsing": [(1, "chat", 4)]}[profile]
    for day, channel, minutes in talks:
        if day < days:
            writer.talk(day, channel, minutes)
    if last < days or (writer.patient.ends_on is not None and last == days
                       and writer.patient.ends_on == writer.start + timedelta(days=days - 1)):
        writer.emit("program.ended", writer.at(last - 1, 23, 30), {"version": writer.patient.version})
    if writer.patient.version > 1:
        writer.emit("program.updated", writer.at(days - 1, 7, 5), {"version": writer.patient.version})
    return writer.events


def build_script(patients: Sequence[ScriptedPatient], *, seed: int, days: int, now: datetime) -> list[ScriptedEvent]:
    """Every patient's events over the ``days`` days before ``now`` (aware), as sent, in send order."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not 1 <= days <= 90:
        raise ValueError("days must be from 1 to 90")
    rng = random.Random(seed)
    copies: list[ScriptedEvent] = []
    latest = now - timedelta(seconds=30)
    for patient in patients:
        zone = timezone(timedelta(minutes=patient.utc_offset_minutes))
        start = now.astimezone(zone).date() - timedelta(days=days)
        events = _patient_events(_Writer(rng, seed, patient, start), days)
        for event in events:
            happened = datetime.fromisoformat(event["occurred_at"])
            draw = rng.random()
            late = draw < 0.08
            if late:
                sent = happened + timedelta(days=rng.randint(1, 3), minutes=rng.randint(0, 600))
            elif draw < 0.25:
                sent = happened + timedelta(seconds=rng.randint(120, 3600))  # a slow queue: overtaken
            else:
                sent = happened + timedelta(seconds=rng.randint(1, 20))
            sent = min(sent, latest)
            late = late and sent - happened >= timedelta(days=1)
            copies.append(ScriptedEvent(event, sent, late=late))
            if rng.random() < 0.1:
                copies.append(ScriptedEvent(event, min(sent + timedelta(seconds=rng.randint(30, 900)), latest),
                                            duplicate=True, late=late))
    _ensure_faults(copies, rng, latest)
    copies.sort(key=lambda c: (c.sent_at, c.id, c.duplicate))
    return copies


def _ensure_faults(copies: list[ScriptedEvent], rng: random.Random, latest: datetime) -> None:
    """At least one duplicate and one late event whenever the script holds a few events."""
    originals = [i for i, c in enumerate(copies) if not c.duplicate]
    if len(originals) < 3:
        return
    if not any(c.duplicate for c in copies):
        first = copies[originals[len(originals) // 2]]
        copies.append(replace(first, sent_at=min(first.sent_at + timedelta(seconds=45), latest), duplicate=True))
    if not any(c.late for c in copies):
        early = min(originals, key=lambda i: copies[i].occurred_at)
        copies[early] = replace(copies[early], sent_at=latest - timedelta(seconds=rng.randint(0, 20)), late=True)


def fast_order(script: Sequence[ScriptedEvent], *, seed: int) -> list[ScriptedEvent]:
    """The same copies (duplicates included) in a seeded shuffled order: a fast run sends all at once."""
    shuffled = list(script)
    random.Random(seed + 7).shuffle(shuffled)
    return shuffled


def out_of_order_pairs(sent: Sequence[ScriptedEvent]) -> int:
    """How many adjacent sends of the same patient go back in event time (a measure of disorder)."""
    last: dict[str, datetime] = {}
    count = 0
    for copy in sent:
        key = str(copy.event["patient"]["id"])
        when = copy.occurred_at.astimezone(UTC)
        if key in last and when < last[key]:
            count += 1
        last[key] = max(when, last.get(key, when))
    return count
