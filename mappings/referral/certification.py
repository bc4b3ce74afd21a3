"""The certification clocks of a therapy plan of care, and the FHIR Tasks that tell who owes what.

The rules are those of the Medicare Benefit Policy Manual (CMS Pub. 100-02), chapter 15, §220
("Coverage of Outpatient Rehabilitation Therapy Services ... Under Medical Insurance"), with the
numbers configurable per payer (:class:`CertificationRules`, :func:`rules_for_payer`):

- **certification** (§220.1.3 A-B): the physician/NPP certifies the plan by a dated signature; it is
  timely when dated in the 30 days following the first day of treatment, the evaluation included.
- **recertification** (§220.1.3 B-C, §220.1.2): a certification covers the plan's duration or 90
  calendar days from the initial treatment, whichever is less; treatment beyond it needs a
  recertification, and so does a significant change of the plan.
- **progress report** (§220.3 D): at least once every 10 treatment days; a treatment day is a
  calendar day on which treatment is furnished, and the first reporting period starts on the first
  day of the episode, evaluation included.

Status of an obligation: ``pending`` (outstanding, its deadline not reached), ``due`` (the deadline is
today, or this treatment day), ``overdue`` (past it), ``satisfied`` (done). When the episode of care
ends (the patient is discharged, the referral is cancelled) every obligation still open is closed by
:func:`close_obligation`: Task status ``cancelled``, the reason in ``statusReason`` and business status
``not-required`` (the obligations met stay ``completed``).

Pure: ``today`` and ``now`` are passed in; Task ids are uuid5 over care plan + kind + due.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mappings.fhir.ids import deterministic_id
from mappings.referral.task_state import fhir_datetime

ObligationKind = Literal["certification", "recertification", "progress-report"]
ObligationStatus = Literal["pending", "due", "overdue", "satisfied"]

#: local code systems (no standard one names these obligations)
OBLIGATION_CODE_SYSTEM = "https://therapy-hub.example/CodeSystem/plan-of-care-obligation"
OBLIGATION_STATUS_SYSTEM = "https://therapy-hub.example/CodeSystem/plan-of-care-obligation-status"
OBLIGATION_DISPLAY: Mapping[str, str] = MappingProxyType(
    {
        "certification": "Certification of the plan of care",
        "recertification": "Recertification of the plan of care",
        "progress-report": "Progress report",
    }
)
#: the business status of an obligation closed because the episode of care ended (not an ObligationStatus:
#: :func:`obligations` never computes it)
NOT_REQUIRED = "not-required"
STATUS_DISPLAY: Mapping[str, str] = MappingProxyType(
    {
        "pending": "Pending",
        "due": "Due",
        "overdue": "Overdue",
        "satisfied": "Satisfied",
        NOT_REQUIRED: "No longer required",
    }
)
#: Task.status codes after which an obligation is over (met, closed, or never valid)
CLOSED_TASK_STATUSES = frozenset({"completed", "cancelled", "failed", "rejected", "entered-in-error"})


class CertificationRules(BaseModel):
    """A payer's clocks; the defaults are Medicare's (Benefit Policy Manual ch. 15 §220).

    ``None`` switches an obligation off for payers that do not ask for it: no certification (nor
    recertification) when ``initial_certification_days`` is None; recertification only at the end of
    the plan (or on a plan change) when ``max_certification_days`` is None; no progress report
    obligation when ``progress_report_visits`` is None.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: §220.1.3 B: the certification is timely when dated within 30 days of the initial treatment
    initial_certification_days: int | None = Field(default=30, gt=0)
    #: §220.1.3 B-C: a certification covers at most 90 calendar days from the initial treatment
    max_certification_days: int | None = Field(default=90, gt=0)
    #: §220.3 D: a progress report at least once every 10 treatment days
    progress_report_visits: int | None = Field(default=10, gt=0)
    #: §220.1.2, §220.1.3 C: a significant change of the plan needs a new certification
    recert_on_plan_change: bool = True


MEDICARE = CertificationRules()


def rules_for_payer(payer_id: str | None, overrides: Mapping[str, CertificationRules]) -> CertificationRules:
    """The rules of ``payer_id`` from ``overrides`` (payer id -> rules), else Medicare's."""
    if payer_id is not None and payer_id in overrides:
        return overrides[payer_id]
    return MEDICARE


@dataclass(frozen=True, slots=True)
class Obligation:
    kind: ObligationKind
    #: the last day it is timely (None when not known yet)
    due: date | None
    #: the treatment day (1 = first day of the episode) by which it is due, for progress reports
    due_at_visit: int | None
    status: ObligationStatus
    reason: str


def _by_date(due: date, today: date) -> ObligationStatus:
    return "pending" if today < due else "due" if today == due else "overdue"


def _certification(initial: date | None, certified_on: date | None, days: int, today: date) -> Obligation:
    """§220.1.3 B: certified within ``days`` of the first treatment day (evaluation included)."""
    due = initial + timedelta(days=days) if initial is not None else None
    if certified_on is not None:
        return Obligation(
            "certification", due, None, "satisfied", f"Plan of care certified on {certified_on}"
        )
    if due is None:
        return Obligation(
            "certification",
            None,
            None,
            "pending",
            f"The physician must certify the plan within {days} days of the initial treatment "
            "(not given yet)",
        )
    return Obligation(
        "certification",
        due,
        None,
        _by_date(due, today),
        f"The physician must certify the plan within {days} days of the initial treatment on {initial} "
        "(Medicare Benefit Policy Manual ch. 15 §220.1.3 B)",
    )


def _recertification(
    *,
    plan_end: date,
    initial: date | None,
    certified_on: date,
    plan_changed_on: date | None,
    limit: int | None,
    change_days: int | None,
    today: date,
) -> Obligation:
    """§220.1.3 B-C: a certification lasts until the plan ends or ``max_certification_days`` after
    the initial treatment (and, conservatively, after the signature), whichever comes first; a
    plan changed after its certification must be certified again within ``change_days`` of the
    change (§220.1.2, §220.1.3 B "significantly modified plan")."""
    candidates: list[tuple[date, str]] = [(plan_end, f"the plan of care ends on {plan_end}")]
    if limit is not None:
        candidates.append(
            (
                certified_on + timedelta(days=limit),
                f"the certification of {certified_on} lasts at most {limit} days",
            )
        )
        if initial is not None:
            candidates.append(
                (
                    initial + timedelta(days=limit),
                    f"a certification covers at most {limit} days from the initial treatment on {initial}",
                )
            )
    if change_days is not None and plan_changed_on is not None and plan_changed_on > certified_on:
        candidates.append(
            (
                plan_changed_on + timedelta(days=change_days),
                f"the plan changed on {plan_changed_on} after its certification and must be certified "
                f"again within {change_days} days",
            )
        )
    due = min(when for when, _ in candidates)
    why = "; ".join(text for when, text in candidates if when == due)
    return Obligation(
        "recertification",
        due,
        None,
        _by_date(due, today),
        f"Recertification due by {due}: {why} (Medicare Benefit Policy Manual ch. 15 §220.1.3)",
    )


def _progress_report(
    treatment_dates: Sequence[date], last_report: int | None, every: int, today: date
) -> Obligation:
    """§220.3 D: a progress report at least once every ``every`` treatment days (distinct calendar
    days with treatment, the evaluation day being the first), counted from the last report."""
    days = sorted(set(treatment_dates))
    done = sum(1 for d in days if d <= today)
    due_at = (last_report or 0) + every
    due = days[due_at - 1] if len(days) >= due_at else None  # known when that visit is scheduled
    status: ObligationStatus = "pending" if done < due_at else "due" if done == due_at else "overdue"
    since = f"the report at treatment day {last_report}" if last_report else "the start of the episode"
    return Obligation(
        "progress-report",
        due,
        due_at,
        status,
        f"A progress report is due at treatment day {due_at} ({every} treatment days after {since}); "
        f"{done} treatment day(s) so far (Medicare Benefit Policy Manual ch. 15 §220.3 D)",
    )


def obligations(
    *,
    plan_start: date,
    plan_end: date,
    initial_treatment: date | None,
    certified_on: date | None,
    plan_changed_on: date | None,
    treatment_dates: Sequence[date],
    last_progress_report_visit: int | None,
    rules: CertificationRules,
    today: date,
) -> list[Obligation]:
    """What the plan of care owes on ``today``: its certification, its next recertification (once
    certified) and its next progress report, in that order, by the rules of the payer.

    ``initial_treatment`` is the first day of treatment under the plan (the evaluation included;
    the earliest of ``treatment_dates`` when None). For a recertified plan pass the new interval:
    its period, its first treatment day and the date of the recertification as ``certified_on``.
    A plan change before the (first) certification needs nothing more: that certification covers it.
    ``treatment_dates`` are the days treatment was (or is scheduled to be) given; only those up to
    ``today`` count, several visits on one day count once. ``last_progress_report_visit`` is the
    treatment day (1-based) of the last progress report, None when there was none.

    Obligations that the state no longer implies are not returned (a certification signed after a
    plan change replaces the recertification it was due for): reconcile stored Tasks by id.
    """
    if plan_end < plan_start:
        raise ValueError("the plan of care ends before it starts")
    if last_progress_report_visit is not None and last_progress_report_visit < 0:
        raise ValueError("last_progress_report_visit must be a treatment day number (None or 0: no report)")
    initial = initial_treatment or (min(treatment_dates) if treatment_dates else None)
    out: list[Obligation] = []
    days = rules.initial_certification_days
    if days is not None:
        out.append(_certification(initial, certified_on, days, today))
        if certified_on is not None:
            out.append(
                _recertification(
                    plan_end=plan_end,
                    initial=initial,
                    certified_on=certified_on,
                    plan_changed_on=plan_changed_on,
                    limit=rules.max_certification_days,
                    change_days=days if rules.recert_on_plan_change else None,
                    today=today,
                )
            )
    if rules.progress_report_visits is not None:
        out.append(
            _progress_report(treatment_dates, last_progress_report_visit, rules.progress_report_visits, today)
        )
    return out


def _due_key(obligation: Obligation) -> str:
    if obligation.due_at_visit is not None:
        return f"visit-{obligation.due_at_visit}"
    return obligation.due.isoformat() if obligation.due is not None else "open"


def to_fhir_tasks(
    obligations: Sequence[Obligation],
    *,
    care_plan_ref: str,
    patient_ref: str,
    owner_ref: str,
    requester_ref: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """One FHIR Task per obligation: code from ``OBLIGATION_CODE_SYSTEM``, focus the CarePlan,
    ``restriction.period.end`` the due date (when known), the due treatment day as an input,
    status ``completed`` when satisfied else ``requested``, business status the obligation's
    status (``overdue`` when overdue). Ids are uuid5 over care plan + kind + due (the treatment
    day for progress reports), so recomputing updates the same Tasks."""
    now_text = fhir_datetime(now)
    tasks = []
    for obligation in obligations:
        task: dict[str, Any] = {
            "resourceType": "Task",
            "id": deterministic_id("Task", care_plan_ref, f"{obligation.kind}|{_due_key(obligation)}"),
            "status": "completed" if obligation.status == "satisfied" else "requested",
            "businessStatus": {
                "coding": [
                    {
                        "system": OBLIGATION_STATUS_SYSTEM,
                        "code": obligation.status,
                        "display": STATUS_DISPLAY[obligation.status],
                    }
                ],
                "text": STATUS_DISPLAY[obligation.status],
            },
            "intent": "order",
            "code": {
                "coding": [
                    {
                        "system": OBLIGATION_CODE_SYSTEM,
                        "code": obligation.kind,
                        "display": OBLIGATION_DISPLAY[obligation.kind],
                    }
                ]
            },
            "description": obligation.reason,
            "focus": {"reference": care_plan_ref},
            "for": {"reference": patient_ref},
            "authoredOn": now_text,
            "lastModified": now_text,
            "requester": {"reference": requester_ref},
            "owner": {"reference": owner_ref},
        }
        if obligation.due is not None:
            task["restriction"] = {"period": {"end": obligation.due.isoformat()}}
        if obligation.due_at_visit is not None:
            task["input"] = [
                {"type": {"text": "Due at treatment day"}, "valueInteger": obligation.due_at_visit}
            ]
        tasks.append(task)
    return tasks


def close_obligation(task: Mapping[str, Any], *, reason: str, now: datetime) -> dict[str, Any] | None:
    """A new obligation Task closed because the episode of care ended; None when ``task`` is over
    already (``CLOSED_TASK_STATUSES``: a signed certification stays ``completed``).

    Status ``cancelled`` with ``statusReason.text`` ``reason`` (e.g. "patient discharged"),
    business status ``not-required`` rather than the last computed one: a Task that reads "overdue"
    after the patient left would still look like a reminder to send. ``lastModified`` = ``now``;
    the due date, description and owner stay, as the record of what was owed. ``task`` is untouched.
    """
    if task.get("status") in CLOSED_TASK_STATUSES:
        return None
    closed = copy.deepcopy(dict(task))
    closed["status"] = "cancelled"
    closed["statusReason"] = {"text": reason}
    closed["businessStatus"] = {
        "coding": [
            {"system": OBLIGATION_STATUS_SYSTEM, "code": NOT_REQUIRED, "display": STATUS_DISPLAY[NOT_REQUIRED]}
        ],
        "text": STATUS_DISPLAY[NOT_REQUIRED],
    }
    closed["lastModified"] = fhir_datetime(now)
    if isinstance(closed.get("text"), Mapping) and closed["text"].get("status") == "generated":
        del closed["text"]
    return closed
