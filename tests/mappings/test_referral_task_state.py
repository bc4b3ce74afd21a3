"""Unit tests of mappings.referral.task_state (pure: no store, no HTTP, no clock)."""

from __future__ import annotations

import copy
import itertools
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from mappings.fhir import model_class
from mappings.fhir.validation import validate_resource
from mappings.referral.feedback import FeedbackEntry, feedback_composition, task_output_for_feedback
from mappings.referral.task_state import (
    HELD_FROM_URL,
    IllegalBusinessStatus,
    IllegalTransition,
    MissingReason,
    TransitionError,
    allowed_transitions,
    apply_transition,
    check_transition,
    communication_for_change,
    fhir_datetime,
    held_from_of,
    record_event,
    referral_task,
)
from mappings.referral.task_statuses import (
    BSER_BUSINESS_STATUS_SYSTEM,
    BUSINESS_STATUS_ALLOWED,
    DEFAULT_BUSINESS_STATUS,
    FHIR_TASK_STATUSES,
    HOLDABLE,
    REASON_REQUIRED,
    TRANSITIONS,
    BusinessStatus,
    business_status_of,
    parse_business_status,
)

NOW = datetime(2024, 3, 1, 14, 30)  # naive = UTC, as the hub's clock gives
LATER = NOW + timedelta(hours=2)
SR = "ServiceRequest/sr-1"
PATIENT = "Patient/p-1"
REFERRER = "PractitionerRole/dr-1"
CLINIC = "Organization/clinic-1"
IDENTIFIER = {"system": "https://referrer.example/referrals", "value": "R-2024-0042"}
REASONS = {"rejected": "Outside our scope of practice", "cancelled": "Patient moved away"}

STATUSES = sorted(TRANSITIONS)
LEGAL = sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets)
ILLEGAL = sorted(
    (a, b) for a, b in itertools.product(STATUSES, sorted(FHIR_TASK_STATUSES)) if b not in TRANSITIONS[a]
)


def new_task() -> dict[str, Any]:
    return referral_task(SR, PATIENT, REFERRER, CLINIC, identifier=IDENTIFIER, now=NOW)


def task_in(status: str, *, held_from: str | None = None) -> dict[str, Any]:
    """A referral Task in ``status`` (an on-hold one remembering ``held_from`` when given)."""
    task = new_task()
    if status == "requested":
        return task
    task["status"] = status
    code = DEFAULT_BUSINESS_STATUS.get(status)
    if code is not None:
        task["businessStatus"]["coding"][0]["code"] = code.value
    if held_from is not None:
        task["extension"] = [{"url": HELD_FROM_URL, "valueCode": held_from}]
    return task


def assert_valid(resource: dict[str, Any]) -> None:
    """Valid for the hub (structure, JSON rules, required bindings) and for fhir.resources R4B."""
    assert validate_resource(resource, resource["resourceType"]) == []
    model_class(resource["resourceType"]).model_validate(resource)


def assert_xhtml(div: str) -> None:
    root = ET.fromstring(div)
    assert root.tag == "{http://www.w3.org/1999/xhtml}div"


# ---------------------------------------------------------------- the transition table


def test_the_table_covers_the_referral_loop() -> None:
    assert TRANSITIONS["requested"] == {"received", "accepted", "rejected", "cancelled", "on-hold"}
    assert TRANSITIONS["received"] == {"accepted", "rejected", "cancelled", "on-hold"}
    assert TRANSITIONS["accepted"] == {"in-progress", "cancelled", "on-hold"}
    assert TRANSITIONS["in-progress"] == {"completed", "on-hold", "cancelled"}
    assert TRANSITIONS["on-hold"] == HOLDABLE | {"cancelled"}
    for terminal in ("rejected", "cancelled", "completed"):
        assert TRANSITIONS[terminal] == frozenset()
    assert set(TRANSITIONS) <= FHIR_TASK_STATUSES
    assert all(targets <= FHIR_TASK_STATUSES for targets in TRANSITIONS.values())


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_every_legal_transition_passes(current: str, target: str) -> None:
    check_transition(current, target, reason=REASONS.get(target))
    assert target in allowed_transitions(current)


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_every_legal_transition_applies(current: str, target: str) -> None:
    held_from = target if current == "on-hold" else None
    before = task_in(current, held_from=held_from)
    after = apply_transition(before, target, now=LATER, reason=REASONS.get(target))
    assert after["status"] == target
    assert after["lastModified"] == "2024-03-01T16:30:00Z"
    assert business_status_of(after) in BUSINESS_STATUS_ALLOWED[target]
    assert_valid(after)


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_every_illegal_transition_is_refused_with_the_allowed_list(current: str, target: str) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_transition(current, target, reason="a reason")
    assert caught.value.current == current
    assert caught.value.target == target
    assert caught.value.allowed == TRANSITIONS[current]
    for allowed in TRANSITIONS[current]:
        assert allowed in str(caught.value)
    if not TRANSITIONS[current]:
        assert "terminal" in str(caught.value)
    with pytest.raises(IllegalTransition):
        apply_transition(task_in(current), target, now=LATER, reason="a reason")


@pytest.mark.parametrize("current", [None, "", "draft", "ready", "failed", "entered-in-error", "<b>PHI</b>"])
def test_statuses_outside_the_loop_go_nowhere(current: str | None) -> None:
    assert allowed_transitions(current) == frozenset()
    with pytest.raises(IllegalTransition) as caught:
        check_transition(current, "accepted")
    assert caught.value.allowed == frozenset()
    assert "PHI" not in str(caught.value)  # client text is never quoted back


def test_errors_are_value_errors_of_one_tree() -> None:
    assert issubclass(IllegalTransition, TransitionError)
    assert issubclass(MissingReason, TransitionError)
    assert issubclass(IllegalBusinessStatus, IllegalTransition)
    assert issubclass(TransitionError, ValueError)


# ---------------------------------------------------------------- reasons


@pytest.mark.parametrize("target", sorted(REASON_REQUIRED))
@pytest.mark.parametrize("reason", [None, "", "   ", {}, {"text": " "}, {"coding": []}])
def test_rejected_and_cancelled_need_a_reason(target: str, reason: Any) -> None:
    assert REASON_REQUIRED == {"rejected", "cancelled"}
    with pytest.raises(MissingReason) as caught:
        check_transition("received", target, reason=reason)
    assert caught.value.target == target
    before = task_in("received")
    with pytest.raises(MissingReason):
        apply_transition(before, target, now=LATER, reason=reason)


@pytest.mark.parametrize("target", sorted(REASON_REQUIRED))
def test_the_reason_becomes_status_reason(target: str) -> None:
    after = apply_transition(task_in("received"), target, now=LATER, reason="  Outside our scope  ")
    assert after["statusReason"] == {"text": "Outside our scope"}
    coded = {"coding": [{"system": "http://snomed.info/sct", "code": "183944003"}], "text": "Refused"}
    after = apply_transition(task_in("received"), target, now=LATER, reason=coded)
    assert after["statusReason"] == coded
    assert_valid(after)


def test_on_hold_takes_an_optional_reason_and_resuming_drops_it() -> None:
    held = apply_transition(task_in("in-progress"), "on-hold", now=NOW, reason="Knee surgery")
    assert held["statusReason"] == {"text": "Knee surgery"}
    assert "statusReason" not in apply_transition(task_in("in-progress"), "on-hold", now=NOW)
    resumed = apply_transition(held, "in-progress", now=LATER, reason="ignored")
    assert "statusReason" not in resumed


# ---------------------------------------------------------------- holds resume where they came from


@pytest.mark.parametrize("origin", sorted(HOLDABLE))
def test_a_hold_resumes_only_to_where_it_came_from(origin: str) -> None:
    held = apply_transition(task_in(origin), "on-hold", now=NOW)
    assert held["extension"] == [{"url": HELD_FROM_URL, "valueCode": origin}]
    assert allowed_transitions("on-hold", held_from=origin) == {origin, "cancelled"}
    for other in sorted(HOLDABLE - {origin}):
        with pytest.raises(IllegalTransition) as caught:
            apply_transition(held, other, now=LATER)
        assert caught.value.allowed == {origin, "cancelled"}
    resumed = apply_transition(held, origin, now=LATER)
    assert resumed["status"] == origin
    assert "extension" not in resumed
    cancelled = apply_transition(held, "cancelled", now=LATER, reason="Patient withdrew")
    assert "extension" not in cancelled


def test_a_hold_keeps_other_extensions() -> None:
    other = {"url": "https://example.org/ext", "valueString": "x"}
    before = task_in("in-progress")
    before["extension"] = [other]
    held = apply_transition(before, "on-hold", now=NOW)
    assert held["extension"] == [other, {"url": HELD_FROM_URL, "valueCode": "in-progress"}]
    assert apply_transition(held, "in-progress", now=LATER)["extension"] == [other]


def test_a_hold_of_unknown_origin_may_resume_to_any_holdable_status() -> None:
    assert allowed_transitions("on-hold") == HOLDABLE | {"cancelled"}
    assert allowed_transitions("on-hold", held_from="completed") == HOLDABLE | {"cancelled"}


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
