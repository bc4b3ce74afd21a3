"""The referral ``Task`` of the closed loop: its state machine, BSeR business status and feedback.

Modelled on HL7 Bidirectional Services eReferral (BSeR) and the FHIR workflow "Task" pattern: the
referrer's ``ServiceRequest`` is the Task's ``focus``; the clinic (``owner``) moves ``Task.status``
through the table below and records finer-grained progress in ``Task.businessStatus``; every change
is told to the referrer with a ``Communication``; at discharge the Task completes with an ``output``
pointing at a BSeR-style referral feedback ``Composition``.

Status transitions (``TRANSITIONS``; any status not listed has no way out)::

    requested   -> received | accepted | rejected* | cancelled* | on-hold
    received    -> accepted | rejected* | cancelled* | on-hold
    accepted    -> in-progress | cancelled* | on-hold
    in-progress -> completed | on-hold | cancelled*
    on-hold     -> <the status it was held from> | cancelled*
    rejected, cancelled, completed: terminal
    (* needs a reason: Task.statusReason)

``received`` is optional (a clinic may accept or reject straight from ``requested``), as in the FHIR
Task state machine. A hold remembers where it came from in the extension ``HELD_FROM_URL`` so that
it resumes there (a referral held for prior authorisation goes back to ``received``, a paused
episode goes back to ``in-progress``); without that memory any state a hold can come from is allowed.

Business status: the code system of BSeR STU2, ``http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS``
(2.0.0-ballot; STU1 1.0.0 numbered "cancellation requested" 5.4 and had no 5.1.x event codes).
``DEFAULT_BUSINESS_STATUS`` gives the code a transition sets, ``BUSINESS_STATUS_ALLOWED`` the codes
that may accompany each status (events such as "scheduled" or "unattended" are recorded without a
status change by :func:`record_event`).

The status table and the business status codes are in :mod:`.task_statuses`, the referral feedback
(the Composition at discharge) in :mod:`.feedback`.

Pure: no I/O, no clock (``now`` is passed in; a naive ``datetime`` is taken as UTC, as the hub's
clock gives), ids are uuid5 over type + system + value; inputs are never mutated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from mappings.fhir.ids import deterministic_id
from mappings.referral.task_statuses import (
    BUSINESS_STATUS_ALLOWED,
    DEFAULT_BUSINESS_STATUS,
    FHIR_TASK_STATUSES,
    HOLDABLE,
    REASON_KEPT,
    REASON_REQUIRED,
    TRANSITIONS,
    BusinessStatus,
    business_status_concept,
    business_status_of,
    parse_business_status,
)

TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
COMMUNICATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/communication-category"
#: local extension (valueCode): the status an ``on-hold`` Task resumes to
HELD_FROM_URL = "https://therapy-hub.example/StructureDefinition/task-held-from"

#: statuses whose entry keeps a current business status that is allowed there
_KEEPS_BUSINESS_STATUS = frozenset({"on-hold", "in-progress"})


# ---------------------------------------------------------------- errors


class TransitionError(ValueError):
    """Base of the errors of this module (a 409 Conflict at the API)."""


def _quote(status: str | None) -> str:
    # only FHIR codes are quoted back: anything else is client text
    return repr(status) if status in FHIR_TASK_STATUSES else "an unknown status"


class IllegalTransition(TransitionError):
    """``current`` -> ``target`` is not in the table; ``allowed`` is what ``current`` may become."""

    def __init__(
        self, current: str | None, target: str | None, allowed: frozenset[str], message: str | None = None
    ) -> None:
        self.current = current
        self.target = target
        self.allowed = allowed
        listed = ", ".join(sorted(allowed)) or "none (terminal status)"
        super().__init__(
            message
            or f"A referral Task cannot go from {_quote(current)} to {_quote(target)}; allowed: {listed}"
        )


class IllegalBusinessStatus(IllegalTransition):
    """A business status that is unknown or not allowed with the Task.status (``allowed``: codes)."""

    def __init__(self, status: str, business_status: str | None, allowed: frozenset[str]) -> None:
        # only known codes are quoted back: anything else is client text
        shown = f"Business status {business_status!r}" if business_status else "An unknown business status"
        listed = ", ".join(f"{BusinessStatus(c).slug} ({c})" for c in sorted(allowed)) or "none"
        super().__init__(
            status,
            business_status,
            allowed,
            f"{shown} is not allowed with Task.status {_quote(status)}; allowed: {listed}",
        )


class MissingReason(TransitionError):
    """``rejected`` and ``cancelled`` need a reason (``Task.statusReason``)."""

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__(f"A referral Task going to {target!r} needs a reason (Task.statusReason)")


# ---------------------------------------------------------------- the state machine


def allowed_transitions(status: str | None, *, held_from: str | None = None) -> frozenset[str]:
    """The statuses ``status`` may go to (empty for terminal and unknown statuses).

    For ``on-hold``, ``held_from`` (the status the hold came from) narrows the resumption to that
    status (plus ``cancelled``); unknown, any status a hold can come from is allowed.
    """
    allowed = TRANSITIONS.get(status or "", frozenset())
    if status == "on-hold" and held_from in HOLDABLE:
        return frozenset({held_from, "cancelled"})
    return allowed


def _has_reason(reason: str | Mapping[str, Any] | None) -> bool:
    if isinstance(reason, str):
        return bool(reason.strip())
    if isinstance(reason, Mapping):
        text = reason.get("text")
        return bool(reason.get("coding")) or (isinstance(text, str) and bool(text.strip()))
    return False


def check_transition(
    current: str | None,
    target: str | None,
    *,
    reason: str | Mapping[str, Any] | None = None,
    held_from: str | None = None,
) -> None:
    """Raise :class:`IllegalTransition` unless ``current`` -> ``target`` is in the table, and
    :class:`MissingReason` when ``target`` needs a reason (text or a CodeableConcept) and has none."""
    allowed = allowed_transitions(current, held_from=held_from)
    if target not in allowed:
        raise IllegalTransition(current, target, allowed)
    if target in REASON_REQUIRED and not _has_reason(reason):
        raise MissingReason(target)


# ---------------------------------------------------------------- helpers


def fhir_datetime(now: datetime) -> str:
    """A FHIR ``dateTime``/``instant`` in UTC (a naive ``now`` is UTC, as the hub's clock gives)."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    spec = "milliseconds" if now.microsecond else "seconds"
    return now.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _reference(ref: str) -> dict[str, str]:
    return {"reference": ref}



def _allowed_business_status(status: str, value: BusinessStatus | str) -> BusinessStatus:
    allowed = BUSINESS_STATUS_ALLOWED.get(status, frozenset())
    code = parse_business_status(value)
    if code is None or code not in allowed:
        raise IllegalBusinessStatus(status, code.value if code else None, frozenset(b.value for b in allowed))
    return code


def held_from_of(task: Mapping[str, Any]) -> str | None:
    """The status an ``on-hold`` Task resumes to (``HELD_FROM_URL``), None when it does not say."""
    for extension in task.get("extension") or []:
        if isinstance(extension, Mapping) and extension.get("url") == HELD_FROM_URL:
            value = extension.get("valueCode")
            return value if isinstance(value, str) else None
    return None



def _set_held_from(task: dict[str, Any], held_from: str | None) -> None:
    others = [
        e
        for e in task.get("extension") or []
        if not (isinstance(e, Mapping) and e.get("url") == HELD_FROM_URL)
    ]
    if held_from is not None:
        others.append({"url": HELD_FROM_URL, "valueCode": held_from})
    if others:
        task["extension"] = others
    else:
        task.pop("extension", None)


def _reason_concept(reason: str | Mapping[str, Any]) -> dict[str, Any]:
    return {"text": reason.strip()} if isinstance(reason, str) else copy.deepcopy(dict(reason))


def _outputs(output: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    if output is None:
        return []
    if isinstance(output, Mapping):
        return [copy.deepcopy(dict(output))]
    return [copy.deepcopy(dict(item)) for item in output]


# ---------------------------------------------------------------- resources


def referral_task(
    service_request_ref: str,
    patient_ref: str | None,
    requester_ref: str | None,
    owner_ref: str,
    *,
    identifier: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The referral Task as it starts: ``requested``, business status "created", intent ``order``,
    code ``fulfill``, focus the ServiceRequest, for the patient, owned by the clinic Organization.

    ``identifier`` (a FHIR Identifier, usually the referral number the referrer gave) becomes
    ``Task.identifier``; the Task id is uuid5 over ``Task`` + its system + value, so a replayed
    referral opens the same Task. ``patient_ref`` / ``requester_ref`` are left out when None.
    """
    value = identifier.get("value")
    if not isinstance(value, str) or not value:
        raise ValueError("the referral identifier needs a value")
    system = identifier.get("system")
    now_text = fhir_datetime(now)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": deterministic_id("Task", system if isinstance(system, str) else "", value),
        "identifier": [copy.deepcopy(dict(identifier))],
        "status": "requested",
        "businessStatus": business_status_concept(BusinessStatus.CREATED),
        "intent": "order",
        "code": {
            "coding": [
                {"system": TASK_CODE_SYSTEM, "code": "fulfill", "display": "Fulfill the focal request"}
            ]
        },
        "focus": _reference(service_request_ref),
    }
    if patient_ref:
        task["for"] = _reference(patient_ref)
    task["authoredOn"] = now_text
    task["lastModified"] = now_text
    if requester_ref:
        task["requester"] = _reference(requester_ref)
    task["owner"] = _reference(owner_ref)
    return task


def with_business_status(task: Mapping[str, Any], code: BusinessStatus, *, now: datetime) -> dict[str, Any]:
    """A new Task: ``task`` with the BSeR business status ``code`` under its unchanged status (e.g.
    in progress, "unattended" after "scheduled"). Raises ValueError if ``code`` is not allowed there."""
    if code not in BUSINESS_STATUS_ALLOWED.get(str(task.get("status")), frozenset()):
        raise ValueError(f"the business status {code.value} is not allowed with the status {task.get('status')}")
    new = copy.deepcopy(dict(task))
    new["businessStatus"] = business_status_concept(code)
    new["lastModified"] = fhir_datetime(now)
    return new


def apply_transition(
    task: Mapping[str, Any],
    target_status: str,
    *,
    now: datetime,
    reason: str | Mapping[str, Any] | None = None,
    business_status: BusinessStatus | str | None = None,
    output: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A new Task: ``task`` moved to ``target_status`` (``task`` itself is left untouched).

    Checks the transition (:func:`check_transition`, a hold resuming only where it came from), sets
    ``status``, ``businessStatus`` (``business_status`` — a code, slug or :class:`BusinessStatus` —
    must be allowed with the target; by default ``DEFAULT_BUSINESS_STATUS``), ``statusReason`` for
    rejected / cancelled / on-hold (dropped on any other status), ``lastModified`` = ``now``, and
    appends ``output`` (one Task.output element or several). A generated narrative is dropped, as
    it would no longer tell the truth.
    """
    current = task.get("status")
    held_from = held_from_of(task) if current == "on-hold" else None
    check_transition(current, target_status, reason=reason, held_from=held_from)
    if business_status is not None:
        code: BusinessStatus | None = _allowed_business_status(target_status, business_status)
    else:
        existing = business_status_of(task)
        keeps = target_status in _KEEPS_BUSINESS_STATUS or current == "on-hold"  # entering or resuming
        if keeps and existing in BUSINESS_STATUS_ALLOWED[target_status]:
            code = existing
        else:
            code = DEFAULT_BUSINESS_STATUS.get(target_status)

    new = copy.deepcopy(dict(task))
    new["status"] = target_status
    if code is not None:
        new["businessStatus"] = business_status_concept(code)
    if target_status in REASON_KEPT and reason is not None and _has_reason(reason):
        new["statusReason"] = _reason_concept(reason)
    else:
        new.pop("statusReason", None)
    _set_held_from(new, current if target_status == "on-hold" else None)
    new["lastModified"] = fhir_datetime(now)
    outputs = _outputs(output)
    if outputs:
        new["output"] = list(new.get("output") or []) + outputs
    if isinstance(new.get("text"), Mapping) and new["text"].get("status") == "generated":
        del new["text"]
    return new


def record_event(
    task: Mapping[str, Any],
    business_status: BusinessStatus | str,
    *,
    now: datetime,
    output: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A new Task with a business status recorded without a status change (an appointment
    scheduled, unattended, cancelled or completed; the referrer asking to cancel); it must be
    allowed with the Task's status (``BUSINESS_STATUS_ALLOWED``)."""
    status = task.get("status")
    code = _allowed_business_status(status if isinstance(status, str) else "", business_status)
    new = copy.deepcopy(dict(task))
    new["businessStatus"] = business_status_concept(code)
    new["lastModified"] = fhir_datetime(now)
    outputs = _outputs(output)
    if outputs:
        new["output"] = list(new.get("output") or []) + outputs
    return new


def communication_for_change(
    task: Mapping[str, Any],
    *,
    sender_ref: str,
    recipient_ref: str,
    now: datetime,
    text: str,
) -> dict[str, Any]:
    """The Communication that tells the referrer of a change of ``task`` (status completed, a
    notification): basedOn and partOf the Task, about its ServiceRequest, subject its patient.

    Its id is uuid5 over the Task id, version, status, business status, lastModified and ``text``:
    the same change told twice is the same Communication.
    """
    task_ref = f"Task/{task['id']}"
    code = business_status_of(task)
    meta = task.get("meta")
    version = meta.get("versionId") if isinstance(meta, Mapping) else None
    changed = task.get("lastModified") or fhir_datetime(now)
    parts = (version, task.get("status"), code.value if code else None, changed, text)
    key = "|".join(str(part or "") for part in parts)
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "id": deterministic_id("Communication", task_ref, key),
        "basedOn": [_reference(task_ref)],
        "partOf": [_reference(task_ref)],
        "status": "completed",
        "category": [
            {
                "coding": [
                    {
                        "system": COMMUNICATION_CATEGORY_SYSTEM,
                        "code": "notification",
                        "display": "Notification",
                    }
                ]
            }
        ],
    }
    subject = task.get("for")
    if isinstance(subject, Mapping) and subject.get("reference"):
        communication["subject"] = _reference(subject["reference"])
    focus = task.get("focus")
    if isinstance(focus, Mapping) and focus.get("reference"):
        communication["about"] = [_reference(focus["reference"])]
    communication["sent"] = fhir_datetime(now)
    communication["recipient"] = [_reference(recipient_ref)]
    communication["sender"] = _reference(sender_ref)
    communication["payload"] = [{"contentString": text}]
    return communication
