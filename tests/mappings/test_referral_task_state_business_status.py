"""mappings.referral.task_state: business statuses and events, and immutability of the inputs."""

from __future__ import annotations

import copy

import pytest

from mappings.referral.feedback import task_output_for_feedback
from mappings.referral.task_state import (
    IllegalBusinessStatus,
    apply_transition,
    record_event,
)
from mappings.referral.task_statuses import (
    BSER_BUSINESS_STATUS_SYSTEM,
    BUSINESS_STATUS_ALLOWED,
    DEFAULT_BUSINESS_STATUS,
    TRANSITIONS,
    BusinessStatus,
    business_status_of,
    parse_business_status,
)
from tests.mappings.task_state_support import LATER, LEGAL, NOW, REASONS, assert_valid, task_in

# ---------------------------------------------------------------- business status


def test_the_codes_are_bser_stu2() -> None:
    assert BSER_BUSINESS_STATUS_SYSTEM == "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS"
    assert {b.slug: b.value for b in BusinessStatus} == {
        "created": "2.0",
        "accepted": "3.0",
        "declined": "4.0",
        "scheduled": "5.1.1",
        "unattended": "5.1.2",
        "appointment-cancelled": "5.1.3",
        "event-completed": "5.1.4",
        "cancellation-requested": "5.2",
        "fulfilment-cancelled": "6.0",
        "fulfilment-completed": "7.0",
    }
    assert set(BUSINESS_STATUS_ALLOWED) == set(TRANSITIONS)
    for status, code in DEFAULT_BUSINESS_STATUS.items():
        assert code in BUSINESS_STATUS_ALLOWED[status]
    used = set().union(*BUSINESS_STATUS_ALLOWED.values())
    assert used == set(BusinessStatus)


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        ("requested", "received", BusinessStatus.CREATED),
        ("requested", "accepted", BusinessStatus.ACCEPTED),
        ("received", "accepted", BusinessStatus.ACCEPTED),
        ("received", "rejected", BusinessStatus.DECLINED),
        ("accepted", "in-progress", BusinessStatus.SCHEDULED),
        ("in-progress", "completed", BusinessStatus.FULFILMENT_COMPLETED),
        ("in-progress", "cancelled", BusinessStatus.FULFILMENT_CANCELLED),
        ("requested", "cancelled", BusinessStatus.FULFILMENT_CANCELLED),
    ],
)
def test_each_transition_sets_its_business_status(
    current: str, target: str, expected: BusinessStatus
) -> None:
    after = apply_transition(task_in(current), target, now=LATER, reason=REASONS.get(target))
    assert after["businessStatus"] == {
        "coding": [
            {"system": BSER_BUSINESS_STATUS_SYSTEM, "code": expected.value, "display": expected.display}
        ],
        "text": expected.display,
    }


def test_in_progress_and_holds_keep_a_business_status_that_still_applies() -> None:
    accepted = task_in("accepted")
    scheduled = record_event(accepted, "scheduled", now=NOW)
    unattended = record_event(scheduled, BusinessStatus.UNATTENDED, now=NOW)
    started = apply_transition(unattended, "in-progress", now=LATER)
    assert business_status_of(started) is BusinessStatus.UNATTENDED
    done = apply_transition(accepted, "in-progress", now=LATER, business_status="5.1.4")
    assert business_status_of(done) is BusinessStatus.EVENT_COMPLETED
    held = apply_transition(done, "on-hold", now=LATER)
    assert business_status_of(held) is BusinessStatus.EVENT_COMPLETED
    resumed = apply_transition(held, "in-progress", now=LATER)
    assert business_status_of(resumed) is BusinessStatus.EVENT_COMPLETED
    held_early = apply_transition(task_in("received"), "on-hold", now=LATER)
    assert business_status_of(held_early) is BusinessStatus.CREATED


@pytest.mark.parametrize(
    "event",
    [
        BusinessStatus.SCHEDULED,
        BusinessStatus.UNATTENDED,
        BusinessStatus.APPOINTMENT_CANCELLED,
        BusinessStatus.EVENT_COMPLETED,
        BusinessStatus.CANCELLATION_REQUESTED,
    ],
)
def test_events_are_recorded_without_a_status_change(event: BusinessStatus) -> None:
    before = task_in("in-progress")
    after = record_event(before, event, now=LATER)
    assert after["status"] == "in-progress"
    assert business_status_of(after) is event
    assert after["lastModified"] == "2024-03-01T16:30:00Z"
    assert_valid(after)


@pytest.mark.parametrize(
    ("status", "event"),
    [
        ("requested", "scheduled"),
        ("accepted", "event-completed"),
        ("completed", "scheduled"),
        ("rejected", "accepted"),
        ("in-progress", "declined"),
        ("in-progress", "no-such-status"),
    ],
)
def test_events_that_do_not_fit_the_status_are_refused(status: str, event: str) -> None:
    with pytest.raises(IllegalBusinessStatus) as caught:
        record_event(task_in(status), event, now=LATER)
    assert caught.value.allowed == {b.value for b in BUSINESS_STATUS_ALLOWED[status]}
    assert "no-such-status" not in str(caught.value)


def test_a_business_status_override_must_fit_the_target() -> None:
    with pytest.raises(IllegalBusinessStatus):
        apply_transition(task_in("in-progress"), "completed", now=LATER, business_status="declined")
    after = apply_transition(task_in("accepted"), "cancelled", now=LATER, reason="x", business_status="6.0")
    assert business_status_of(after) is BusinessStatus.FULFILMENT_CANCELLED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.1.3", BusinessStatus.APPOINTMENT_CANCELLED),
        ("appointment-cancelled", BusinessStatus.APPOINTMENT_CANCELLED),
        ("Appointment Cancelled", BusinessStatus.APPOINTMENT_CANCELLED),
        ("event_completed", BusinessStatus.EVENT_COMPLETED),
        ("fulfillment-completed", BusinessStatus.FULFILMENT_COMPLETED),
        (BusinessStatus.DECLINED, BusinessStatus.DECLINED),
        ("5.4", None),
        ("nonsense", None),
    ],
)
def test_business_status_parsing(text: str, expected: BusinessStatus | None) -> None:
    assert parse_business_status(text) is expected


# ---------------------------------------------------------------- immutability


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_transitions_never_mutate_their_input(current: str, target: str) -> None:
    before = task_in(current, held_from=target if current == "on-hold" else None)
    before["output"] = [{"type": {"text": "earlier"}, "valueString": "x"}]
    snapshot = copy.deepcopy(before)
    output = task_output_for_feedback("Composition/c-1")
    after = apply_transition(before, target, now=LATER, reason=REASONS.get(target), output=output)
    assert before == snapshot
    after["output"][0]["valueString"] = "changed"
    assert before == snapshot
    assert after is not before


def test_record_event_never_mutates_its_input() -> None:
    before = task_in("in-progress")
    snapshot = copy.deepcopy(before)
    record_event(before, "scheduled", now=LATER, output={"type": {"text": "Appointment"}, "valueString": "x"})
    assert before == snapshot


def test_outputs_are_appended() -> None:
    before = task_in("in-progress")
    first = {"type": {"text": "Plan of care"}, "valueReference": {"reference": "CarePlan/cp-1"}}
    before["output"] = [first]
    feedback = task_output_for_feedback("Composition/c-1")
    after = apply_transition(before, "completed", now=LATER, output=[feedback])
    assert after["output"] == [first, feedback]
    assert_valid(after)


def test_a_generated_narrative_is_dropped_as_stale() -> None:
    before = task_in("accepted")
    before["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">accepted</div>',
    }
    assert "text" not in apply_transition(before, "in-progress", now=LATER)
    before["text"]["status"] = "additional"
    assert apply_transition(before, "in-progress", now=LATER)["text"] == before["text"]
