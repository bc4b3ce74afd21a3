"""Referral status updates of the MLLP intake (:mod:`hub.inbound.hl7v2`): RRI^I12 and the 360X
OSU^O51, the answers to referrals the hub forwarded, read by :func:`mappings.hl7v2.read_status_update`.

* The referral Task: the FHIR id the partner echoes (RF1-11 / ORC-3 with the namespace ``THFHIR``)
  when present (a referral Task of this tenant whose identifier, when it has one, carries the
  referral number of RF1-6 / ORC-2), else the Task whose identifier is RF1-6 / ORC-2 (system|value:
  the referral number a REF^I12 gave the ServiceRequest and its Task), else the Task whose focus is
  the ServiceRequest with that identifier. None: ``AE`` with HL7 204 (unknown key identifier).
* The status moves through :meth:`hub.referrals.service.ReferralService.transition` (the BSeR state
  machine of :mod:`mappings.referral.task_state`): the referrer is told with a Communication and
  the Task update is routed as any other change.
* The status the Task already has is answered ``AA`` without a write (partners send again); so is
  "pending" (RF1-1 ``P``, ORC-5 ``SC``) for a Task still ``requested`` or ``received``.
* A move the state machine does not allow is ``AE`` with HL7 207 at RF1-1 / ORC-5, the text naming
  both statuses (FHIR codes only), and nothing is written; a status that is no FHIR Task status is
  103 at the same place, a BSeR business status not allowed with the status 103 at RF1-4 / ORC-25.4.
* Rejected and cancelled (RF1-1 ``R`` / ``E``) need a reason: the NTE (RRI) or ORC-16 (OSU) text,
  else the fixed text of :data:`DEFAULT_REASONS` (a partner that declines without saying why still
  declines; refusing its answer would leave the referral open).
* The message row points at the Task; its translated payload is the update as read (encrypted).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from hub.errors import Conflict, Gone, HubError, NotFound
from hub.fhir.service import FhirService
from hub.inbound.hl7v2_acks import store_refused
from hub.referrals.service import ReferralService
from mappings.fhir import jsonio
from mappings.hl7v2 import Header, Hl7Error, StatusUpdate, V2Message, read_status_update
from mappings.hl7v2.errors import (
    APPLICATION_INTERNAL_ERROR,
    DUPLICATE_KEY,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY_IDENTIFIER,
    ErrorLocation,
    at,
)
from mappings.referral.task_state import allowed_transitions, held_from_of
from mappings.referral.task_statuses import (
    BUSINESS_STATUS_ALLOWED,
    FHIR_TASK_STATUSES,
    REASON_REQUIRED,
    business_status_of,
    parse_business_status,
)

__all__ = ["DEFAULT_REASONS", "STATUS_MESSAGES", "write_status_update"]

#: message types that carry a referral status (applied to the referral Task, not translated)
STATUS_MESSAGES = frozenset({"RRI^I12", "OSU^O51"})
#: Task.statusReason when a partner rejects / cancels (RF1-1 R / E) without saying why
DEFAULT_REASONS = {
    "rejected": "rejected by the receiving system (no reason given)",
    "cancelled": "cancelled by the receiving system (no reason given)",
}
#: status answered -> the Task statuses for which it is no change ("pending", RF1-1 P / ORC-5 SC, reads
#: as requested: for a received Task too)
_SAME_STATUS = {"requested": frozenset({"requested", "received"})}


@dataclass(frozen=True, slots=True)
class _Fields:
    """Where an RRI^I12 / OSU^O51 carries each part of a status update (ERR locations)."""

    status: ErrorLocation
    business_status: ErrorLocation
    identifier: ErrorLocation
    task_id: ErrorLocation


_FIELDS = {
    "RRI": _Fields(at("RF1", 1, 1), at("RF1", 1, 4), at("RF1", 1, 6), at("RF1", 1, 11)),
    "OSU": _Fields(at("ORC", 1, 5), at("ORC", 1, 25, 1, 4), at("ORC", 1, 2), at("ORC", 1, 3)),
}


def write_status_update(
    fhir: FhirService, message: V2Message, header: Header, now: datetime
) -> tuple[str, dict[str, Any]]:
    """RRI^I12 / OSU^O51: move the referral Task; ("Task/<id>", the update as read and what it did)."""
    update = read_status_update(message)
    task_ref, changed = _apply_status_update(fhir, update, _FIELDS[header.message_code], now=now)
    payload = {"message": header.message_type, "task": task_ref, "changed": changed, **asdict(update)}
    return task_ref, payload


def _apply_status_update(
    fhir: FhirService, update: StatusUpdate, fields: _Fields, *, now: datetime
) -> tuple[str, bool]:
    """Move the referral Task ``update`` names to its status: ("Task/<id>", whether it changed).

    Raises :class:`Hl7Error` (answered AE) for an unknown referral (204), a status or business
    status the hub does not know or allow there (103) and a move the state machine refuses (207);
    the texts name FHIR codes and HL7 fields only."""
    if update.status not in FHIR_TASK_STATUSES:
        raise Hl7Error(TABLE_VALUE_NOT_FOUND, "the referral status is not a FHIR Task status", fields.status)
    task = _find_referral_task(fhir, update, fields)
    task_ref = f"Task/{task['id']}"
    current = task.get("status")
    code = None
    if update.business_status is not None:
        code = parse_business_status(update.business_status)
        if code is None or code not in BUSINESS_STATUS_ALLOWED.get(update.status, frozenset()):
            raise Hl7Error(
                TABLE_VALUE_NOT_FOUND,
                f"the BSeR business status is not allowed with the referral status {update.status}",
                fields.business_status,
            )
    if current == update.status or current in _SAME_STATUS.get(update.status, ()):
        if current != update.status or code is None or business_status_of(task) == code:
            return task_ref, False  # a repeat: nothing new
        # the same status, a new business status (in-progress: "unattended", "event-completed"...)
        try:
            ReferralService(fhir, now=now).set_business_status(task["id"], code)
        except HubError as exc:
            raise store_refused(exc) from None
        return task_ref, True
    allowed = allowed_transitions(current, held_from=held_from_of(task))
    if update.status not in allowed:
        raise Hl7Error(
            APPLICATION_INTERNAL_ERROR,
            f"{_status_phrase(current)} referral cannot become {update.status}"
            f" (allowed: {', '.join(sorted(allowed)) or 'none'})",
            fields.status,
            ack="AE",
        )
    reason = update.reason
    if update.status in REASON_REQUIRED and not (reason or "").strip():
        reason = DEFAULT_REASONS[update.status]
    try:
        ReferralService(fhir, now=now).transition(
            task["id"], update.status, reason=reason, business_status=update.business_status
        )
    except (NotFound, Gone):
        raise _unknown_referral(fields.identifier) from None
    except Conflict:  # the Task moved between the read above and the transition's own read
        text = f"the referral cannot become {update.status} now"
        raise Hl7Error(APPLICATION_INTERNAL_ERROR, text, fields.status, ack="AE") from None
    except HubError as exc:
        raise store_refused(exc) from None
    return task_ref, True


def _status_phrase(status: str | None) -> str:
    """'an accepted', 'a completed' (only FHIR codes are named)."""
    if status not in FHIR_TASK_STATUSES:
        return "a"
    return f"{'an' if status[0] in 'aeiou' else 'a'} {status}"


def _unknown_referral(where: ErrorLocation, text: str = "") -> Hl7Error:
    return Hl7Error(UNKNOWN_KEY_IDENTIFIER, text or "no referral of the hub has this identifier", where)


def _find_referral_task(fhir: FhirService, update: StatusUpdate, fields: _Fields) -> dict[str, Any]:
    """The referral Task of this tenant that ``update`` names (see the module docstring)."""
    if update.task_id:
        try:
            task = _loads(fhir.read("Task", update.task_id).content)
        except (NotFound, Gone):
            raise _unknown_referral(fields.task_id, "no referral Task of the hub has this FHIR id") from None
        values = {i.get("value") for i in task.get("identifier") or [] if isinstance(i, dict)}
        if not _is_referral(task) or (values and update.identifier_value not in values):
            raise _unknown_referral(fields.task_id, "the FHIR id names another referral than the identifier")
        return task
    token = _token(update.identifier_system, update.identifier_value)
    tasks = _matches(fhir, "Task", [("identifier", token), ("code", "fulfill")])
    if not tasks:
        requests = _matches(fhir, "ServiceRequest", [("identifier", token)])
        if len(requests) > 1:
            raise Hl7Error(DUPLICATE_KEY, "the identifier names more than one referral", fields.identifier)
        if requests:
            focus = f"ServiceRequest/{requests[0]['id']}"
            tasks = _matches(fhir, "Task", [("focus", focus), ("code", "fulfill")])
    if not tasks:
        raise _unknown_referral(fields.identifier)
    if len(tasks) > 1:
        raise Hl7Error(DUPLICATE_KEY, "the identifier names more than one referral", fields.identifier)
    return tasks[0]


def _token(system: str | None, value: str) -> str:
    """A token search value, ``system|value`` (backslashes and commas escaped)."""
    escaped = value.replace("\\", "\\\\").replace(",", "\\,")
    return f"{system}|{escaped}" if system else escaped


def _matches(fhir: FhirService, resource_type: str, items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    bundle = fhir.search(resource_type, items + [("_count", "2")], strict=True)
    return [
        jsonio.loads(jsonio.dumps(e["resource"]))
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == "match"
    ]


def _loads(content: str | None) -> dict[str, Any]:
    loaded = jsonio.loads(content or "{}")
    return loaded if isinstance(loaded, dict) else {}


def _is_referral(task: dict[str, Any]) -> bool:
    return any(c.get("code") == "fulfill" for c in (task.get("code") or {}).get("coding") or [])
