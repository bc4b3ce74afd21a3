"""mappings.referral.task_state: the initial Task, the Communication to the referrer, the feedback Composition."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from mappings.referral.feedback import FeedbackEntry, feedback_composition, task_output_for_feedback
from mappings.referral.task_state import (
    IllegalTransition,
    allowed_transitions,
    apply_transition,
    check_transition,
    communication_for_change,
    fhir_datetime,
    held_from_of,
    referral_task,
)
from mappings.referral.task_statuses import (
    BSER_BUSINESS_STATUS_SYSTEM,
    BusinessStatus,
    business_status_of,
)
from tests.mappings.task_state_support import (
    CLINIC,
    IDENTIFIER,
    LATER,
    NOW,
    PATIENT,
    REFERRER,
    SR,
    assert_valid,
    assert_xhtml,
    new_task,
    task_in,
)

# ---------------------------------------------------------------- the initial Task


def test_the_referral_task() -> None:
    task = new_task()
    assert task == {
        "resourceType": "Task",
        "id": task["id"],
        "identifier": [IDENTIFIER],
        "status": "requested",
        "businessStatus": {
            "coding": [
                {"system": BSER_BUSINESS_STATUS_SYSTEM, "code": "2.0", "display": "Service Request Created"}
            ],
            "text": "Service Request Created",
        },
        "intent": "order",
        "code": {
            "coding": [
                {
                    "system": "http://hl7.org/fhir/CodeSystem/task-code",
                    "code": "fulfill",
                    "display": "Fulfill the focal request",
                }
            ]
        },
        "focus": {"reference": SR},
        "for": {"reference": PATIENT},
        "authoredOn": "2024-03-01T14:30:00Z",
        "lastModified": "2024-03-01T14:30:00Z",
        "requester": {"reference": REFERRER},
        "owner": {"reference": CLINIC},
    }
    assert_valid(task)


def test_the_task_id_is_derived_from_the_identifier() -> None:
    same = referral_task(
        "ServiceRequest/other", PATIENT, None, CLINIC, identifier=dict(IDENTIFIER), now=LATER
    )
    assert same["id"] == new_task()["id"]
    other = referral_task(SR, PATIENT, REFERRER, CLINIC, identifier={**IDENTIFIER, "value": "R-2"}, now=NOW)
    assert other["id"] != new_task()["id"]
    assert "requester" not in same
    assert_valid(same)
    with pytest.raises(ValueError):
        referral_task(SR, PATIENT, REFERRER, CLINIC, identifier={"system": "urn:x"}, now=NOW)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2024, 3, 1, 14, 30), "2024-03-01T14:30:00Z"),
        (datetime(2024, 3, 1, 14, 30, 5, 250000), "2024-03-01T14:30:05.250Z"),
        (datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5))), "2024-03-01T14:30:00Z"),
        (datetime(2024, 3, 1, 14, 30, tzinfo=UTC), "2024-03-01T14:30:00Z"),
    ],
)
def test_times_are_fhir_instants_in_utc(now: datetime, expected: str) -> None:
    assert fhir_datetime(now) == expected


# ---------------------------------------------------------------- telling the referrer


def test_the_communication_for_a_change() -> None:
    accepted = apply_transition(new_task(), "accepted", now=LATER)
    communication = communication_for_change(
        accepted, sender_ref=CLINIC, recipient_ref=REFERRER, now=LATER, text="Referral accepted"
    )
    task_ref = f"Task/{accepted['id']}"
    assert communication["status"] == "completed"
    assert communication["basedOn"] == [{"reference": task_ref}]
    assert communication["partOf"] == [{"reference": task_ref}]
    assert communication["about"] == [{"reference": SR}]
    assert communication["subject"] == {"reference": PATIENT}
    assert communication["recipient"] == [{"reference": REFERRER}]
    assert communication["sender"] == {"reference": CLINIC}
    assert communication["sent"] == "2024-03-01T16:30:00Z"
    assert communication["payload"] == [{"contentString": "Referral accepted"}]
    assert_valid(communication)


def test_the_same_change_told_twice_is_the_same_communication() -> None:
    accepted = apply_transition(new_task(), "accepted", now=LATER)

    def tell(task: dict[str, Any], text: str = "Referral accepted") -> str:
        told = communication_for_change(task, sender_ref=CLINIC, recipient_ref=REFERRER, now=LATER, text=text)
        return str(told["id"])

    assert tell(accepted) == tell(copy.deepcopy(accepted))
    assert tell(accepted) != tell(accepted, "Referral accepted, first visit Tuesday")
    assert tell(accepted) != tell(apply_transition(accepted, "in-progress", now=LATER))


# ---------------------------------------------------------------- referral feedback


def feedback() -> dict[str, Any]:
    return feedback_composition(
        service_request_ref=SR,
        patient_ref=PATIENT,
        author_ref="PractitionerRole/pt-1",
        now=LATER,
        summary="Seen for 12 visits over 6 weeks for right knee osteoarthritis <R17.11>.",
        goals=[
            FeedbackEntry("Goal/g-1", "Walk 500 m without a device: achieved"),
            FeedbackEntry("Goal/g-2", "Stairs reciprocally: partially achieved"),
        ],
        outcome="Discharged to a home exercise program.",
        observations=[FeedbackEntry("Observation/o-1", "LEFS 38 -> 62 / 80")],
    )


def test_the_feedback_composition() -> None:
    composition = feedback()
    assert composition["status"] == "final"
    assert composition["type"]["coding"] == [
        {"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}
    ]
    assert composition["subject"] == {"reference": PATIENT}
    assert composition["author"] == [{"reference": "PractitionerRole/pt-1"}]
    assert composition["date"] == "2024-03-01T16:30:00Z"
    assert composition["title"] == "Referral feedback"
    summary, goals, outcome = composition["section"]
    assert summary["code"]["coding"][0]["code"] == "RSRFS"
    assert summary["focus"] == {"reference": SR}
    assert "entry" not in summary
    assert goals["code"]["coding"][0] == {"system": "http://loinc.org", "code": "61146-7", "display": "Goals"}
    assert goals["entry"] == [{"reference": "Goal/g-1"}, {"reference": "Goal/g-2"}]
    assert outcome["code"]["coding"][0]["code"] == "11383-7"
    assert outcome["entry"] == [{"reference": "Observation/o-1"}]
    for section in composition["section"]:
        assert section["text"]["status"] == "generated"
        assert_xhtml(section["text"]["div"])
    assert "&lt;R17.11&gt;" in summary["text"]["div"]
    assert "LEFS 38 -&gt; 62 / 80" in outcome["text"]["div"]
    assert_xhtml(composition["text"]["div"])
    assert composition["id"] == feedback()["id"]


def test_the_feedback_composition_validates() -> None:
    assert_valid(feedback())


def test_a_feedback_with_no_goals_still_has_narrative() -> None:
    composition = feedback_composition(
        service_request_ref=SR,
        patient_ref=PATIENT,
        author_ref="PractitionerRole/pt-1",
        now=LATER,
        summary="Seen once.",
    )
    for section in composition["section"]:
        assert_xhtml(section["text"]["div"])
        assert "entry" not in section
    assert_valid(composition)


def test_completion_points_at_the_feedback() -> None:
    output = task_output_for_feedback("Composition/c-1")
    assert output["valueReference"] == {"reference": "Composition/c-1"}
    completed = apply_transition(task_in("in-progress"), "completed", now=LATER, output=output)
    assert completed["output"] == [output]
    assert business_status_of(completed) is BusinessStatus.FULFILMENT_COMPLETED
    assert_valid(completed)


def test_a_whole_referral_loop() -> None:
    task = new_task()
    steps: list[tuple[str, dict[str, Any]]] = [
        ("received", {}),
        ("on-hold", {"reason": "Awaiting prior authorization"}),
        ("received", {}),
        ("accepted", {}),
        ("in-progress", {"business_status": "event-completed"}),
        ("completed", {"output": task_output_for_feedback("Composition/c-1")}),
    ]
    for index, (status, kwargs) in enumerate(steps):
        task = apply_transition(task, status, now=NOW + timedelta(days=index), **kwargs)
        assert_valid(task)
        told = communication_for_change(task, sender_ref=CLINIC, recipient_ref=REFERRER, now=NOW, text=status)
        assert_valid(told)
    assert task["status"] == "completed"
    assert allowed_transitions(task["status"]) == frozenset()


def test_held_from_of_reads_the_hold_origin() -> None:
    held = apply_transition(task_in("received"), "on-hold", now=NOW)
    assert held_from_of(held) == "received"
    assert held_from_of(task_in("on-hold")) is None
    # what the hub checks on a plain FHIR PUT: the stored Task says where the hold may resume
    check_transition("on-hold", "received", held_from=held_from_of(held))
    with pytest.raises(IllegalTransition):
        check_transition("on-hold", "in-progress", held_from=held_from_of(held))


def test_a_new_business_status_under_the_same_status() -> None:
    from mappings.referral.task_state import with_business_status
    from mappings.referral.task_statuses import BusinessStatus, business_status_of

    task = {"resourceType": "Task", "id": "t", "status": "in-progress", "intent": "order"}
    unattended = with_business_status(task, BusinessStatus.UNATTENDED, now=datetime(2024, 3, 6, 9))
    assert unattended["status"] == "in-progress" and business_status_of(unattended) is BusinessStatus.UNATTENDED
    assert unattended["lastModified"].startswith("2024-03-06T09:00") and "businessStatus" not in task
    with pytest.raises(ValueError):
        with_business_status({**task, "status": "requested"}, BusinessStatus.UNATTENDED, now=datetime(2024, 3, 6))
