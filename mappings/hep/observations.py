"""Typed HEP events (:mod:`mappings.hep.events`) -> FHIR R4 ``Observation``s.

Every Observation is ``status`` final, category ``therapy``, ``subject`` ``Patient/<patient.external_id>``,
``basedOn`` ``CarePlan/<program.external_id>`` when the event names a program, and carries an
identifier in :data:`HEP_EVENT_SYSTEM` whose value is the vendor's event id (suffixed for the
Observations one event yields beside its main one). Ids are uuid5 (:func:`deterministic_id`) over
stable inputs, so a replayed event -- or a session the vendor sends again under a new event id --
lands on the same resources.

* ``session.completed`` -> one session Observation (code :data:`SESSION`, identifier
  :data:`HEP_SESSION_SYSTEM` = session id; components exercises done / skipped (valueInteger) and
  LOINC 55411-3 Exercise duration (valueQuantity, UCUM ``s``)) that ``hasMember``:

  - one Observation per exercise (code :data:`EXERCISE`, valueCodeableConcept done|skipped,
    components sets/reps done). Separate Observations rather than components because each one is
    linked to *its* CarePlan activity: ``basedOn`` the CarePlan and ``ServiceRequest/<exercise
    external_id>`` (the hub's CarePlan activities are ServiceRequests; an external id that already
    is a ``Type/id`` reference is used as it is). ``basedOn`` is the R4 element for "fulfils this
    plan/order" (``partOf`` takes only events such as a Procedure; ``focus`` names what the
    observation is *about*, which is the patient).
  - pain: LOINC 72514-3 (NPRS 0-10), valueQuantity ``{score}``;
  - exertion: Borg CR10 RPE in the hub code system (no LOINC code found), valueQuantity ``{score}``.

* ``outcome.recorded`` -> an Observation of the measure (:data:`MEASURES`), valueQuantity
  (``{score}``); with ``previous`` given, ``interpretation`` is v3 ``B`` (better) or ``W``
  (worse) when the change from the previous score reaches the measure's MCID. ``items`` are not
  mapped (the total score is what goals and reports use).
* ``communication.logged`` -> an Observation (code :data:`COMMUNICATION`, valueQuantity minutes,
  UCUM ``min``, component channel). An Observation rather than a ``Communication``: R4
  Communication has no element for a duration, and the RTM minutes are a measured quantity the
  monthly totals add up.
* ``program.*`` and unknown events -> no Observation.

``effectiveDateTime`` is ``occurred_at`` when it falls on the event's ``date`` (in its own offset),
else the ``date`` itself (a late upload of an earlier day keeps its day).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from mappings.fhir.ids import deterministic_id
from mappings.hep.adherence import ordered
from mappings.hep.events import (
    CommunicationLogged,
    HepEvent,
    OutcomeRecorded,
    SessionCompleted,
)
from mappings.hep.measures import (
    CHANNEL,
    COMMUNICATION,
    EXERCISE,
    EXERCISE_DURATION,
    EXERCISE_STATUS,
    EXERCISES_DONE,
    EXERCISES_SKIPPED,
    EXERTION,
    HEP_EVENT_SYSTEM,
    HEP_SESSION_SYSTEM,
    HEP_SYSTEM,
    INTERPRETATION_SYSTEM,
    MEASURES,
    OBSERVATION_CATEGORY,
    PAIN,
    REPS_DONE,
    SESSION,
    SETS_DONE,
    UCUM,
    Coding,
    mcid_of,
)

_CHANNEL_DISPLAY = {"chat": "Chat", "call": "Telephone call", "video": "Video call"}


def _concept(coding: Coding) -> dict[str, Any]:
    return {"coding": [coding.as_fhir()], "text": coding.display}


def quantity(value: Decimal | int, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def activity_reference(external_id: str) -> str:
    """The reference of a CarePlan activity the vendor names by the external id the hub gave it."""
    return external_id if "/" in external_id else f"ServiceRequest/{external_id}"


def _effective(event: SessionCompleted | OutcomeRecorded | CommunicationLogged) -> str:
    if event.occurred_at.date() == event.date:
        return event.occurred_at.isoformat()
    return event.date.isoformat()


def _base(event: HepEvent, code: dict[str, Any], identifiers: list[dict[str, str]], effective: str) -> dict[str, Any]:
    primary = identifiers[0]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": deterministic_id("Observation", primary["system"], primary["value"]),
        "identifier": identifiers,
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "therapy", "display": "Therapy"}]}],
        "code": code,
        "subject": {"reference": f"Patient/{event.patient.external_id}"},
        "effectiveDateTime": effective,
    }
    if event.program is not None:
        resource["basedOn"] = [{"reference": f"CarePlan/{event.program.external_id}"}]
    return resource


def _ids(event: HepEvent, suffix: str = "", session: str | None = None) -> list[dict[str, str]]:
    ids = [{"system": HEP_EVENT_SYSTEM, "value": event.event_id + suffix}]
    if session is not None:
        ids.insert(0, {"system": HEP_SESSION_SYSTEM, "value": session + suffix})
    return ids


def _ref(resource: dict[str, Any]) -> dict[str, str]:
    return {"reference": f"Observation/{resource['id']}"}


def session_observations(event: SessionCompleted) -> list[dict[str, Any]]:
    """The session Observation first, then its members (exercises, pain, exertion)."""
    effective = _effective(event)
    sid = event.session_id
    members: list[dict[str, Any]] = []
    for ex in event.exercises:
        suffix = f"/exercise/{ex.external_id}"
        obs = _base(event, _concept(EXERCISE), _ids(event, suffix, sid), effective)
        obs["basedOn"] = [*obs.get("basedOn", []), {"reference": activity_reference(ex.external_id)}]
        obs["valueCodeableConcept"] = _concept(EXERCISE_STATUS[ex.status])
        components = [
            {"code": _concept(coding), "valueInteger": value}
            for coding, value in ((SETS_DONE, ex.sets_done), (REPS_DONE, ex.reps_done))
            if value is not None
        ]
        if components:
            obs["component"] = components
        members.append(obs)
    for coding, score, suffix in ((PAIN, event.pain, "/pain"), (EXERTION, event.exertion, "/exertion")):
        if score is not None:
            obs = _base(event, _concept(coding), _ids(event, suffix, sid), effective)
            obs["valueQuantity"] = quantity(score, "{score}")
            members.append(obs)
    session = _base(event, _concept(SESSION), _ids(event, session=sid), effective)
    session["component"] = [
        {"code": _concept(EXERCISES_DONE), "valueInteger": event.done},
        {"code": _concept(EXERCISES_SKIPPED), "valueInteger": event.skipped},
        {"code": _concept(EXERCISE_DURATION), "valueQuantity": quantity(event.duration_seconds, "s")},
    ]
    if members:
        session["hasMember"] = [_ref(m) for m in members]
    return [session, *members]


def outcome_observation(
    event: OutcomeRecorded,
    *,
    previous: Decimal | None = None,
    mcid: Mapping[str, Decimal | int | float] | None = None,
) -> dict[str, Any]:
    """The Observation of an outcome score; ``previous`` (the patient's last score of the same
    measure, if any) adds the interpretation better/worse when the change reaches the MCID."""
    measure = MEASURES[event.measure]
    obs = _base(event, measure.concept(), _ids(event), _effective(event))
    obs["valueQuantity"] = quantity(event.score, measure.unit)
    if previous is not None:
        change = measure.improvement(previous, event.score)
        threshold = mcid_of(measure, mcid)
        if change >= threshold:
            obs["interpretation"] = [{"coding": [{"system": INTERPRETATION_SYSTEM, "code": "B", "display": "Better"}]}]
        elif -change >= threshold:
            obs["interpretation"] = [{"coding": [{"system": INTERPRETATION_SYSTEM, "code": "W", "display": "Worse"}]}]
    return obs


def communication_observation(event: CommunicationLogged) -> dict[str, Any]:
    obs = _base(event, _concept(COMMUNICATION), _ids(event), _effective(event))
    obs["valueQuantity"] = quantity(event.minutes, "min")
    channel = Coding(HEP_SYSTEM, event.channel, _CHANNEL_DISPLAY[event.channel])
    obs["component"] = [{"code": _concept(CHANNEL), "valueCodeableConcept": _concept(channel)}]
    return obs


def event_observations(
    event: HepEvent,
    *,
    previous: Decimal | None = None,
    mcid: Mapping[str, Decimal | int | float] | None = None,
) -> list[dict[str, Any]]:
    """The Observations of one event (empty for program and unknown events).

    Values are ``Decimal``: serialise with :func:`mappings.fhir.jsonio.dumps`."""
    if isinstance(event, SessionCompleted):
        return session_observations(event)
    if isinstance(event, OutcomeRecorded):
        return [outcome_observation(event, previous=previous, mcid=mcid)]
    if isinstance(event, CommunicationLogged):
        return [communication_observation(event)]
    return []


def replay_observations(
    events: Iterable[HepEvent], *, mcid: Mapping[str, Decimal | int | float] | None = None
) -> dict[str, dict[str, Any]]:
    """Every Observation of ``events`` applied in ``occurred_at`` order (a repeated event id once),
    by id -- a later write of the same resource wins, as a PUT to the store would. Each outcome
    score is interpreted against the patient's previous score of its measure."""
    out: dict[str, dict[str, Any]] = {}
    last: dict[tuple[str, str], Decimal] = {}
    for event in ordered(events):
        previous = None
        if isinstance(event, OutcomeRecorded):
            previous = last.get((event.patient.external_id, event.measure))
        for obs in event_observations(event, previous=previous, mcid=mcid):
            out[obs["id"]] = obs
        if isinstance(event, OutcomeRecorded):
            last[(event.patient.external_id, event.measure)] = event.score
    return out
