"""What a clinic's therapist fills in for a plan of care (PT, OT or SLP), as plain typed input.

The fields follow the Medicare Benefit Policy Manual, chapter 15, section 220.1.2 (a plan holds the
diagnoses, long-term goals and the type, amount, frequency and duration of the services) and the
FHIR workflow pattern of the referral loop (a ``CarePlan`` with ``Goal``s and ``ServiceRequest``s that
answers the referral ``ServiceRequest``).

References to resources the plan does not create (patient, referral, author, clinic, optionally the
condition) are FHIR reference strings: ``Type/id``, an absolute ``.../Type/id`` URL or ``urn:uuid:``.

Two normalisations keep "same plan -> same FHIR -> same plan" exact (see :class:`PlanOfCare`):
goals without a ``key`` get ``STG1``, ``STG2``... / ``LTG1``... (numbered per term, in order), a goal
baseline without a date is dated the plan's ``created`` (else ``period_start``) date, and an
activity frequency that only repeats the plan's visit frequency is dropped (it *is* the plan's).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"

Discipline = Literal["PT", "OT", "SLP"]
PlanStatus = Literal["draft", "active"]
GoalTerm = Literal["short", "long"]
#: Goal.lifecycleStatus (required binding http://hl7.org/fhir/goal-status)
GoalLifecycle = Literal[
    "proposed",
    "planned",
    "accepted",
    "active",
    "on-hold",
    "completed",
    "cancelled",
    "entered-in-error",
    "rejected",
]
#: Goal.achievementStatus codes of http://terminology.hl7.org/CodeSystem/goal-achievement
GoalAchievement = Literal[
    "in-progress",
    "improving",
    "worsening",
    "no-change",
    "achieved",
    "sustaining",
    "not-achieved",
    "no-progress",
    "not-attainable",
]

_ID = r"[A-Za-z0-9\-.]{1,64}"
_UUID_URN = r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def _reference_to(resource_type: str) -> Callable[[str], str]:
    pattern = re.compile(
        rf"^(?:(?:https?://[^\s/]+(?:/[^\s]*)?/)?{resource_type}/{_ID}(?:/_history/{_ID})?|{_UUID_URN})$"
    )

    def check(value: str) -> str:
        if not pattern.match(value):
            # the value itself is not echoed: references may carry identifiers of a patient
            raise ValueError(f"must be a reference to a {resource_type} (Type/id, a URL or urn:uuid)")
        return value

    return check


PatientRef = Annotated[str, AfterValidator(_reference_to("Patient"))]
ServiceRequestRef = Annotated[str, AfterValidator(_reference_to("ServiceRequest"))]
ConditionRef = Annotated[str, AfterValidator(_reference_to("Condition"))]
PractitionerRoleRef = Annotated[str, AfterValidator(_reference_to("PractitionerRole"))]
OrganizationRef = Annotated[str, AfterValidator(_reference_to("Organization"))]

Text = Annotated[str, Field(min_length=1, max_length=1000)]
ShortText = Annotated[str, Field(min_length=1, max_length=300)]


class _Model(BaseModel):
    #: surrounding whitespace is stripped (FHIR strings should have none)
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PlanIdentifier(_Model):
    """The plan's business identifier in the clinic's system (stable across revisions)."""

    system: str = Field(min_length=1, max_length=255, pattern=r"^\S+$")
    value: str = Field(min_length=1, max_length=128, pattern=r"^\S+$")


class Diagnosis(_Model):
    """The condition the plan addresses: an ICD-10-CM code, and the Condition when it already exists.

    Without ``reference`` the Bundle carries a Condition of its own (a deterministic PUT)."""

    code: str = Field(pattern=r"^[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$", description="ICD-10-CM")
    display: ShortText
    reference: ConditionRef | None = None


class Activity(_Model):
    """One billable service of the plan (CPT), e.g. 97110 therapeutic exercise."""

    code: str = Field(pattern=r"^[0-9]{4}[0-9FT]$", description="CPT code")
    display: ShortText
    frequency_per_week: int | None = Field(
        default=None, ge=1, le=14, description="Sessions a week when not the plan's visit frequency"
    )
    count: int | None = Field(
        default=None, ge=1, le=100, description="Total sessions over the plan (e.g. 1 for a re-evaluation)"
    )


class Measure(_Model):
    """What a goal target measures: a LOINC or SNOMED CT code."""

    system: Literal["http://loinc.org", "http://snomed.info/sct"]
    code: str = Field(pattern=r"^[0-9A-Za-z\-]{1,32}$")
    display: ShortText | None = None


class Amount(_Model):
    """A target value; ``code`` is the UCUM code of ``unit`` when there is one."""

    value: Decimal = Field(allow_inf_nan=False)
    unit: str = Field(min_length=1, max_length=50)
    code: str | None = Field(default=None, min_length=1, max_length=50, pattern=r"^\S+$")


class Goal(_Model):
    key: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._\-]{1,32}$",
        description="The clinic's label of the goal (STG1, LTG2...); stable across revisions",
    )
    term: GoalTerm
    description: Text
    measure: Measure | None = None
    detail_quantity: Amount | None = None
    detail_string: ShortText | None = None
    due_date: date | None = None
    #: where the patient stood at the evaluation, in the target's measure (FHIR: an Observation of
    #: that measure which the Goal ``addresses``; see :mod:`mappings.plan_of_care.fhir`)
    baseline_quantity: Amount | None = None
    baseline_string: ShortText | None = None
    baseline_date: date | None = Field(default=None, description="Default: the plan's created date")
    lifecycle_status: GoalLifecycle = "active"
    achievement_status: GoalAchievement | None = None

    @model_validator(mode="after")
    def _target(self) -> Goal:
        if self.detail_quantity is not None and self.detail_string is not None:
            raise ValueError("a goal target has either detail_quantity or detail_string, not both")
        if (self.detail_quantity is not None or self.detail_string is not None) and self.measure is None:
            raise ValueError("a goal target detail needs the measure it applies to")  # FHIR gol-1
        if self.baseline_quantity is not None and self.baseline_string is not None:
            raise ValueError("a goal baseline has either baseline_quantity or baseline_string, not both")
        if self.has_baseline and self.measure is None:
            raise ValueError("a goal baseline needs the measure it applies to")
        return self

    @property
    def has_baseline(self) -> bool:
        return self.baseline_quantity is not None or self.baseline_string is not None


class PlanOfCare(_Model):
    """A therapy plan of care, as the therapist established it."""

    identifier: PlanIdentifier
    revision: int = Field(default=1, ge=1, le=999, description="1 for the initial plan, +1 per revision")
    status: PlanStatus = "active"
    discipline: Discipline
    patient: PatientRef
    referral: ServiceRequestRef
    diagnosis: Diagnosis
    author: PractitionerRoleRef = Field(description="The therapist who established the plan")
    organization: OrganizationRef = Field(description="The clinic that furnishes the services")
    created: date | None = Field(default=None, description="The date the plan was established")
    period_start: date
    period_end: date
    frequency_per_week: int = Field(ge=1, le=14, description="Visits a week")
    frequency_max_per_week: int | None = Field(default=None, ge=2, le=14, description="For 2-3x/week")
    duration_weeks: int = Field(ge=1, le=52)
    activities: list[Activity] = Field(min_length=1, max_length=40)
    goals: list[Goal] = Field(default_factory=list, max_length=40)
    #: precautions and contraindications the physician certifies with the plan (CarePlan.note)
    precautions: list[ShortText] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _consistent(self) -> PlanOfCare:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        if self.frequency_max_per_week is not None and self.frequency_max_per_week <= self.frequency_per_week:
            raise ValueError("frequency_max_per_week must exceed frequency_per_week")
        codes = [a.code for a in self.activities]
        if len(set(codes)) != len(codes):
            raise ValueError("each CPT code may appear once among the activities")
        # normalisations (see the module docstring); the model is frozen, so fields are set directly
        activities = [
            a.model_copy(update={"frequency_per_week": None})
            if a.count is None
            and a.frequency_per_week == self.frequency_per_week
            and self.frequency_max_per_week is None
            else a
            for a in self.activities
        ]
        goals, numbers = [], {"short": 0, "long": 0}
        for goal in self.goals:
            numbers[goal.term] += 1
            if goal.key is None:
                goal = goal.model_copy(
                    update={"key": f"{'STG' if goal.term == 'short' else 'LTG'}{numbers[goal.term]}"}
                )
            if goal.has_baseline and goal.baseline_date is None:
                goal = goal.model_copy(update={"baseline_date": self.created or self.period_start})
            goals.append(goal)
        keys = [g.key for g in goals]
        if len(set(keys)) != len(keys):
            raise ValueError("goal keys must be unique within the plan")
        object.__setattr__(self, "activities", activities)
        object.__setattr__(self, "goals", goals)
        return self

    def activity_frequency(self, activity: Activity) -> tuple[int | None, int | None]:
        """(frequency, frequency max) a week of ``activity``: its own, else the plan's visit frequency."""
        if activity.frequency_per_week is not None:
            return activity.frequency_per_week, None
        if activity.count is not None:
            return None, None
        return self.frequency_per_week, self.frequency_max_per_week


class PlanSummary(_Model):
    """A plan of care read back from FHIR (:func:`mappings.plan_of_care.summary.plan_summary`).

    ``plan`` holds every field of the input; ``care_plan_id`` is the id of the CarePlan (the same in
    the transaction Bundle and on the server, since entries are PUTs to deterministic ids)."""

    plan: PlanOfCare
    care_plan_id: str = Field(pattern=rf"^{_ID}$")

    @property
    def care_plan_ref(self) -> str:
        return f"CarePlan/{self.care_plan_id}"

    @property
    def short_term_goals(self) -> list[Goal]:
        return [g for g in self.plan.goals if g.term == "short"]

    @property
    def long_term_goals(self) -> list[Goal]:
        return [g for g in self.plan.goals if g.term == "long"]
