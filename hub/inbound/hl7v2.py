"""Inbound HL7 v2 (MLLP listener): store first, translate, write, then acknowledge.

:func:`handle_hl7v2` takes REF^I12, OMG^O19 and ADT^A04/A08/A31 (translated by :mod:`mappings.hl7v2`
and written as a FHIR transaction) and the answers to referrals the hub forwarded, RRI^I12 and the
360X OSU^O51, which move the referral Task ("Referral status updates" below). For each message it
returns the bytes of the acknowledgement:

1. The message is parsed just enough to read its header (MSH-10, the control id). A repeat of a
   control id already received from the same listener (``source``) gets the acknowledgement that
   was sent the first time, and nothing is written (the inbox: unique (tenant, source, external id)).
2. In ONE transaction: the raw message is stored (``record_inbound``, encrypted), translated by
   :mod:`mappings.hl7v2`, written to the FHIR store through the FHIR service (validation, versions,
   the referral Task that a therapy ServiceRequest opens, routing into the outbox), the message
   marked translated, and the acknowledgement recorded as an ``acknowledged`` event.
   A content error (HL7 100-103, or resources the store refuses) rolls back the FHIR writes only:
   the message stays, ``rejected`` with the reason, and the answer is ``AE`` with an ERR; an
   unsupported message type, event, processing id or version is kept the same way and answered
   ``AR``. A message whose header cannot be read is kept as rejected (no control id) and answered.
3. Commit, enqueue the delivery jobs, THEN answer. When the store cannot be written, the answer
   is ``AR`` (HL7 207) and nothing is kept: the sender must send again.

Enhanced mode (MSH-15/16 valued): the answer is the accept acknowledgement (``CA`` once the message
is safely stored, ``CR`` for what the hub refuses outright, ``CE`` when it could not be stored),
and only when MSH-15 asks for it. The application acknowledgement (AA/AE/AR) is recorded in the
message's events and, when MSH-16 asks for it, sent to the sender's own listener: an outbound
message to the ``hl7v2`` connector named by ``ack_connector`` (``hub mllp --ack-connector``), queued
in the same transaction and delivered after commit like any routed change, with MSH-15 ``AL`` so the
partner confirms it. Without a back-channel the message gets a ``deferred`` event that says so.

Referral status updates (RRI^I12, OSU^O51), read by :func:`mappings.hl7v2.read_status_update`:

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

import json
import logging
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.errors import Conflict, Gone, HubError, NotFound, describe
from hub.fhir.service import FhirService
from hub.kit import utcnow
from hub.settings import Settings
from hub.store import repository
from hub.store import sync_repository as repo
from hub.store.models import Message
from hub.sync import events as ev
from hub.sync.config import SyncConfig
from hub.sync.inbox import Inbox
from hub.sync.outbox import Outbox
from hub.unit_of_work import unit_of_work
from mappings.fhir import jsonio
from mappings.fhir.references import replace_references
from mappings.hl7v2 import (
    Header,
    Hl7Error,
    StatusUpdate,
    V2Message,
    accept_ack_wanted,
    application_ack_wanted,
    build_ack,
    check_supported,
    is_enhanced,
    parse,
    read_header,
    read_status_update,
    structure_warnings,
)
from mappings.hl7v2.errors import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    DUPLICATE_KEY,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY_IDENTIFIER,
    UNSUPPORTED_VERSION_ID,
    ErrorLocation,
    at,
)
from mappings.hl7v2.inbound import to_fhir
from mappings.referral.intake import NPI_SYSTEM
from mappings.referral.task_state import allowed_transitions, held_from_of
from mappings.referral.task_statuses import (
    BUSINESS_STATUS_ALLOWED,
    FHIR_TASK_STATUSES,
    REASON_REQUIRED,
    business_status_of,
    parse_business_status,
)

__all__ = ["ACK_APPLICATION", "handle_frame_error", "handle_hl7v2", "run_listener"]

log = logging.getLogger("hub.inbound.hl7v2")

#: MSH-3 of the hub's acknowledgements
ACK_APPLICATION = "THERAPY_HUB"
#: tries of a message whose writes collided with a concurrent message's (same resources)
ATTEMPTS = 3
#: marks the ``acknowledged`` event whose detail is the acknowledgement sent (kept for repeats)
ACK_PREFIX = "MSH"
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


def _control_id() -> str:
    return uuid.uuid4().hex[:20].upper()


def _answer(
    header: Header | None,
    code: str,
    now: datetime,
    error: Hl7Error | None = None,
    warnings: list[Hl7Error] | None = None,
) -> str:
    return build_ack(
        header, code, control_id=_control_id(), now=now, error=error, sending_application=ACK_APPLICATION,
        warnings=warnings or (),
    )


def handle_hl7v2(
    settings: Settings,
    tenant: str,
    raw: bytes,
    source: str,
    *,
    now: datetime | None = None,
    line_endings: str = "normalise",
    ack_connector: str | None = None,
) -> bytes:
    """Store, translate and write one HL7 v2 message; the acknowledgement to send back (may be b"").

    ``ack_connector``: the ``hl7v2`` connector that reaches the sender's own listener, over which an
    enhanced-mode application acknowledgement is sent (see the module docstring)."""
    now = now or utcnow()
    try:
        message = parse(raw, line_endings=line_endings)
        header = read_header(message, required=False)
    except Hl7Error as exc:
        return _store_unreadable(settings, tenant, raw, source, exc, now)
    control_id = header.control_id or None
    if control_id is not None:
        earlier = _earlier_answer(settings, tenant, source, control_id)
        if earlier is not None:
            log.info("hub.hl7v2.duplicate", extra={"source": source, "tenant": tenant})
            return earlier
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _process(settings, tenant, raw, source, message, header, control_id, now, ack_connector)
        except IntegrityError:
            # the same control id arrived on another connection at the same moment: answer as it was;
            # else another message created the same resources (same ids) first: do it again
            earlier = _earlier_answer(settings, tenant, source, control_id) if control_id else None
            if earlier is not None:
                return earlier
            if attempt == ATTEMPTS:
                return _internal_error(header, now, "the message is being processed; send it again")
        except Exception:
            log.exception("hub.hl7v2.store_failed", extra={"source": source, "tenant": tenant})
            return _internal_error(header, now, "application internal error; send the message again")
    raise AssertionError("unreachable")


def _internal_error(header: Header, now: datetime, text: str) -> bytes:
    error = Hl7Error(APPLICATION_INTERNAL_ERROR, text, ErrorLocation("MSH", 1, 10), ack="AR")
    code = "CE" if is_enhanced(header) else "AR"
    return _answer(header, code, now, error).encode("utf-8")


def _process(
    settings: Settings,
    tenant: str,
    raw: bytes,
    source: str,
    message: V2Message,
    header: Header,
    control_id: str | None,
    now: datetime,
    ack_connector: str | None = None,
) -> bytes:
    from hub.security.inbound import InboundPolicy
    from hub.services import fhir_service

    with unit_of_work(settings) as session:
        repository.ensure_tenant(session, tenant_id=tenant, name=f"Clinic {tenant}", now=now)
        inbox = Inbox(session, tenant=tenant, settings=settings, clock=lambda: now)
        policy = InboundPolicy.for_config(tenant=tenant, source=source, channel="mllp",
                                          config=_listener_config(session, settings, tenant, ack_connector or source))
        row = inbox.record_inbound(
            source=source, external_id=control_id, raw=raw, event=f"hl7v2.{header.message_code or 'unknown'}"
        )
        error: Hl7Error | None = None
        warnings: list[Hl7Error] = []  # segments kept although out of place: ERR severity W in the AA
        savepoint = session.begin_nested()
        try:
            full = read_header(message)
            check_supported(full)
            warnings = _version_warnings(full) + structure_warnings(message, full)
            fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir", clock=lambda: now,
                                policy=policy)
            if full.message_type in STATUS_MESSAGES:
                primary, payload = _write_status_update(fhir, message, full, now)
            else:
                primary, payload = _write_translation(fhir, message, full, now)
            savepoint.commit()
        except Hl7Error as exc:
            savepoint.rollback()
            error, warnings = exc, []
        audit = FhirService(session, tenant=tenant, base_url=settings.fhir_base or "/fhir", clock=lambda: now)
        if error is None:
            resource_type, _, resource_id = primary.partition("/")
            policy.audit(audit, interaction="update" if full.message_type in STATUS_MESSAGES else "transaction",
                         outcome=0, resource_type=resource_type, resource_id=resource_id)
            inbox.mark_translated(row, {"resourceType": resource_type}, resource_id=resource_id,
                                  translated=json.dumps(payload))
            ack_code = "AA"
        else:
            policy.audit(audit, interaction="transaction", outcome=4, description=f"HL7 {error.ack_code}")
            inbox.mark_rejected(row, str(error))
            ack_code = error.ack_code
        text = _answer(header, ack_code, now, error, warnings)
        _record_ack(inbox, row, text, now)
        answer = _wire_answer(header, ack_code, now, error, text)
        # a message refused outright gets CR on the wire and, per HL7, no application ACK after it
        if is_enhanced(header) and ack_code != "AR" and application_ack_wanted(header, ack_code == "AA"):
            outbox = Outbox(session, tenant=tenant, settings=settings, clock=lambda: now)
            _send_application_ack(inbox, outbox, row, header, ack_code, error, now, ack_connector, warnings)
    log.info(
        "hub.hl7v2.received",
        extra={"source": source, "tenant": tenant, "ack": ack_code, "type": header.message_type},
    )
    return answer


def _version_warnings(header: Header) -> list[Hl7Error]:
    """A later version than 2.5.1 (:data:`mappings.hl7v2.tables.READ_AS_VERSION`) is read as 2.5.1:
    the acknowledgement says so with an ERR of severity W at MSH-12."""
    from mappings.hl7v2 import tables

    if header.version not in tables.READ_AS_VERSION:
        return []
    return [Hl7Error(UNSUPPORTED_VERSION_ID, f"HL7 version {header.version} read as {tables.VERSION}",
                     at("MSH", 1, 12), severity="W")]


def _listener_config(session: Session, settings: Settings, tenant: str, name: str) -> dict[str, Any]:
    """The config of the sender's ``hl7v2`` connector (``ack_connector``, else the one named like the
    listener) for its ``inbound_types``; {} (the default policy) when there is none."""
    instance = repo.connector_by_name(session, tenant=tenant, name=name)
    if instance is None or instance.kind != "hl7v2":
        return {}
    return SyncConfig(session, tenant=tenant, settings=settings).connector_config(instance)


def _write_translation(
    fhir: FhirService, message: V2Message, header: Header, now: datetime
) -> tuple[str, dict[str, Any]]:
    """REF / OMG / ADT: translate to a transaction Bundle and write it; (the main resource, the Bundle)."""
    from hub.referrals.service import ReferralService

    with fhir.internal():  # the hub's own clinic record, not the sender's write (no inbound policy)
        clinic_ref = ReferralService(fhir, now=now).ensure_clinic()
    translation = to_fhir(message, header, clinic_ref=clinic_ref, now=now)
    referral = header.message_code in ("REF", "OMG")
    kept = _scope_referrals(fhir, message, header, translation.bundle, clinic_ref=clinic_ref, now=now) \
        if referral else set()
    _resolve_patients(fhir, translation.bundle, skip=kept)
    if referral:
        _keep_writable(fhir, translation.bundle, now=now)
    try:
        fhir.process_bundle(translation.bundle, return_preference="minimal")
    except HubError as exc:
        raise _store_refused(exc) from None
    return translation.primary[0], translation.bundle


# ------------------------------------------------------------------ referral status updates


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


def _write_status_update(
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
    from hub.referrals.service import ReferralService

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
            raise _store_refused(exc) from None
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
        raise _store_refused(exc) from None
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


def _wire_answer(header: Header, ack_code: str, now: datetime, error: Hl7Error | None, text: str) -> bytes:
    """What goes back on the connection: the application ACK (original mode), else the accept ACK."""
    if not is_enhanced(header):
        return text.encode("utf-8")
    ok = ack_code == "AA"
    if not accept_ack_wanted(header, ok):
        return b""
    commit = "CR" if ack_code == "AR" else "CA"
    return _answer(header, commit, now, error if commit == "CR" else None).encode("utf-8")


def _send_application_ack(
    inbox: Inbox,
    outbox: Outbox,
    row: Message,
    header: Header,
    ack_code: str,
    error: Hl7Error | None,
    now: datetime,
    ack_connector: str | None,
    warnings: list[Hl7Error] | None = None,
) -> None:
    """Enhanced mode: the application ACK goes to the sender's listener as a message of its own,
    through the outbox (retried, visible, replayable). It asks for an accept ACK (MSH-15 ``AL``) so
    that the delivery knows it arrived, and for no application ACK of itself (MSH-16 ``NE``)."""
    if ack_connector is None:
        inbox.event(row, ev.DEFERRED, at=now,
                    detail="the sender asked for an application acknowledgement (MSH-16) and no back-channel "
                           "is configured (hub mllp --ack-connector)")
        return
    text = build_ack(header, ack_code, control_id=_control_id(), now=now, error=error,
                     sending_application=ACK_APPLICATION, accept_ack_type="AL", application_ack_type="NE",
                     warnings=warnings or ())
    try:
        outbox.send_raw(connector=ack_connector, raw=text, event="hl7v2.ACK", reply_to=row, kind="hl7v2")
    except NotFound:
        inbox.event(row, ev.FAILED, at=now, detail="the application acknowledgement cannot be sent: "
                                                   f"no hl7v2 connector named {ack_connector!r}")


def _store_refused(exc: HubError) -> Hl7Error:
    """The FHIR store refused the translated resources: an AE naming the FHIR element (no values)."""
    detail = describe(exc, limit=3)
    return Hl7Error(
        APPLICATION_INTERNAL_ERROR,
        f"the FHIR store refused the translated resources ({detail})",
        ErrorLocation("MSH"),
        ack="AE",
    )


def _referrer_policy(fhir: FhirService, requester: str) -> Any:
    """What the /referrals intake lets the referring physician ``requester`` change: the sender of an
    HL7 v2 referral acts for the referring provider its PRD names, and may change no more than they."""
    from hub.security.policy import AccessPolicy
    from hub.security.principal import Principal

    principal = Principal.of(f"{fhir.policy.principal.client_id}", fhir.tenant, "referrer", "system/*.cruds",
                             requester)
    return AccessPolicy(principal, session=fhir.session, tenant=fhir.tenant)


def _scope_referrals(fhir: FhirService, message: V2Message, header: Header, bundle: dict[str, Any], *,
                     clinic_ref: str, now: datetime) -> set[str]:
    """The id rules of the /referrals intake (:meth:`ReferralService.intake_scopes`), applied to a
    translated REF^I12 / OMG^O19: another requester's referral number gets ids of the sender's own
    (ServiceRequest, Conditions, DocumentReferences; the hub opens a Task of its own), a patient
    outside the requester's compartment with other demographics a record of its own, and another
    patient's coverage is not linked. Returns the Patients given ids of their own (not to be
    matched by identifier to another's record again)."""
    from hub.referrals.service import ReferralService
    from mappings.hl7v2.referral_messages import referrals_of
    from mappings.referral.intake import build_referral_bundle, deterministic_id

    moved: dict[str, str] = {}
    kept: set[str] = set()
    for referral in referrals_of(message, header, now=now):
        model = referral.model
        requester = f"PractitionerRole/{deterministic_id('PractitionerRole', NPI_SYSTEM, model.referrer.npi)}"
        with _acting_for(fhir, requester):
            scopes = ReferralService(fhir, now=now).intake_scopes(model, clinic_ref=clinic_ref)
        if not scopes:
            continue
        plain = build_referral_bundle(model, clinic_ref=clinic_ref, now=now)["entry"]
        scoped = build_referral_bundle(model, clinic_ref=clinic_ref, now=now, **scopes)["entry"]
        for before, after in zip(plain, scoped, strict=True):
            old, new = before["resource"], after["resource"]
            if old["id"] != new["id"]:
                moved[f"{old['resourceType']}/{old['id']}"] = f"{new['resourceType']}/{new['id']}"
        if "referral_scope" in scopes:  # the diagnoses past the first (the HL7 mapping adds them)
            ref_key = f"{model.identifier.system}|{model.identifier.value}"
            scoped_key = f"{ref_key}|{scopes['referral_scope']}"
            for code, _display in referral.extra_reasons:
                moved[f"Condition/{deterministic_id('Condition', ref_key, code)}"] = (
                    f"Condition/{deterministic_id('Condition', scoped_key, code)}")
        if "patient_scope" in scopes:
            kept.add(moved.get(f"Patient/{referral.patient['id']}", ""))
    if moved:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            new_ref = moved.get(f"{resource['resourceType']}/{resource['id']}")
            if new_ref is not None:
                resource["id"] = new_ref.partition("/")[2]
                entry["request"]["url"] = new_ref
                entry["fullUrl"] = f"urn:uuid:{resource['id']}"
        bundle.update(replace_references(bundle, moved))
    return kept


def _keep_writable(fhir: FhirService, bundle: dict[str, Any], *, now: datetime) -> None:
    """The write rule of the /referrals intake (:meth:`ReferralService.intake_writes`): what exists
    and the referring provider may not change (Patient, Coverage, Practitioner, PractitionerRole) is
    linked as it is, not written; new records and the sender's own referral are written."""
    from hub.referrals.service import ReferralService

    requester = next(((e["resource"].get("requester") or {}).get("reference") or "" for e in bundle["entry"]
                      if e["resource"]["resourceType"] == "ServiceRequest"), "")
    with _acting_for(fhir, requester):
        intake = ReferralService(fhir, now=now)
        bundle["entry"] = [e for e in bundle["entry"] if intake.intake_writes(e["resource"])]


@contextmanager
def _acting_for(fhir: FhirService, requester: str) -> Iterator[None]:
    """Decide as the /referrals intake decides for the referring physician ``requester``: the sender
    of an HL7 v2 referral acts for the referring provider its PRD names, and may change no more than
    they could (the writes themselves stay under the channel's inbound policy)."""
    from hub.security.policy import AccessPolicy
    from hub.security.principal import Principal

    inbound = fhir.policy
    fhir.policy = AccessPolicy(Principal.of(inbound.principal.client_id, fhir.tenant, "referrer",
                                            "system/*.cruds", requester or None),
                               session=fhir.session, tenant=fhir.tenant)
    try:
        yield
    finally:
        fhir.policy = inbound


def _resolve_patients(fhir: Any, bundle: dict[str, Any], *, skip: Collection[str] = ()) -> None:
    """Upsert by identifier: a Patient already stored under another id (created through the FHIR API)
    with the same first identifier is updated in place, and the Bundle's references follow it.
    ``skip``: Patients given ids of their own by the intake rules (not another's record)."""
    moved: dict[str, str] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "Patient" or not resource.get("identifier"):
            continue
        if f"Patient/{resource['id']}" in skip:
            continue
        first = resource["identifier"][0]
        token = f"{first['system']}|{first['value']}"
        found = fhir.search("Patient", [("identifier", token), ("_count", "2")], strict=True)
        matches = [e for e in found.get("entry", []) if e.get("search", {}).get("mode") == "match"]
        if len(matches) != 1:
            continue
        existing = matches[0]["fullUrl"].rsplit("/", 1)[-1]
        if existing != resource["id"]:
            moved[f"Patient/{resource['id']}"] = f"Patient/{existing}"
            resource["id"] = existing
            entry["request"]["url"] = f"Patient/{existing}"
    if moved:
        bundle.update(replace_references(bundle, moved))


def _record_ack(inbox: Inbox, row: Message, text: str, now: datetime) -> None:
    """Keep the acknowledgement sent (no PHI: header fields, codes and locations only)."""
    inbox.event(row, ev.ACKNOWLEDGED, at=now, detail=text)
    inbox.session.flush()


def _earlier_answer(settings: Settings, tenant: str, source: str, control_id: str) -> bytes | None:
    with unit_of_work(settings) as session:
        row = repo.message_by_external_id(session, tenant=tenant, source=source, external_id=control_id)
        if row is None:
            return None
        for event in reversed(repo.events_of(session, message_id=row.id)):
            if event.event == ev.ACKNOWLEDGED and (event.detail or "").startswith(ACK_PREFIX):
                return (event.detail or "").encode("utf-8")
    return None


def _store_unreadable(
    settings: Settings,
    tenant: str,
    raw: bytes,
    source: str,
    exc: Hl7Error,
    now: datetime,
    header: Header | None = None,
) -> bytes:
    """A message without a readable header: keep it as rejected, answer AR (without MSA-2 when no
    control id could be read)."""
    code = "CR" if is_enhanced(header) else "AR"
    try:
        with unit_of_work(settings) as session:
            repository.ensure_tenant(session, tenant_id=tenant, name=f"Clinic {tenant}", now=now)
            inbox = Inbox(session, tenant=tenant, settings=settings, clock=lambda: now)
            inbox.record_rejected(source=source, event="hl7v2.unreadable", raw=raw, reason=str(exc))
    except Exception:
        log.exception("hub.hl7v2.store_failed", extra={"source": source, "tenant": tenant})
    log.info("hub.hl7v2.unreadable", extra={"source": source, "tenant": tenant, "code": exc.code})
    return _answer(header, code, now, exc).encode("utf-8")


def handle_frame_error(settings: Settings, tenant: str, partial: bytes, reason: str, source: str) -> bytes:
    """A frame the MLLP listener could not read whole (truncated, oversized): kept as rejected, and
    the ``AR`` to answer when the sender is still connected."""
    error = Hl7Error(DATA_TYPE_ERROR, f"MLLP frame error: {reason}", ErrorLocation("MSH"), ack="AR")
    header = None
    head = partial.split(b"\r", 1)[0]
    if head.startswith(b"MSH"):
        try:
            header = read_header(parse(head), required=False)
        except Hl7Error:
            header = None
    return _store_unreadable(settings, tenant, partial, source, error, utcnow(), header)


def run_listener(
    settings: Settings,
    *,
    tenant: str,
    host: str = "127.0.0.1",
    port: int = 2575,
    source: str | None = None,
    read_timeout: float = 30.0,
    max_message_bytes: int = 10 * 1024 * 1024,
    ready: Any = None,
    ack_connector: str | None = None,
) -> None:
    """Serve MLLP until interrupted; every message goes through :func:`handle_hl7v2` in a thread.

    ``source`` (the inbox key with MSH-10) defaults to ``mllp:<port>``. ``ready(server)`` is called
    once listening (the CLI prints the address).
    """
    import asyncio

    from connectors.hl7v2.mllp import MllpServer

    name = source or f"mllp:{port}"

    async def handler(raw: bytes) -> bytes:
        return await asyncio.to_thread(handle_hl7v2, settings, tenant, raw, name, ack_connector=ack_connector)

    async def frame_error(partial: bytes, reason: str) -> bytes:
        return await asyncio.to_thread(handle_frame_error, settings, tenant, partial, reason, name)

    async def main() -> None:
        server = MllpServer(
            handler,
            host=host,
            port=port,
            read_timeout=read_timeout,
            max_message_bytes=max_message_bytes,
            on_frame_error=frame_error,
        )
        await server.start()
        if ready is not None:
            ready(server)
        try:
            await server.serve_forever()
        finally:
            await server.close()

    asyncio.run(main())
