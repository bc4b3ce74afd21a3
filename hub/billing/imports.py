"""Importing the X12 files a clearinghouse sends back (999, TA1, 277CA, 835, 271), ADR 0013.

:func:`import_x12` keeps the raw file in the message store FIRST (the inbox: deduplicated by the
source and the file's name + digest, or by the content's digest for a manual import), then reads it
and applies each transaction set on its own, in a savepoint: a set that cannot be read (its envelope
broken: no SE, a wrong count, truncated) is rejected with its segment, position and rule and kept in
the file's message; the other sets of the file are applied. A file that is not X12 at all becomes a
rejected message with the reason. A duplicate is reported and applied nothing.

Each applied set adds a message event (counts and codes only); the file's message keeps, as its
translated payload, the outcome of every set, the 835 provider level adjustments (PLB) and the
claim payments for unknown patient control numbers (unmatched, never dropped).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hub.billing.eligibility_apply import apply_271
from hub.billing.imports_acks import apply_277ca, apply_999, apply_ta1
from hub.billing.imports_result import ImportResult, SetOutcome
from hub.billing.remits_apply import apply_835
from hub.crypto import decrypt, encrypt
from hub.kit import utcnow
from hub.services import fhir_service
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync import events as ev
from hub.sync.engine import DeliveryEngine
from hub.sync.inbox import Inbox, short_error
from hub.unit_of_work import savepoint
from mappings.fhir import jsonio
from mappings.x12.acks import CLAIM_ACK_VERSION
from mappings.x12.read271 import read_eligibility
from mappings.x12.read277 import read_277
from mappings.x12.read835 import read_remittance
from mappings.x12.read999 import read_999, read_ta1
from mappings.x12.reader import TransactionSet, X12Error, X12SyntaxError, read_interchanges

__all__ = ["MANUAL_SOURCE", "ImportResult", "SetOutcome", "external_id_for", "import_x12"]

log = logging.getLogger("hub.billing.imports")

#: the message source of a file imported by hand (CLI, admin API): deduplicated by content digest
MANUAL_SOURCE = "billing-import"
EVENT = "billing.x12"


def external_id_for(name: str | None, raw: bytes, *, manual: bool) -> str:
    """The inbox key of a file: ``<name>:<sha256[:16]>`` from a connector, ``sha256:<digest>`` by hand."""
    digest = hashlib.sha256(raw).hexdigest()
    if manual or not name:
        return f"sha256:{digest}"
    return f"{name[:200]}:{digest[:16]}"


def import_x12(session: Session, settings: Settings, *, tenant: str, raw: bytes, source: str,
               name: str | None, connector_id: int | None = None, now: datetime | None = None) -> ImportResult:
    """Store ``raw`` (from ``source``: a connector's name, or :data:`MANUAL_SOURCE`), then apply it.

    In the caller's transaction (the caller commits); only ``flush()`` here. ``connector_id``: the
    clearinghouse it came from, to tell apart the control numbers of different clearinghouses.
    """
    when = now or utcnow()
    inbox = Inbox(session, tenant=tenant, settings=settings, clock=lambda: when)
    external_id = external_id_for(name, raw, manual=source == MANUAL_SOURCE)
    earlier = repo.message_by_external_id(session, tenant=tenant, source=source, external_id=external_id)
    if earlier is not None:
        return ImportResult(earlier.id, name, duplicate=True, readable=earlier.status != "rejected",
                            error=earlier.error if earlier.status == "rejected" else None)
    message = inbox.record_inbound(source=source, external_id=external_id, raw=raw, event=EVENT)
    result = ImportResult(message.id, name)
    try:
        x12 = read_interchanges(raw)
    except X12SyntaxError as exc:
        reason = str(X12Error(exc.rule, "ISA", exc.position, str(exc)))
        inbox.mark_rejected(message, f"not an X12 file: {reason}")
        result.readable, result.error = False, reason
        return result
    fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir", lambda: when)
    kept: list[dict[str, Any]] = []
    group_of = _group_reader(session, inbox, tenant)
    for interchange in x12.interchanges:
        for segment in interchange.acknowledgements:
            result.sets.append(_in_savepoint(session, lambda seg=segment: apply_ta1(
                session, read_ta1(seg), tenant=tenant, connector_id=connector_id, now=when), "TA1", ""))
        for group in interchange.groups:
            for transaction in group.transactions:
                outcome = _apply_set(session, fhir, transaction, tenant=tenant, connector_id=connector_id,
                                     now=when, kept=kept, group_of=group_of)
                result.sets.append(outcome)
    envelope = [str(error) for error in x12.errors if error.transaction is None]
    if envelope:
        result.sets.append(SetOutcome("envelope", "", errors=envelope))
    for outcome in result.sets:
        if outcome.applied:
            inbox.event(message, ev.TRANSLATED, detail=short_error(outcome.summary()))
        if outcome.errors:
            inbox.event(message, ev.REJECTED, detail=short_error(f"{outcome.kind} {outcome.control_number}: "
                                                                 + "; ".join(outcome.errors)))
    _answer_deliveries(session, settings, result)
    _finish(inbox, message, result, kept)
    log.info("hub.billing.import", extra={"message_id": message.id, "sets": len(result.sets),
                                          "outcome": "ok" if result.ok else "errors"})
    return result


def _answer_deliveries(session: Session, settings: Settings, result: ImportResult) -> None:
    """What a 999 or TA1 said of an 837P file goes on the job that delivered it too: accepted -> an
    ``acknowledged`` event (the job confirmed, if it awaited); rejected -> the job dead-lettered at
    once with the reason (the same bytes sent again would be rejected again), beside the claims."""
    engine = DeliveryEngine(session, settings=settings)
    for outcome in result.sets:
        for file_message_id, (accepted, detail) in outcome.files.items():
            for job in repo.jobs_of(session, message_id=file_message_id):
                if job.status not in (ev.SUCCEEDED, ev.AWAITING):
                    continue
                if accepted:
                    engine.partner_acknowledged(job, detail)
                else:
                    engine.remote_failure(job, detail, permanent=True)


def _in_savepoint(session: Session, work: Any, kind: str, control: str) -> SetOutcome:
    part = savepoint(session)
    try:
        outcome: SetOutcome = work()
    except Exception as exc:  # one set failing must not lose the file or the other sets
        part.rollback()
        log.exception("hub.billing.import.set_failed", extra={"error": type(exc).__name__})
        return SetOutcome(kind, control, errors=[f"{kind} {control}: could not be applied ({type(exc).__name__})"])
    if outcome.errors and not outcome.applied:
        part.rollback()
    else:
        part.commit()
    return outcome


def _set_errors(transaction: TransactionSet) -> list[str]:
    return [str(error) for error in transaction.errors]


def _group_reader(session: Session, inbox: Inbox, tenant: str) -> Callable[[str], str | None]:
    """GS06 of the 837P file message ``message_id`` (None when it is not on file or not readable)."""
    seen: dict[str, str | None] = {}

    def group_of(message_id: str) -> str | None:
        if message_id not in seen:
            message = repo.message_by_id(session, tenant=tenant, message_id=message_id)
            raw = decrypt(inbox.box, message.raw_payload) if message is not None else None
            group = None
            if raw:
                try:
                    groups = [g for i in read_interchanges(raw).interchanges for g in i.groups]
                    group = groups[0].control_number if groups else None
                except X12SyntaxError:
                    group = None
            seen[message_id] = group
        return seen[message_id]

    return group_of


def _apply_set(session: Session, fhir: Any, transaction: TransactionSet, *, tenant: str, connector_id: int | None,
               now: datetime, kept: list[dict[str, Any]],
               group_of: Callable[[str], str | None] = lambda message_id: None) -> SetOutcome:
    kind, control = transaction.id, transaction.control_number
    label = "277CA" if kind == "277" else kind
    if transaction.errors:  # its envelope is broken: what it says cannot be trusted, it is kept, not applied
        return SetOutcome(label, control, errors=_set_errors(transaction))
    if kind in ("999", "997"):
        report = read_999(transaction)
        if report.errors:
            return SetOutcome(label, control, errors=[str(e) for e in report.errors])
        return _in_savepoint(session, lambda: apply_999(session, report, tenant=tenant, connector_id=connector_id,
                                                        now=now, group_of=group_of), label, control)
    if kind == "277" and (not transaction.version or transaction.version.startswith(CLAIM_ACK_VERSION)):
        claims = read_277(transaction)
        if claims.errors:
            return SetOutcome(label, control, errors=[str(e) for e in claims.errors])
        return _in_savepoint(session, lambda: apply_277ca(session, claims, tenant=tenant, now=now), label, control)
    if kind == "835":
        remittance = read_remittance(transaction)

        def remit() -> SetOutcome:
            outcome, keep = apply_835(session, fhir, remittance, tenant=tenant, now=now)
            outcome.errors.extend(str(e) for e in remittance.errors)  # claims left out; the rest applied
            kept.append(keep)
            return outcome

        return _in_savepoint(session, remit, label, control)
    if kind == "271":
        results = read_eligibility(transaction)
        errors = sorted({str(e) for r in results for e in r.errors})
        if errors:
            return SetOutcome(label, control, errors=errors)
        return _in_savepoint(session, lambda: apply_271(fhir, results, control_number=control, now=now),
                             label, control)
    return SetOutcome(label, control, errors=[str(X12Error(
        "billing.import.unsupported", "ST", transaction.segments[0].position,
        f"transaction set {kind or '(none)'} is not a response the hub reads (TA1, 999, 277CA, 835, 271)", 1,
        control))])


def _finish(inbox: Inbox, message: Any, result: ImportResult, kept: list[dict[str, Any]]) -> None:
    translated = {"sets": [s.view() for s in result.sets], "remittances": kept}
    message.translated_payload = encrypt(inbox.box, jsonio.dumps(translated))
    kinds = sorted({s.kind for s in result.sets if s.applied})
    message.event = f"billing.{'+'.join(kinds)}" if kinds else EVENT
    problems = [s for s in result.sets if s.errors]
    unmatched = sum(len(s.unmatched) for s in result.sets)
    if not any(s.applied for s in result.sets):
        inbox.mark_rejected(message, "; ".join(e for s in problems for e in s.errors) or "no transaction set")
        result.error = message.error
        return
    notes = []
    if problems:
        notes.append(f"{len(problems)} transaction sets with errors: " + "; ".join(
            f"{s.kind} {s.control_number}: {s.errors[0]}" for s in problems))
    if unmatched:
        notes.append(f"{unmatched} responses for claims the hub does not know (kept as unmatched)")
    message.error = short_error(" | ".join(notes)) if notes else None
    message.status = "unrouted"
    message.updated_at = inbox.clock()
    inbox.session.flush()
