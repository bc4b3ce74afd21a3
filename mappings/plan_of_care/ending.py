"""Ending a plan of care (discharge, a cancelled referral): :func:`end_care_plan`, :func:`end_goal` and
:func:`end_plan_request` give the new versions of the CarePlan, its Goals and its ServiceRequests."""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Mapping
from datetime import date
from types import MappingProxyType
from typing import Any, Literal

from mappings.plan_of_care.codes import REVISION_EXTENSION

#: how a plan of care ends: ``completed`` at discharge, ``revoked`` when the referral is cancelled
PlanEnd = Literal["completed", "revoked"]
#: CarePlan.status codes after which nothing changes the plan
ENDED_PLAN_STATUSES = frozenset({"completed", "revoked", "entered-in-error"})
#: Goal.lifecycleStatus when the plan ends (R4 http://hl7.org/fhir/goal-status): a goal that was agreed
#: (accepted) or pursued (active, on-hold) is "no longer being sought" -> completed, whether it was met
#: or not (achievementStatus says that, and is left as the therapist recorded it); a goal never taken
#: up (proposed, planned) was abandoned -> cancelled. Other statuses are final and stay.
GOAL_STATUS_AT_END: Mapping[str, str] = MappingProxyType(
    {
        "accepted": "completed",
        "active": "completed",
        "on-hold": "completed",
        "proposed": "cancelled",
        "planned": "cancelled",
    }
)
_ENDED_ACTIVITY_STATUSES = frozenset({"completed", "cancelled", "stopped", "entered-in-error"})
_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.DOTALL)


def _date_of(value: Any) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if isinstance(value, str) else None
    except ValueError:
        return None


def _ended_narrative(care_plan: dict[str, Any], old: Any) -> dict[str, str]:
    """The narrative :func:`~mappings.plan_of_care.fhir.build_plan_of_care` writes, its first two lines
    (status, period) rebuilt from the CarePlan itself; the other lines (diagnosis, services) are kept
    from ``old`` when it is the hub's."""
    revision = next(
        (e.get("valueInteger") for e in care_plan.get("extension") or [] if e.get("url") == REVISION_EXTENSION), 1
    )
    title = care_plan.get("title") or "Plan of care"
    period = care_plan.get("period") or {}
    lines = [
        f"{title}, revision {revision} ({care_plan.get('status')})",
        f"Period {str(period.get('start', ''))[:10]} to {str(period.get('end', ''))[:10]}"
        + (f"; {care_plan['description']}" if care_plan.get("description") else ""),
    ]
    body = "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in lines)
    div = old.get("div") if isinstance(old, Mapping) else None
    paragraphs = _PARAGRAPH.findall(div) if isinstance(div, str) else []
    if len(paragraphs) > 2 and paragraphs[0].startswith(html.escape(f"{title}, revision", quote=False)):
        body += "".join(f"<p>{p}</p>" for p in paragraphs[2:])  # already escaped
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def end_care_plan(care_plan: Mapping[str, Any], *, ended: date, end: PlanEnd = "completed") -> dict[str, Any] | None:
    """The CarePlan ended on ``ended`` (the discharge date); None when it has ended already.

    * ``status`` ``end``: ``completed`` at discharge, ``revoked`` when the referral was cancelled;
    * ``period.end``: the earlier of the planned end and ``ended`` (never before ``period.start``): a
      patient discharged early ended the plan then, while a discharge recorded after the planned end
      does not stretch the period the physician certified;
    * the visit schedule (``activity.detail``) ``completed`` (``stopped`` for a revoked plan,
      ``cancelled`` when it had not started); the narrative tells the new status and period.

    ``care_plan`` is left untouched; everything else (goals, activities, revision, certification)
    stays as it was.
    """
    if care_plan.get("status") in ENDED_PLAN_STATUSES:
        return None
    new = copy.deepcopy(dict(care_plan))
    new["status"] = end
    period = dict(new.get("period") or {})
    start, planned = _date_of(period.get("start")), _date_of(period.get("end"))
    last = ended if planned is None else min(planned, ended)
    if start is not None and last < start:
        last = start
    period["end"] = last.isoformat()
    new["period"] = period
    for activity in new.get("activity") or []:
        detail = activity.get("detail") if isinstance(activity, dict) else None
        if isinstance(detail, dict) and detail.get("status") not in _ENDED_ACTIVITY_STATUSES:
            if detail.get("status") == "not-started":
                detail["status"] = "cancelled"
            else:
                detail["status"] = "completed" if end == "completed" else "stopped"
    if "text" in new:
        new["text"] = _ended_narrative(new, new["text"])
    return new


def end_goal(goal: Mapping[str, Any], *, on: date, reason: str) -> dict[str, Any] | None:
    """The Goal when its plan ends on ``on`` (:data:`GOAL_STATUS_AT_END`), with ``statusDate`` ``on``
    and ``statusReason`` ``reason``; None when its lifecycle status is final already.
    ``achievementStatus`` is never touched: a goal not achieved stays not achieved."""
    status = GOAL_STATUS_AT_END.get(str(goal.get("lifecycleStatus")))
    if status is None:
        return None
    new = copy.deepcopy(dict(goal))
    new["lifecycleStatus"] = status
    new["statusDate"] = on.isoformat()
    new["statusReason"] = reason
    return new


def end_plan_request(service_request: Mapping[str, Any], *, end: PlanEnd = "completed") -> dict[str, Any] | None:
    """A ServiceRequest of the plan (intent ``plan``) when the plan ends: ``completed`` at discharge,
    ``revoked`` when the referral was cancelled or the request was still a draft; None when it has
    ended already or is not a plan's request (the referrer's order is the referrer's to close)."""
    if service_request.get("intent") != "plan" or service_request.get("status") in ENDED_PLAN_STATUSES:
        return None
    new = copy.deepcopy(dict(service_request))
    new["status"] = "revoked" if end == "revoked" or new.get("status") == "draft" else "completed"
    return new
