"""The end of an episode of care (see :mod:`hub.referrals.plans`): when the referral Task becomes
``completed`` or ``cancelled``, what the hub opened for it is closed: the plan's open obligations,
its Goals, its ServiceRequests and the CarePlan itself."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from hub.errors import NotFound
from hub.referrals.plan_records import PLAN_SYSTEM, PlanRecords, obligation_code
from hub.referrals.service import is_referral_task
from mappings.plan_of_care import ending
from mappings.referral.certification import close_obligation

#: the referral Task statuses that end the episode of care: how the plan ends and the reason its open
#: obligations and goals are given
EPISODE_END: dict[str, tuple[Literal["completed", "revoked"], str]] = {
    "completed": ("completed", "patient discharged"),
    "cancelled": ("revoked", "referral cancelled"),
}


class EpisodeEnd(PlanRecords):
    def _referral_of(self, care_plan: dict[str, Any]) -> dict[str, Any] | None:
        """The referral Task a plan answers (the plan's identifier value is that Task's id)."""
        task_id = next((i.get("value") for i in care_plan.get("identifier") or [] if i.get("system") == PLAN_SYSTEM),
                       None)
        if not task_id:
            return None
        try:
            task = self._read("Task", task_id)
        except NotFound:
            return None
        return task if is_referral_task(task) else None

    def _episode_over(self, care_plan: dict[str, Any]) -> bool:
        """True when the plan has ended, or its referral has (the plan is then ended now, as of the
        day the referral ended: plans of referrals that ended before the hub closed them)."""
        if care_plan.get("status") in ending.ENDED_PLAN_STATUSES:
            return True
        referral = self._referral_of(care_plan)
        if referral is None or referral.get("status") not in EPISODE_END:
            return False
        changed = referral.get("lastModified") or (referral.get("meta") or {}).get("lastUpdated")
        try:
            ended = date.fromisoformat(changed[:10]) if changed else self._now().date()
        except ValueError:
            ended = self._now().date()
        self.end_episode(referral, ended=ended)
        return True

    def end_episode(self, task: dict[str, Any], *, ended: date) -> None:
        """Close what the hub opened for the referral ``task`` (completed or cancelled) as of ``ended``:
        its plan's open obligations, Goals, ServiceRequests and the CarePlan (see the module docstring).
        Writes only what changes, so running it twice writes nothing the second time."""
        end, reason = EPISODE_END[str(task.get("status"))]
        for plan in self._search("CarePlan", [("identifier", f"{PLAN_SYSTEM}|{task['id']}")]):
            self._end_plan(plan, end=end, reason=reason, ended=ended)

    def _end_plan(self, care_plan: dict[str, Any], *, end: Literal["completed", "revoked"], reason: str,
                  ended: date) -> None:
        # the ending functions are looked up on their module when called (a test replaces end_care_plan)
        for task in self._search("Task", [("focus", f"CarePlan/{care_plan['id']}")]):
            closed = close_obligation(task, reason=reason, now=self._now()) if obligation_code(task) else None
            if closed is not None:
                self.fhir.update("Task", task["id"], closed)
        for goal_ref in care_plan.get("goal") or []:
            goal = self._read_reference(goal_ref, "Goal")
            ended_goal = ending.end_goal(goal, on=ended, reason=reason) if goal else None
            if ended_goal is not None:
                self.fhir.update("Goal", ended_goal["id"], ended_goal)
        for activity in care_plan.get("activity") or []:
            request = self._read_reference(activity.get("reference"), "ServiceRequest")
            ended_request = ending.end_plan_request(request, end=end) if request else None
            if ended_request is not None:
                self.fhir.update("ServiceRequest", ended_request["id"], ended_request)
        ended_plan = ending.end_care_plan(self._read("CarePlan", care_plan["id"]), ended=ended, end=end)
        if ended_plan is not None:
            self.fhir.update("CarePlan", ended_plan["id"], ended_plan)
