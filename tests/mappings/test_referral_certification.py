"""Unit tests of mappings.referral.certification (pure: ``today`` and ``now`` are injected, never slept)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from mappings.fhir import model_class
from mappings.fhir.validation import validate_resource
from mappings.referral.certification import (
    MEDICARE,
    OBLIGATION_CODE_SYSTEM,
    OBLIGATION_STATUS_SYSTEM,
    CertificationRules,
    Obligation,
    obligations,
    rules_for_payer,
    to_fhir_tasks,
)

EVAL = date(2024, 1, 8)  # the evaluation: the first treatment day
PLAN_END = date(2024, 6, 30)
NOW = datetime(2024, 2, 1, 8, 0)


def compute(
    *,
    today: date,
    plan_start: date = EVAL,
    plan_end: date = PLAN_END,
    initial_treatment: date | None = EVAL,
    certified_on: date | None = None,
    plan_changed_on: date | None = None,
    treatment_dates: Sequence[date] = (),
    last_progress_report_visit: int | None = None,
    rules: CertificationRules = MEDICARE,
) -> dict[str, Obligation]:
    found = obligations(
        plan_start=plan_start,
        plan_end=plan_end,
        initial_treatment=initial_treatment,
        certified_on=certified_on,
        plan_changed_on=plan_changed_on,
        treatment_dates=treatment_dates,
        last_progress_report_visit=last_progress_report_visit,
        rules=rules,
        today=today,
    )
    kinds = [o.kind for o in found]
    assert len(kinds) == len(set(kinds))
    return {o.kind: o for o in found}


def visits(count: int, *, start: date = EVAL) -> list[date]:
    """``count`` treatment days, Monday / Wednesday / Friday from ``start`` (a Monday)."""
    out, day = [], start
    while len(out) < count:
        if day.weekday() in (0, 2, 4):
            out.append(day)
        day += timedelta(days=1)
    return out


# ---------------------------------------------------------------- rules


def test_medicare_defaults() -> None:
    assert MEDICARE.initial_certification_days == 30
    assert MEDICARE.max_certification_days == 90
    assert MEDICARE.progress_report_visits == 10
    assert MEDICARE.recert_on_plan_change is True


def test_rules_for_payer() -> None:
    commercial = CertificationRules(max_certification_days=60, progress_report_visits=6)
    overrides = {"BCBS-TX": commercial}
    assert rules_for_payer("BCBS-TX", overrides) is commercial
    assert rules_for_payer("00882", overrides) == MEDICARE
    assert rules_for_payer(None, overrides) == MEDICARE
    assert rules_for_payer("BCBS-TX", {}) == MEDICARE


@pytest.mark.parametrize(
    "bad",
    [
        {"initial_certification_days": 0},
        {"progress_report_visits": -1},
        {"max_certification_days": 0},
        {"z": 1},
    ],
)
def test_rules_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CertificationRules(**bad)


def test_rules_are_frozen() -> None:
    with pytest.raises(ValidationError):
        MEDICARE.progress_report_visits = 5  # type: ignore[misc]


# ---------------------------------------------------------------- certification


@pytest.mark.parametrize(
    ("day", "status"),
    [(0, "pending"), (1, "pending"), (29, "pending"), (30, "due"), (31, "overdue"), (120, "overdue")],
)
def test_certification_is_due_on_day_30_and_overdue_on_day_31(day: int, status: str) -> None:
    certification = compute(today=EVAL + timedelta(days=day))["certification"]
    assert certification.due == date(2024, 2, 7)
    assert certification.status == status
    assert certification.due_at_visit is None
    assert "§220.1.3" in certification.reason


def test_certification_is_satisfied_once_signed_even_late() -> None:
    for signed in (EVAL + timedelta(days=3), EVAL + timedelta(days=45)):
        certification = compute(today=date(2024, 3, 1), certified_on=signed)["certification"]
        assert certification.status == "satisfied"
        assert certification.due == date(2024, 2, 7)


def test_certification_before_the_first_treatment_is_pending_without_a_date() -> None:
    found = compute(today=EVAL, initial_treatment=None)
    assert found["certification"].due is None
    assert found["certification"].status == "pending"
    assert "recertification" not in found


def test_the_first_treatment_date_is_taken_from_the_visits_when_not_given() -> None:
    certification = compute(today=EVAL, initial_treatment=None, treatment_dates=visits(3))["certification"]
    assert certification.due == EVAL + timedelta(days=30)


def test_a_payer_with_a_longer_certification_window() -> None:
    rules = CertificationRules(initial_certification_days=45)
    assert compute(today=EVAL + timedelta(days=44), rules=rules)["certification"].status == "pending"
    assert compute(today=EVAL + timedelta(days=45), rules=rules)["certification"].status == "due"
    assert compute(today=EVAL + timedelta(days=46), rules=rules)["certification"].status == "overdue"


def test_a_payer_without_certification() -> None:
    found = compute(today=date(2024, 5, 1), rules=CertificationRules(initial_certification_days=None))
    assert set(found) == {"progress-report"}


# ---------------------------------------------------------------- recertification


def test_recertification_at_90_days_when_the_plan_runs_longer() -> None:
    found = compute(today=date(2024, 3, 1), certified_on=EVAL)
    recert = found["recertification"]
    assert recert.due == EVAL + timedelta(days=90) == date(2024, 4, 7)
    assert recert.status == "pending"
    assert compute(today=date(2024, 4, 7), certified_on=EVAL)["recertification"].status == "due"
    assert compute(today=date(2024, 4, 8), certified_on=EVAL)["recertification"].status == "overdue"


def test_recertification_at_an_earlier_plan_end() -> None:
    plan_end = date(2024, 2, 29)  # a 7-week plan
    recert = compute(today=date(2024, 2, 1), certified_on=EVAL, plan_end=plan_end)["recertification"]
    assert recert.due == plan_end
    assert "plan of care ends" in recert.reason
    for today, status in ((plan_end, "due"), (date(2024, 3, 1), "overdue")):
        assert compute(today=today, certified_on=EVAL, plan_end=plan_end)["recertification"].status == status


def test_recertification_counts_from_the_initial_treatment_not_a_late_signature() -> None:
    # §220.1.3 B: a certification covers 90 days from the initial treatment, not from the signature
    recert = compute(today=date(2024, 3, 1), certified_on=EVAL + timedelta(days=20))["recertification"]
    assert recert.due == EVAL + timedelta(days=90)


def test_recertification_counts_from_the_signature_when_it_comes_first() -> None:
    # a plan certified before the first treatment (e.g. the physician wrote it): the earlier clock wins
    signed = EVAL - timedelta(days=10)
    recert = compute(today=date(2024, 3, 1), certified_on=signed)["recertification"]
    assert recert.due == signed + timedelta(days=90)


def test_a_recertified_interval_is_computed_like_a_new_plan() -> None:
    second_start, second_end = date(2024, 4, 8), date(2024, 8, 31)
    found = compute(
        today=date(2024, 5, 1),
        plan_start=second_start,
        plan_end=second_end,
        initial_treatment=second_start,
        certified_on=date(2024, 4, 5),
    )
    assert found["certification"].status == "satisfied"
    assert found["recertification"].due == date(2024, 7, 4)  # 90 days after the signature: the earlier


def test_a_payer_with_shorter_certifications() -> None:
    shorter = compute(today=EVAL, certified_on=EVAL, rules=CertificationRules(max_certification_days=60))
    assert shorter["recertification"].due == EVAL + timedelta(days=60)
    unlimited = compute(today=EVAL, certified_on=EVAL, rules=CertificationRules(max_certification_days=None))
    assert unlimited["recertification"].due == PLAN_END


# ---------------------------------------------------------------- plan changes


def test_a_plan_change_after_certification_needs_a_new_one_within_30_days() -> None:
    changed = date(2024, 2, 1)
    found = compute(today=date(2024, 2, 15), certified_on=date(2024, 1, 10), plan_changed_on=changed)
    recert = found["recertification"]
    assert recert.due == changed + timedelta(days=30) == date(2024, 3, 2)
    assert recert.status == "pending"
    assert "plan changed on 2024-02-01" in recert.reason
    over = compute(today=date(2024, 3, 3), certified_on=date(2024, 1, 10), plan_changed_on=changed)
    assert over["recertification"].status == "overdue"


def test_a_certification_signed_after_the_change_covers_it() -> None:
    found = compute(today=date(2024, 2, 15), certified_on=date(2024, 2, 5), plan_changed_on=date(2024, 2, 1))
    assert found["recertification"].due == EVAL + timedelta(days=90)
    assert "plan changed" not in found["recertification"].reason


def test_a_change_near_the_end_of_the_interval_does_not_extend_it() -> None:
    found = compute(today=date(2024, 3, 30), certified_on=EVAL, plan_changed_on=date(2024, 3, 25))
    assert found["recertification"].due == date(2024, 4, 7)  # the 90-day limit comes before change + 30


def test_a_change_before_certification_changes_nothing() -> None:
    found = compute(today=date(2024, 1, 20), plan_changed_on=date(2024, 1, 15))
    assert found["certification"].due == date(2024, 2, 7)
    assert "recertification" not in found


def test_a_payer_that_ignores_plan_changes() -> None:
    rules = CertificationRules(recert_on_plan_change=False)
    found = compute(today=date(2024, 2, 15), certified_on=EVAL, plan_changed_on=date(2024, 2, 1), rules=rules)
    assert found["recertification"].due == date(2024, 4, 7)


# ---------------------------------------------------------------- progress reports


@pytest.mark.parametrize(
    ("done", "status"), [(0, "pending"), (1, "pending"), (9, "pending"), (10, "due"), (11, "overdue")]
)
def test_progress_report_is_due_exactly_at_visit_10(done: int, status: str) -> None:
    dates = visits(done)
    today = dates[-1] if dates else EVAL
    report = compute(today=today, treatment_dates=dates)["progress-report"]
    assert report.due_at_visit == 10
    assert report.status == status
    assert "§220.3 D" in report.reason


def test_progress_reports_count_visits_not_calendar_days() -> None:
    monthly = [date(2024, 3, 4), date(2024, 4, 1), date(2024, 4, 29), date(2024, 5, 27)]
    sparse = visits(5) + monthly
    report = compute(today=date(2024, 6, 1), treatment_dates=sparse)["progress-report"]
    assert report.status == "pending"  # 9 treatment days in almost 5 months: not yet due
    assert report.due is None


def test_two_visits_on_one_day_are_one_treatment_day() -> None:
    dates = visits(9)
    report = compute(today=dates[-1], treatment_dates=dates + [dates[3], dates[5]])["progress-report"]
    assert report.status == "pending"


def test_scheduled_visits_give_the_due_date_but_do_not_count_yet() -> None:
    dates = visits(14)
    today = dates[6]  # 7 treatment days done, 7 scheduled
    report = compute(today=today, treatment_dates=dates)["progress-report"]
    assert report.status == "pending"
    assert report.due == dates[9]


def test_the_next_report_is_due_10_visits_after_the_last() -> None:
    dates = visits(25)

    def report(today: date, last: int) -> Obligation:
        return compute(today=today, treatment_dates=dates, last_progress_report_visit=last)["progress-report"]

    assert report(dates[18], 10).due_at_visit == 20
    assert report(dates[18], 10).due == dates[19]
    assert report(dates[18], 10).status == "pending"
    assert report(dates[19], 10).status == "due"
    assert report(dates[20], 10).status == "overdue"
    assert report(dates[20], 21).status == "pending"
    assert report(dates[20], 21).due_at_visit == 31


def test_a_payer_with_a_different_progress_report_period() -> None:
    rules = CertificationRules(progress_report_visits=6)
    dates = visits(6)
    assert compute(today=dates[-1], treatment_dates=dates, rules=rules)["progress-report"].status == "due"
    assert compute(today=dates[4], treatment_dates=dates, rules=rules)["progress-report"].status == "pending"
    none = CertificationRules(progress_report_visits=None)
    assert "progress-report" not in compute(today=dates[-1], treatment_dates=dates, rules=none)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        compute(today=EVAL, plan_start=date(2024, 7, 1), plan_end=date(2024, 6, 30))
    with pytest.raises(ValueError):
        compute(today=EVAL, last_progress_report_visit=-1)


def test_obligations_come_in_order() -> None:
    found = obligations(
        plan_start=EVAL,
        plan_end=PLAN_END,
        initial_treatment=EVAL,
        certified_on=EVAL,
        plan_changed_on=None,
        treatment_dates=visits(3),
        last_progress_report_visit=None,
        rules=MEDICARE,
        today=EVAL,
    )
    assert [o.kind for o in found] == ["certification", "recertification", "progress-report"]


# ---------------------------------------------------------------- FHIR Tasks


REFS: dict[str, Any] = {
    "care_plan_ref": "CarePlan/cp-1",
    "patient_ref": "Patient/p-1",
    "owner_ref": "PractitionerRole/dr-1",
    "requester_ref": "Organization/clinic-1",
}


def tasks_for(found: dict[str, Obligation], now: datetime = NOW) -> dict[str, dict[str, Any]]:
    tasks = to_fhir_tasks(list(found.values()), now=now, **REFS)
    return {t["code"]["coding"][0]["code"]: t for t in tasks}


def test_fhir_tasks() -> None:
    dates = visits(12)
    changed = date(2024, 1, 20)
    found = compute(today=dates[-1], certified_on=EVAL, treatment_dates=dates, plan_changed_on=changed)
    tasks = tasks_for(found)
    assert set(tasks) == {"certification", "recertification", "progress-report"}
    for kind, task in tasks.items():
        assert validate_resource(task, "Task") == []
        model_class("Task").model_validate(task)
        assert task["code"]["coding"][0]["system"] == OBLIGATION_CODE_SYSTEM
        assert task["focus"] == {"reference": "CarePlan/cp-1"}
        assert task["for"] == {"reference": "Patient/p-1"}
        assert task["owner"] == {"reference": "PractitionerRole/dr-1"}
        assert task["requester"] == {"reference": "Organization/clinic-1"}
        assert task["intent"] == "order"
        assert task["authoredOn"] == "2024-02-01T08:00:00Z"
        assert task["description"] == found[kind].reason
        assert task["businessStatus"]["coding"][0]["system"] == OBLIGATION_STATUS_SYSTEM
        assert task["businessStatus"]["coding"][0]["code"] == found[kind].status
    assert tasks["certification"]["status"] == "completed"
    assert tasks["certification"]["restriction"] == {"period": {"end": "2024-02-07"}}
    assert tasks["recertification"]["status"] == "requested"
    assert tasks["recertification"]["restriction"] == {"period": {"end": "2024-02-19"}}
    report = tasks["progress-report"]
    assert report["status"] == "requested"
    assert report["businessStatus"]["coding"][0]["code"] == "overdue"
    assert report["restriction"] == {"period": {"end": dates[9].isoformat()}}
    assert report["input"] == [{"type": {"text": "Due at treatment day"}, "valueInteger": 10}]


def test_fhir_tasks_without_a_due_date() -> None:
    found = compute(today=EVAL, initial_treatment=None)
    tasks = tasks_for(found)
    assert "restriction" not in tasks["certification"]
    assert "restriction" not in tasks["progress-report"]
    for task in tasks.values():
        assert validate_resource(task, "Task") == []


def test_fhir_task_ids_are_deterministic() -> None:
    found = compute(today=date(2024, 1, 20))
    first = tasks_for(found)
    again = tasks_for(compute(today=date(2024, 2, 20)), now=NOW + timedelta(days=30))
    assert first["certification"]["id"] == again["certification"]["id"]  # same plan, kind and due
    assert first["certification"]["status"] == again["certification"]["status"] == "requested"
    assert again["certification"]["businessStatus"]["coding"][0]["code"] == "overdue"
    other_plan = to_fhir_tasks(list(found.values()), now=NOW, **{**REFS, "care_plan_ref": "CarePlan/cp-2"})
    assert {t["id"] for t in other_plan}.isdisjoint(t["id"] for t in first.values())
    moved = tasks_for(compute(today=date(2024, 1, 20), initial_treatment=EVAL + timedelta(days=1)))
    assert moved["certification"]["id"] != first["certification"]["id"]
    assert len({t["id"] for t in first.values()}) == len(first)
