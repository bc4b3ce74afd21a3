"""HEP vendor webhook bodies (the HEP vendor contract shared with ``connectors.hep``) -> typed events.

Reading is liberal: unknown fields are ignored; an unknown ``type`` is not an error but an
:class:`UnknownEvent` (the caller records it and moves on); values that break the contract raise
:class:`HepEventError`, whose :class:`Problem` list names each bad value by its JSON path
(``$.data.exercises[2].status``) and the rule it breaks, never the value itself (it may be PHI).

Event types and what they become:

* ``session.completed`` -> :class:`SessionCompleted`
* ``outcome.recorded`` -> :class:`OutcomeRecorded`
* ``communication.logged`` -> :class:`CommunicationLogged`
* ``program.assigned|updated|ended|accessed`` -> :class:`ProgramEvent`

The FHIR form of an event is :func:`mappings.hep.observations.event_observations`.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from mappings.fhir.jsonio import InvalidJson, loads
from mappings.hep.measures import MEASURES, MeasureKey

ExerciseStatus = Literal["done", "skipped"]
Channel = Literal["chat", "call", "video"]
PROGRAM_TYPES = ("program.assigned", "program.updated", "program.ended", "program.accessed")
KNOWN_TYPES = ("session.completed", "outcome.recorded", "communication.logged", *PROGRAM_TYPES)
_CHANNELS: dict[str, Channel] = {"chat": "chat", "call": "call", "video": "video"}


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}"


class HepEventError(ValueError):
    """A webhook body that breaks the contract; ``problems`` names every bad value by JSON path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True)
class PatientRef:
    id: str  # the vendor's patient id (pat_...)
    external_id: str  # the hub's Patient id


@dataclass(frozen=True, slots=True)
class ProgramRef:
    id: str  # the vendor's program id (prg_...)
    external_id: str  # the hub's CarePlan id


@dataclass(frozen=True, slots=True)
class _Envelope:
    event_id: str
    type: str
    occurred_at: datetime
    patient: PatientRef
    program: ProgramRef | None


@dataclass(frozen=True, slots=True)
class ExerciseResult:
    external_id: str  # the CarePlan activity id the hub sent as the exercise's external_id
    status: ExerciseStatus
    sets_done: int | None = None
    reps_done: int | None = None


@dataclass(frozen=True, slots=True)
class SessionCompleted(_Envelope):
    session_id: str
    date: date
    duration_seconds: int
    exercises: tuple[ExerciseResult, ...]
    pain: Decimal | None = None
    exertion: Decimal | None = None

    @property
    def done(self) -> int:
        return sum(1 for e in self.exercises if e.status == "done")

    @property
    def skipped(self) -> int:
        return sum(1 for e in self.exercises if e.status == "skipped")


@dataclass(frozen=True, slots=True)
class OutcomeRecorded(_Envelope):
    measure: MeasureKey
    score: Decimal
    date: date
    items: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommunicationLogged(_Envelope):
    date: date
    minutes: Decimal
    channel: Channel


@dataclass(frozen=True, slots=True)
class ProgramEvent(_Envelope):
    version: int | None


@dataclass(frozen=True, slots=True)
class UnknownEvent(_Envelope):
    """An event type this hub does not know: reported, not fatal."""


HepEvent = SessionCompleted | OutcomeRecorded | CommunicationLogged | ProgramEvent | UnknownEvent


class _Reader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def bad(self, path: str, rule: str) -> None:
        self.problems.append(Problem(path, rule))

    def obj(self, node: Any, path: str, *, optional: bool = False) -> dict[str, Any] | None:
        if node is None and optional:
            return None
        if not isinstance(node, dict):
            self.bad(path, "must be a JSON object")
            return None
        return node

    def text(self, node: dict[str, Any], key: str, path: str) -> str:
        value = node.get(key)
        if not isinstance(value, str) or not value.strip():
            self.bad(f"{path}.{key}", "must be a non-empty string")
            return ""
        return value.strip()

    def number(
        self,
        node: dict[str, Any],
        key: str,
        path: str,
        *,
        low: Decimal | None = None,
        high: Decimal | None = None,
        optional: bool = False,
    ) -> Decimal | None:
        value = node.get(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            self.bad(f"{path}.{key}", "must be a number")
            return None
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            self.bad(f"{path}.{key}", "must be a number")
            return None
        if not number.is_finite():
            self.bad(f"{path}.{key}", "must be a finite number")
            return None
        if (low is not None and number < low) or (high is not None and number > high):
            self.bad(f"{path}.{key}", f"must be between {low} and {high}" if high is not None else f"must be >= {low}")
            return None
        return number

    def integer(self, node: dict[str, Any], key: str, path: str, *, optional: bool = False) -> int | None:
        value = node.get(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.bad(f"{path}.{key}", "must be a whole number >= 0")
            return None
        return value

    def day(self, node: dict[str, Any], key: str, path: str) -> date | None:
        value = node.get(key)
        try:
            if isinstance(value, str) and len(value) == 10:
                return date.fromisoformat(value)
        except ValueError:
            pass
        self.bad(f"{path}.{key}", "must be a date YYYY-MM-DD")
        return None

    def instant(self, node: dict[str, Any], key: str, path: str) -> datetime | None:
        value = node.get(key)
        try:
            if isinstance(value, str):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.utcoffset() is not None:
                    return parsed
        except ValueError:
            pass
        self.bad(f"{path}.{key}", "must be an ISO 8601 date-time with a UTC offset")
        return None


def _exercises(r: _Reader, node: Any, path: str) -> tuple[ExerciseResult, ...]:
    if not isinstance(node, list):
        r.bad(path, "must be a JSON array")
        return ()
    out: list[ExerciseResult] = []
    for index, item in enumerate(node):
        where = f"{path}[{index}]"
        ex = r.obj(item, where)
        if ex is None:
            continue
        external_id = r.text(ex, "external_id", where)
        status = ex.get("status")
        if status not in ("done", "skipped"):
            r.bad(f"{where}.status", "must be one of done, skipped")
            continue
        sets = r.integer(ex, "sets_done", where, optional=True)
        reps = r.integer(ex, "reps_done", where, optional=True)
        if external_id:
            out.append(ExerciseResult(external_id, "done" if status == "done" else "skipped", sets, reps))
    return tuple(out)


def parse_event(body: bytes | str | dict[str, Any]) -> HepEvent:
    """The typed event of a webhook body (raw bytes/text, or JSON already parsed).

    Raises :class:`HepEventError` naming every value that breaks the contract (all found at once)."""
    if isinstance(body, bytes | str):
        try:
            body = loads(body, exact_numbers=True)
        except InvalidJson as exc:
            raise HepEventError([Problem("$", f"is not JSON ({exc})")]) from None
    r = _Reader()
    root = r.obj(body, "$")
    if root is None:
        raise HepEventError(r.problems)
    event_id = r.text(root, "id", "$")
    type_ = r.text(root, "type", "$")
    occurred_at = r.instant(root, "occurred_at", "$")
    patient_node = r.obj(root.get("patient"), "$.patient")
    patient = (
        PatientRef(r.text(patient_node, "id", "$.patient"), r.text(patient_node, "external_id", "$.patient"))
        if patient_node is not None
        else None
    )
    program_node = r.obj(root.get("program"), "$.program", optional=True)
    program = (
        ProgramRef(r.text(program_node, "id", "$.program"), r.text(program_node, "external_id", "$.program"))
        if program_node is not None
        else None
    )
    known = type_ in KNOWN_TYPES
    # the data of an unknown type is not read: whatever it holds, the event is reported, not refused
    data = r.obj(root.get("data"), "$.data") if known else {}
    if r.problems or occurred_at is None or patient is None or data is None:
        raise HepEventError(r.problems)
    envelope = {"event_id": event_id, "type": type_, "occurred_at": occurred_at, "patient": patient, "program": program}
    event = _typed(r, type_, data, envelope)
    if r.problems or event is None:
        raise HepEventError(r.problems)
    return event


def _typed(r: _Reader, type_: str, data: dict[str, Any], envelope: dict[str, Any]) -> HepEvent | None:
    p = "$.data"
    if type_ == "session.completed":
        session_id = r.text(data, "session_id", p)
        day = r.day(data, "date", p)
        duration = r.integer(data, "duration_seconds", p)
        exercises = _exercises(r, data.get("exercises"), f"{p}.exercises")
        pain = r.number(data, "pain", p, low=Decimal(0), high=Decimal(10), optional=True)
        exertion = r.number(data, "exertion", p, low=Decimal(0), high=Decimal(10), optional=True)
        if day is None or duration is None:
            return None
        if envelope["program"] is None:
            r.bad("$.program", "a session belongs to a program: must be an object")
            return None
        return SessionCompleted(
            **envelope,
            session_id=session_id,
            date=day,
            duration_seconds=duration,
            exercises=exercises,
            pain=pain,
            exertion=exertion,
        )
    if type_ == "outcome.recorded":
        key = data.get("measure")
        measure = MEASURES.get(key) if isinstance(key, str) else None
        if measure is None:
            r.bad(f"{p}.measure", f"must be one of {', '.join(MEASURES)}")
        score = r.number(
            data,
            "score",
            p,
            low=measure.low if measure else None,
            high=measure.high if measure else None,
        )
        day = r.day(data, "date", p)
        items = data.get("items")
        if measure is None or score is None or day is None:
            return None
        return OutcomeRecorded(
            **envelope,
            measure=measure.key,
            score=score,
            date=day,
            items=items if isinstance(items, dict) else {},
        )
    if type_ == "communication.logged":
        day = r.day(data, "date", p)
        minutes = r.number(data, "minutes", p, low=Decimal(0))
        channel = data.get("channel")
        if not isinstance(channel, str) or channel not in _CHANNELS:
            r.bad(f"{p}.channel", "must be one of chat, call, video")
            return None
        if day is None or minutes is None:
            return None
        return CommunicationLogged(**envelope, date=day, minutes=minutes, channel=_CHANNELS[channel])
    if type_ in PROGRAM_TYPES:
        return ProgramEvent(**envelope, version=r.integer(data, "version", p, optional=True))
    return UnknownEvent(**envelope)
