"""How the documents of a referral went to the referrer: the channel (fax, Direct, FHIR, HL7 ...) and
the delivery status of each, from the delivery jobs of the messages about the document's Task (the
certification or progress-report obligation) or, failing those, about its CarePlan.

One entry per connector that a document was routed to: its latest job (a retry, a replay or a
fallback of a dead letter is the same delivery, later). Statuses are the sync engine's job statuses
(``pending``, ``running``, ``retrying``, ``awaiting`` the partner's confirmation, ``succeeded``,
``dead``); names of connectors, errors and
payloads are not shown here (the admin API has them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from hub.kit import parse_reference
from hub.store import delivery_repository as repo

__all__ = ["CHANNELS", "DOCUMENT_OF", "channel_of", "deliveries_of"]

#: connector kind -> the channel a referral view names
CHANNELS = {"fax": "fax", "direct": "Direct", "fhir_rest": "FHIR", "fhir_emr": "FHIR", "hl7v2": "HL7",
            "webhook": "webhook"}
#: obligation kind -> the document it sends
DOCUMENT_OF = {"certification": "plan-of-care", "recertification": "plan-of-care",
               "progress-report": "progress-report"}


def channel_of(kind: str) -> str:
    return CHANNELS.get(kind, kind)


def _views(rows: Iterable[tuple[str, Any, str]]) -> dict[str, list[dict[str, Any]]]:
    latest: dict[str, dict[int, tuple[Any, str]]] = {}
    for resource_id, job, kind in rows:  # oldest first: the last one per connector stays
        latest.setdefault(resource_id, {})[job.connector_id] = (job, kind)
    return {
        resource_id: [{"channel": channel_of(kind), "status": job.status,
                       "at": (job.finished_at or job.updated_at).isoformat() if (job.finished_at or job.updated_at)
                       else None}
                      for job, kind in sorted(by_connector.values(), key=lambda item: item[0].id)]
        for resource_id, by_connector in latest.items()
    }


def deliveries_of(session: Session, *, tenant: str, tasks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Task id -> its deliveries (the Task's own messages, else its focus CarePlan's)."""
    by_task = _views(repo.jobs_about(session, tenant=tenant, resource_type="Task",
                                     resource_ids=[str(t["id"]) for t in tasks if t.get("id")]))
    plans: dict[str, str] = {}
    for task in tasks:
        focus = task.get("focus") if isinstance(task.get("focus"), dict) else {}
        parsed = parse_reference(str(focus.get("reference") or ""))
        if parsed and parsed[0] == "CarePlan" and str(task.get("id")) not in by_task:
            plans[str(task.get("id"))] = parsed[1]
    by_plan = _views(repo.jobs_about(session, tenant=tenant, resource_type="CarePlan",
                                     resource_ids=sorted(set(plans.values()))))
    return {str(t.get("id")): by_task.get(str(t.get("id"))) or by_plan.get(plans.get(str(t.get("id")), ""), [])
            for t in tasks}
