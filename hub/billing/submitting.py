"""Ready claims -> 837P files: one file per connector, payer and submitter, its control numbers
allocated in this transaction, checked by pyx12 before anything goes out, kept as an outbound
message (``x12.837P``, the X12 encrypted like any payload, an event listing the claim ids), and then
queued as a delivery job of the ``x12_billing`` connector, or written to a directory (export)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from hub.billing import repository as repo
from hub.billing.building import ClaimBuilder, read_claim
from hub.billing.fhir_access import StoreReader
from hub.billing.profiles import Clearinghouse
from hub.billing.results import FileResult
from hub.errors import NotFound
from hub.settings import Settings
from hub.store import sync_repository as sync_repo
from hub.store.billing_repository import allocate_control_numbers
from hub.store.models import BillingClaim
from hub.sync import events as ev
from hub.sync.inbox import Inbox
from hub.sync.outbox import Outbox
from mappings.billing.model import ControlNumbers, Finding, ProfessionalClaim
from mappings.x12.envelope import X12WriteError
from mappings.x12.validation import validate
from mappings.x12.write837 import write_837p

__all__ = ["EVENT", "FileWriter", "file_name"]

#: the message event of an 837P claim file (its delivery content type is application/edi-x12)
EVENT = "x12.837P"


def file_name(payer_id: str, interchange: int) -> str:
    """``<payer>-<ISA13>.837``, the payer id reduced to letters, digits, '-' and '_'."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in payer_id) or "payer"
    return f"{safe}-{interchange:09d}.837"


class FileWriter:
    def __init__(self, session: Session, settings: Settings, reader: StoreReader, *, tenant: str,
                 houses: list[Clearinghouse], clock: Callable[[], datetime]) -> None:
        self.session, self.settings, self.reader = session, settings, reader
        self.tenant, self.houses, self.clock = tenant, houses, clock

    def submit(self, *, connector: str | None, out_dir: Path | None) -> list[FileResult]:
        by_id = {h.connector_id: h for h in self.houses}
        connector_id = None
        if connector is not None:
            instance = sync_repo.connector_by_name(self.session, tenant=self.tenant, name=connector)
            if instance is None or instance.id not in by_id:
                raise NotFound(f"No x12_billing connector with a billing profile named {connector!r}")
            connector_id = instance.id
        groups: dict[tuple[int, str], list[BillingClaim]] = {}
        for row in repo.ready_claims(self.session, tenant=self.tenant, connector_id=connector_id):
            if row.connector_id in by_id:
                groups.setdefault((row.connector_id, row.payer_id), []).append(row)
        results = []
        for (house_id, payer_id), rows in groups.items():
            result = self._file(by_id[house_id], payer_id, rows, out_dir)
            if result is not None:
                results.append(result)
        return results

    def _claims(self, rows: list[BillingClaim], house: Clearinghouse) -> list[tuple[BillingClaim, ProfessionalClaim]]:
        """The flat claims of ``rows``; a claim that cannot be read any more is blocked with its finding."""
        readable = []
        for row in rows:
            claim = self.reader.read(f"Claim/{row.claim_id}")
            flat = read_claim(self.reader, claim, house.profile) if claim is not None else Finding(
                rule="claim.data", severity="error", message="the FHIR Claim is not in the store",
                fix="build the claims again")
            if isinstance(flat, Finding):
                ClaimBuilder.apply_findings(row, [flat], self.clock())
                continue
            readable.append((row, flat))
        return readable

    def _file(self, house: Clearinghouse, payer_id: str, rows: list[BillingClaim],
              out_dir: Path | None) -> FileResult | None:
        pairs = self._claims(rows, house)
        if not pairs:
            return None
        rows = [row for row, _ in pairs]
        claims = [flat for _, flat in pairs]
        submitter = house.profile.submitter
        now = self.clock()
        claim_ids = tuple(r.claim_id for r in rows)
        base = {
            "connector": house.name, "payer_id": payer_id, "claim_ids": claim_ids,
            "patient_control_numbers": tuple(r.patient_control_number for r in rows),
            "charge_cents": sum(r.charge_cents for r in rows),
        }
        numbers = allocate_control_numbers(self.session, tenant=self.tenant,
                                           sender=f"{submitter.isa_qualifier}:{submitter.etin}", count=1, now=now)
        control = {"interchange_control": numbers.interchange, "group_control": numbers.group,
                   "transaction_control": numbers.transactions[0]}
        try:
            text = write_837p(claims, submitter, ControlNumbers(interchange=numbers.interchange, group=numbers.group,
                                                                transaction=numbers.transactions[0]),
                              created=now.replace(tzinfo=UTC) if now.tzinfo is None else now)
        except X12WriteError as exc:
            return FileResult(status="invalid", issues=(str(exc),), **base, **control)  # type: ignore[arg-type]
        errors = [str(i) for i in validate(text) if i.severity == "error"]
        if errors:
            return FileResult(status="invalid", issues=tuple(errors), **base, **control)  # type: ignore[arg-type]
        inbox = Inbox(self.session, tenant=self.tenant, settings=self.settings, clock=self.clock)
        path = None
        jobs: tuple[int, ...] = ()
        if out_dir is None:
            message = Outbox(self.session, tenant=self.tenant, settings=self.settings, clock=self.clock).send_raw(
                connector=house.name, raw=text, event=EVENT, kind="x12_billing")
            jobs = tuple(j.id for j in sync_repo.jobs_of(self.session, message_id=message.id))
        else:
            message = inbox.record_outbound(event=EVENT, raw=text, reply_to=None, at=now)
            target = Path(out_dir) / file_name(payer_id, numbers.interchange)
            partial = target.with_name(target.name + ".part")
            partial.write_text(text, encoding="ascii")
            os.replace(partial, target)
            path = str(target)
            message.status = "delivered"
            message.updated_at = now
            inbox.event(message, ev.SENT, detail=f"written by export as {target.name}", at=now)
        inbox.event(message, ev.TRANSLATED, at=now,
                    detail=f"837P of {len(rows)} claim(s) to payer {payer_id}: {' '.join(claim_ids)}")
        for row in rows:
            row.status = "submitted"
            row.status_detail = None
            row.file_message_id = message.id
            row.interchange_control = numbers.interchange
            row.transaction_control = numbers.transactions[0]
            row.submitted_at = now
            row.updated_at = now
        self.session.flush()
        return FileResult(status="written" if out_dir is not None else "queued", message_id=message.id,
                          job_ids=jobs, path=path, **base, **control)  # type: ignore[arg-type]
