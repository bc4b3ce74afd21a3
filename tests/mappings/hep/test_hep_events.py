"""Webhook bodies -> typed events -> R4 Observations linked to the patient, the plan and the activity."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from mappings.hep.events import (
    CommunicationLogged,
    HepEventError,
    OutcomeRecorded,
    ProgramEvent,
    SessionCompleted,
    UnknownEvent,
    parse_event,
)
from mappings.hep.measures import HEP_EVENT_SYSTEM, HEP_SESSION_SYSTEM, LOINC
from mappings.hep.observations import event_observations

from .conftest import assert_valid, events_of, observations_of
from .scenario import body, d, outcome, session


def _codes(obs: dict[str, object]) -> set[tuple[str, str]]:
    code = obs["code"]
    assert isinstance(code, dict)
    return {(c["system"], c["code"]) for c in code["coding"]}


def test_every_scripted_event_parses_and_every_observation_is_valid_r4() -> None:
    for patient in ("adherent", "lapsing", "improving", "worsening"):
        observations = observations_of(events_of(patient))
        assert observations
        for obs in observations.values():
            assert_valid(obs)
            assert obs["subject"] == {"reference": f"Patient/p-{patient}"}
            assert {"reference": f"CarePlan/cp-{patient}"} in obs["basedOn"]
            assert any(i["system"] == HEP_EVENT_SYSTEM for i in obs["identifier"])


def test_session_yields_a_session_observation_with_members_per_exercise_pain_and_exertion() -> None:
    event = parse_event(json.dumps(session("adherent", d(7), 3, pain=3, exertion=4, skipped=("sr-clamshell",))))
    assert isinstance(event, SessionCompleted)
    main, *members = event_observations(event)
    assert ("https://therapy-hub.example/CodeSystem/hep", "exercise-session") in _codes(main)
    assert main["identifier"][0] == {"system": HEP_SESSION_SYSTEM, "value": "ses_adherent_3"}
    parts = {c["code"]["coding"][0]["code"]: c for c in main["component"]}
    assert parts["exercises-done"]["valueInteger"] == 1
    assert parts["exercises-skipped"]["valueInteger"] == 1
    assert parts["55411-3"]["valueQuantity"]["value"] == 900
    assert main["hasMember"] == [{"reference": f"Observation/{m['id']}"} for m in members]
    bridge, clamshell, pain, exertion = members
    assert {"reference": "ServiceRequest/sr-bridge"} in bridge["basedOn"]
    assert bridge["valueCodeableConcept"]["coding"][0]["code"] == "done"
    assert clamshell["valueCodeableConcept"]["coding"][0]["code"] == "skipped"
    assert (LOINC, "72514-3") in _codes(pain)
    assert pain["valueQuantity"]["value"] == Decimal(3)
    assert exertion["code"]["coding"][0]["code"] == "rpe-borg-cr10"
    assert main["effectiveDateTime"] == "2026-06-08T18:00:00+00:00"
    for obs in (main, *members):
        assert_valid(obs)


def test_a_replayed_or_resent_session_lands_on_the_same_resources() -> None:
    first = event_observations(parse_event(json.dumps(session("adherent", d(2), 1, pain=5))))
    again = event_observations(parse_event(json.dumps(session("adherent", d(2), 1, pain=5, event_id="evt_other"))))
    assert [o["id"] for o in first] == [o["id"] for o in again]
    assert first[0]["identifier"][1]["value"] == "evt_adherent_s1"
    assert again[0]["identifier"][1]["value"] == "evt_other"


def test_a_late_upload_keeps_the_day_the_session_was_done() -> None:
    late = parse_event(json.dumps(session("adherent", d(5), 6, uploaded=d(12))))
    assert event_observations(late)[0]["effectiveDateTime"] == "2026-06-06"


def test_outcome_observation_with_interpretation_against_the_previous_score() -> None:
    event = parse_event(json.dumps(outcome("worsening", 1, "QuickDASH", 42, d(12))))
    assert isinstance(event, OutcomeRecorded)
    (obs,) = event_observations(event, previous=Decimal(30))
    assert obs["code"]["text"] == "QuickDASH"
    assert obs["valueQuantity"]["value"] == Decimal(42)
    assert obs["interpretation"][0]["coding"][0]["code"] == "W"
    (better,) = event_observations(event, previous=Decimal(55))
    assert better["interpretation"][0]["coding"][0]["code"] == "B"
    (same,) = event_observations(event, previous=Decimal(40))
    assert "interpretation" not in same
    # the MCID is the clinic's: a larger one makes a 12-point change no change
    (configured,) = event_observations(event, previous=Decimal(30), mcid={"QuickDASH": 15})
    assert "interpretation" not in configured
    nprs = parse_event(json.dumps(outcome("adherent", 0, "NPRS", 6, d(0))))
    assert (LOINC, "72514-3") in _codes(event_observations(nprs)[0])
    odi = parse_event(json.dumps(outcome("improving", 0, "ODI", 40, d(0))))
    assert (LOINC, "97909-6") in _codes(event_observations(odi)[0])
    assert_valid(obs)


def test_communication_is_an_observation_of_minutes() -> None:
    raw = body(
        "evt_c",
        "communication.logged",
        "adherent",
        {"date": "2026-06-03", "minutes": 12.5, "channel": "call"},
        "2026-06-03T12:00:00+02:00",
    )
    event = parse_event(json.dumps(raw))
    assert isinstance(event, CommunicationLogged)
    (obs,) = event_observations(event)
    assert obs["valueQuantity"] == {
        "value": Decimal("12.5"),
        "unit": "min",
        "system": "http://unitsofmeasure.org",
        "code": "min",
    }
    assert obs["component"][0]["valueCodeableConcept"]["coding"][0]["code"] == "call"
    assert obs["effectiveDateTime"] == "2026-06-03T12:00:00+02:00"
    assert_valid(obs)


def test_program_and_unknown_events_are_typed_and_yield_no_observation() -> None:
    accessed = parse_event(
        json.dumps(body("evt_a", "program.accessed", "lapsing", {"version": 2}, "2026-06-05T08:00:00Z"))
    )
    assert isinstance(accessed, ProgramEvent) and accessed.version == 2
    unknown = parse_event(json.dumps(body("evt_u", "patient.merged", "lapsing", {"x": 1}, "2026-06-05T08:00:00Z")))
    assert isinstance(unknown, UnknownEvent) and unknown.type == "patient.merged"
    odd = body("evt_v", "vendor.ping", "lapsing", {}, "2026-06-05T08:00:00Z")
    odd["data"] = "whatever"  # the data of an unknown type is not read
    assert isinstance(parse_event(json.dumps(odd)), UnknownEvent)
    assert event_observations(accessed) == [] and event_observations(unknown) == []


def test_bad_values_are_named_by_json_path_without_echoing_them() -> None:
    raw = session("adherent", d(0), 0, pain=4)
    raw["data"]["exercises"][1]["status"] = "half"
    raw["data"]["pain"] = 11
    raw["data"]["date"] = "June 1st"
    raw["data"]["duration_seconds"] = -5
    with pytest.raises(HepEventError) as caught:
        parse_event(json.dumps(raw))
    paths = {p.path for p in caught.value.problems}
    assert paths == {"$.data.exercises[1].status", "$.data.pain", "$.data.date", "$.data.duration_seconds"}
    assert "June 1st" not in str(caught.value)

    raw = outcome("adherent", 0, "KOOS", 50, d(0))
    raw["occurred_at"] = "2026-06-01T10:00:00"  # no offset
    del raw["patient"]["external_id"]
    with pytest.raises(HepEventError) as caught:
        parse_event(json.dumps(raw))
    assert {p.path for p in caught.value.problems} == {"$.occurred_at", "$.patient.external_id"}

    with pytest.raises(HepEventError) as caught:
        parse_event(json.dumps(outcome("adherent", 0, "LEFS", 81, d(0))))
    assert [str(p) for p in caught.value.problems] == ["$.data.score: must be between 0 and 80"]
    orphan = session("adherent", d(0), 0)
    orphan["program"] = None
    with pytest.raises(HepEventError) as caught:
        parse_event(json.dumps(orphan))
    assert [p.path for p in caught.value.problems] == ["$.program"]
    with pytest.raises(HepEventError) as caught:
        parse_event(b"{not json")
    assert caught.value.problems[0].path == "$"


def test_replaying_the_delivered_webhooks_gives_one_resource_per_session_and_score() -> None:
    observations = observations_of(events_of("adherent")).values()
    sessions = [o for o in observations if o["code"]["coding"][0]["code"] == "exercise-session"]
    assert sorted(o["effectiveDateTime"][:10] for o in sessions) == [
        "2026-06-01",
        "2026-06-03",
        "2026-06-05",
        "2026-06-06",
        "2026-06-08",
        "2026-06-10",
        "2026-06-12",
    ]
    worse = [o for o in observations_of(events_of("worsening")).values() if o["code"]["text"] == "QuickDASH"]
    assert [
        (o["valueQuantity"]["value"], [i["coding"][0]["code"] for i in o.get("interpretation", [])])
        for o in sorted(worse, key=lambda o: o["effectiveDateTime"])
    ] == [(30, []), (42, ["W"])]
