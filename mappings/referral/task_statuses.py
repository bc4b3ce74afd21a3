"""The referral Task's status table and BSeR business status codes (see :mod:`.task_state`).

``TRANSITIONS`` is the state machine table; :class:`BusinessStatus` the BSeR STU2 codes of
``BSER_BUSINESS_STATUS_SYSTEM``, with the code each status sets (``DEFAULT_BUSINESS_STATUS``) and the
codes that may accompany it (``BUSINESS_STATUS_ALLOWED``), written and read as ``Task.businessStatus``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

BSER_BUSINESS_STATUS_SYSTEM = "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS"

#: every code of FHIR R4 Task.status (those outside ``TRANSITIONS`` are not used by the referral loop)
FHIR_TASK_STATUSES = frozenset(
    "draft requested received accepted rejected ready cancelled in-progress on-hold failed completed "
    "entered-in-error".split()
)

TRANSITIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "requested": frozenset({"received", "accepted", "rejected", "cancelled", "on-hold"}),
        "received": frozenset({"accepted", "rejected", "cancelled", "on-hold"}),
        "accepted": frozenset({"in-progress", "cancelled", "on-hold"}),
        "in-progress": frozenset({"completed", "on-hold", "cancelled"}),
        "on-hold": frozenset({"requested", "received", "accepted", "in-progress", "cancelled"}),
        "rejected": frozenset(),
        "cancelled": frozenset(),
        "completed": frozenset(),
    }
)
#: statuses a hold may come from (and so resume to)
HOLDABLE = frozenset({"requested", "received", "accepted", "in-progress"})
#: target statuses that need ``Task.statusReason``
REASON_REQUIRED = frozenset({"rejected", "cancelled"})
#: target statuses that carry ``Task.statusReason`` when one is given (any other status drops it)
REASON_KEPT = frozenset({"rejected", "cancelled", "on-hold"})


class BusinessStatus(StrEnum):
    """BSeR STU2 Task business status codes (value = code in ``BSER_BUSINESS_STATUS_SYSTEM``)."""

    CREATED = "2.0"
    ACCEPTED = "3.0"
    DECLINED = "4.0"
    SCHEDULED = "5.1.1"
    UNATTENDED = "5.1.2"
    APPOINTMENT_CANCELLED = "5.1.3"
    EVENT_COMPLETED = "5.1.4"
    CANCELLATION_REQUESTED = "5.2"
    FULFILMENT_CANCELLED = "6.0"
    FULFILMENT_COMPLETED = "7.0"

    @property
    def display(self) -> str:
        return BUSINESS_STATUS_DISPLAY[self]

    @property
    def slug(self) -> str:
        """``appointment-cancelled`` for APPOINTMENT_CANCELLED (what an API may accept)."""
        return self.name.lower().replace("_", "-")


BUSINESS_STATUS_DISPLAY: Mapping[BusinessStatus, str] = MappingProxyType(
    {
        BusinessStatus.CREATED: "Service Request Created",
        BusinessStatus.ACCEPTED: "Service Request Accepted",
        BusinessStatus.DECLINED: "Service Request Declined",
        BusinessStatus.SCHEDULED: "Service Request Event Scheduled",
        BusinessStatus.UNATTENDED: "Scheduled Service Request Event Unattended",
        BusinessStatus.APPOINTMENT_CANCELLED: "Scheduled Service Request Event Cancelled",
        BusinessStatus.EVENT_COMPLETED: "Service Request Event Completed",
        BusinessStatus.CANCELLATION_REQUESTED: "Service Request Cancellation Requested",
        BusinessStatus.FULFILMENT_CANCELLED: "Service Request Fulfillment Cancelled",
        BusinessStatus.FULFILMENT_COMPLETED: "Service Request Fulfillment Completed",
    }
)

_B = BusinessStatus
#: the business status a transition into each status sets (``on-hold`` keeps the current one;
#: ``in-progress`` keeps the current one when it is allowed there, else "scheduled")
DEFAULT_BUSINESS_STATUS: Mapping[str, BusinessStatus] = MappingProxyType(
    {
        "requested": _B.CREATED,
        "received": _B.CREATED,
        "accepted": _B.ACCEPTED,
        "rejected": _B.DECLINED,
        "in-progress": _B.SCHEDULED,
        "cancelled": _B.FULFILMENT_CANCELLED,
        "completed": _B.FULFILMENT_COMPLETED,
    }
)
_EVENTS = frozenset({_B.SCHEDULED, _B.UNATTENDED, _B.APPOINTMENT_CANCELLED, _B.CANCELLATION_REQUESTED})
#: the business statuses that may accompany each Task.status
BUSINESS_STATUS_ALLOWED: Mapping[str, frozenset[BusinessStatus]] = MappingProxyType(
    {
        "requested": frozenset({_B.CREATED, _B.CANCELLATION_REQUESTED}),
        "received": frozenset({_B.CREATED, _B.CANCELLATION_REQUESTED}),
        "accepted": _EVENTS | {_B.ACCEPTED},
        "in-progress": _EVENTS | {_B.EVENT_COMPLETED},
        "on-hold": _EVENTS | {_B.CREATED, _B.ACCEPTED, _B.EVENT_COMPLETED},
        "rejected": frozenset({_B.DECLINED}),
        "cancelled": frozenset({_B.FULFILMENT_CANCELLED}),
        "completed": frozenset({_B.FULFILMENT_COMPLETED}),
    }
)


def business_status_concept(code: BusinessStatus) -> dict[str, Any]:
    """``Task.businessStatus`` for ``code``."""
    return {
        "coding": [{"system": BSER_BUSINESS_STATUS_SYSTEM, "code": code.value, "display": code.display}],
        "text": code.display,
    }


def business_status_of(task: Mapping[str, Any]) -> BusinessStatus | None:
    """The BSeR business status of ``task`` (None when it has none from the BSeR code system)."""
    concept = task.get("businessStatus")
    codings = concept.get("coding") if isinstance(concept, Mapping) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, Mapping) and coding.get("system") == BSER_BUSINESS_STATUS_SYSTEM:
            code: Any = coding.get("code")  # a JSON value: the enum checks it
            try:
                return BusinessStatus(code)
            except ValueError:
                return None
    return None


_BY_SLUG = {b.slug: b for b in BusinessStatus} | {
    "fulfillment-cancelled": _B.FULFILMENT_CANCELLED,
    "fulfillment-completed": _B.FULFILMENT_COMPLETED,
}


def parse_business_status(value: BusinessStatus | str) -> BusinessStatus | None:
    """A business status from its code (``5.1.1``), slug (``scheduled``, ``appointment cancelled``)
    or enum member; None when it is none of these."""
    if isinstance(value, BusinessStatus):
        return value
    try:
        return BusinessStatus(value)
    except ValueError:
        return _BY_SLUG.get(value.strip().lower().replace("_", "-").replace(" ", "-"))

