"""Two weeks of HEP vendor webhooks for four scripted patients, as the vendor sends them.

The program starts on Monday 2026-06-01 (3 sessions a week, two exercises); ``NOW`` is Monday
2026-06-15 09:00 UTC. The bodies follow the vendor contract; :func:`delivered` returns them in a
delivery order with the vendor's habits: a retried event (same event id), a session re-sent under a
new event id, events out of occurred_at order, and a late upload of an earlier day.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

START = date(2026, 6, 1)
NOW = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)
PER_WEEK = 3
EXERCISES = ("sr-bridge", "sr-clamshell")
PATIENTS = ("adherent", "lapsing", "improving", "worsening")


def _at(day: date, hour: int = 18) -> str:
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=UTC).isoformat()


def body(
    event_id: str, type_: str, patient: str, data: dict[str, Any], occurred_at: str, *, program: bool = True
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": type_,
        "occurred_at": occurred_at,
        "patient": {"id": f"pat_{patient}", "external_id": f"p-{patient}"},
        "program": {"id": f"prg_{patient}", "external_id": f"cp-{patient}"} if program else None,
        "data": data,
        "vendor_extra": {"ignored": True},
    }


def session(
    patient: str,
    day: date,
    n: int,
    *,
    skipped: tuple[str, ...] = (),
    pain: int | None = None,
    exertion: int | None = None,
    uploaded: date | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "session_id": f"ses_{patient}_{n}",
        "date": day.isoformat(),
        "duration_seconds": 900,
        "exercises": [
            {
                "external_id": ex,
                "status": "skipped" if ex in skipped else "done",
                "sets_done": 0 if ex in skipped else 3,
                "reps_done": 0 if ex in skipped else 10,
            }
            for ex in EXERCISES
        ],
    }
    if pain is not None:
        data["pain"] = pain
    if exertion is not None:
        data["exertion"] = exertion
    return body(event_id or f"evt_{patient}_s{n}", "session.completed", patient, data, _at(uploaded or day))


def outcome(patient: str, n: int, measure: str, score: float, day: date) -> dict[str, Any]:
    return body(
        f"evt_{patient}_o{n}",
        "outcome.recorded",
        patient,
        {"measure": measure, "score": score, "date": day.isoformat(), "items": {"q1": 3}},
        _at(day, 19),
    )


def talk(patient: str, n: int, minutes: int, day: date, channel: str = "chat") -> dict[str, Any]:
    return body(
        f"evt_{patient}_c{n}",
        "communication.logged",
        patient,
        {"date": day.isoformat(), "minutes": minutes, "channel": channel},
        _at(day, 12),
    )


def d(offset: int) -> date:
    return START + timedelta(days=offset)


def script() -> dict[str, list[dict[str, Any]]]:
    """Each patient's events, one copy each, in occurred_at order."""
    adherent = [
        body("evt_adherent_p0", "program.assigned", "adherent", {"version": 1}, _at(d(0), 8)),
        outcome("adherent", 0, "NPRS", 6, d(0)),
        *[
            session(
                "adherent", d(day), n, pain=6 if n == 0 else 5, exertion=4, skipped=("sr-clamshell",) if n == 3 else ()
            )
            for n, day in enumerate((0, 2, 4, 7, 9, 11))
        ],
        talk("adherent", 0, 15, d(2)),
        talk("adherent", 1, 12, d(9), "call"),
        outcome("adherent", 1, "NPRS", 5, d(13)),
    ]
    lapsing = [
        outcome("lapsing", 0, "LEFS", 40, d(0)),
        session("lapsing", d(0), 0),
        session("lapsing", d(1), 1, skipped=EXERCISES),
    ]
    improving = [
        outcome("improving", 0, "ODI", 40, d(0)),
        *[session("improving", d(day), n) for n, day in enumerate((0, 3, 7, 8))],
        outcome("improving", 1, "ODI", 28, d(7)),
        outcome("improving", 2, "ODI", 18, d(13)),
    ]
    worsening = [
        outcome("worsening", 0, "QuickDASH", 30, d(0)),
        *[session("worsening", d(day), n, pain=5 + n) for n, day in enumerate((1, 5, 8, 12))],
        talk("worsening", 0, 25, d(4), "video"),
        talk("worsening", 1, 20, d(11)),
        outcome("worsening", 1, "QuickDASH", 42, d(12)),
    ]
    return {"adherent": adherent, "lapsing": lapsing, "improving": improving, "worsening": worsening}


def _shuffle_key(b: dict[str, Any]) -> str:
    return hashlib.sha256(b["id"].encode()).hexdigest()


def delivered(patient: str) -> list[bytes]:
    """The raw webhook bodies of ``patient`` in delivery order (duplicates, out of order, late)."""
    events = script()[patient]
    order = sorted(events, key=_shuffle_key)  # out of occurred_at order
    order.append(events[len(events) // 2])  # a retry: the same event id again
    if patient == "adherent":
        # the vendor re-sends session 1 under a new event id, and uploads a session done on day 5 only
        # on day 12 (late: after everything else)
        resent = session("adherent", d(2), 1, pain=5, exertion=4, event_id="evt_adherent_s1_again")
        late = session("adherent", d(5), 6, exertion=3, uploaded=d(12))
        order += [resent, late]
    return [json.dumps(b).encode() for b in order]
