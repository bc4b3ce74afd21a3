"""mappings.referral.task_state: the transition table, reasons, and holds resuming where they came from."""

from __future__ import annotations

from typing import Any

import pytest

from mappings.referral.task_state import (
    HELD_FROM_URL,
    IllegalBusinessStatus,
    IllegalTransition,
    MissingReason,
    TransitionError,
    allowed_transitions,
    apply_transition,
    check_transition,
)
from mappings.referral.task_statuses import (
    BUSINESS_STATUS_ALLOWED,
    FHIR_TASK_STATUSES,
    HOLDABLE,
    REASON_REQUIRED,
    TRANSITIONS,
    business_status_of,
)
from tests.mappings.task_state_support import ILLEGAL, LATER, LEGAL, NOW, REASONS, assert_valid, task_in

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
