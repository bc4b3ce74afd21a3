"""The outbound half of billing (ADR 0013): :class:`BillingService` builds a claim per finished visit,
scrubs it with what only the store knows, and submits the claims that passed as 837P files.

One instance works in its caller's transaction (it only flushes; the boundary commits, and the
delivery jobs it wrote are enqueued after the commit). Used by the admin API
(:mod:`hub.billing.router`) and the CLI (``hub billing``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from hub.billing import repository as repo
from hub.billing.building import ClaimBuilder, scrub_findings
from hub.billing.fhir_access import StoreReader
from hub.billing.profiles import Clearinghouse, clearinghouses
from hub.billing.results import EDITABLE, BuildResult, FileResult, ScrubResult, findings_of, view_of
from hub.billing.submitting import FileWriter
from hub.errors import BadRequest, NotFound
from hub.fhir.service import FhirService
from hub.kit import utcnow
from hub.services import fhir_service
from hub.settings import Settings
from hub.store.billing_statuses import CLAIM_STATUSES
from hub.store.models import BillingClaim

__all__ = ["CLAIM_STATUSES", "BillingService"]


class BillingService:
    """Claims of ``tenant`` in ``session``; ``clock`` gives naive UTC datetimes (the store's)."""

    def __init__(self, session: Session, settings: Settings, tenant: str,
                 clock: Callable[[], datetime] | None = None, *, fhir: FhirService | None = None) -> None:
        self.session = session
        self.settings = settings
        self.tenant = tenant
        self.clock = clock or utcnow
        self._fhir = fhir

    @cached_property
    def fhir(self) -> FhirService:
        """The FHIR store as the hub itself, with routing: a Claim written here is delivered like any write."""
        return self._fhir or fhir_service(self.session, self.settings, self.tenant,
                                          self.settings.fhir_base or "/fhir", self.clock)

    @cached_property
    def reader(self) -> StoreReader:
        return StoreReader(self.fhir)

    @cached_property
    def houses(self) -> list[Clearinghouse]:
        return clearinghouses(self.session, self.settings, self.tenant)

    def _builder(self) -> ClaimBuilder:
        return ClaimBuilder(self.session, self.fhir, self.reader, tenant=self.tenant, houses=self.houses,
                            clock=self.clock)

    # ------------------------------------------------------------------ build, scrub

    def build_claims(self, *, through: date | None = None) -> BuildResult:
        """A claim per finished Encounter (started on or before ``through``) with billable ChargeItems:
        created, rebuilt while not submitted, or replaced after a change (see :mod:`hub.billing.building`);
        each is scrubbed: ``blocked`` (an error finding) or ``ready``."""
        return self._builder().build(through)

    def scrub(self, claim_id: str) -> ScrubResult:
        """Scrub one claim again with today's context. A claim not yet submitted moves to ``blocked`` or
        ``ready``; a submitted one keeps its status (its findings are only reported)."""
        row = self._row(claim_id)
        claim = self.reader.read(f"Claim/{claim_id}")
        if claim is None:
            raise NotFound(f"The FHIR Claim {claim_id} is not in the store")
        house = next((h for h in self.houses if h.connector_id == row.connector_id), None)
        if house is None:
            raise BadRequest("The claim's x12_billing connector is gone or has no billing profile: "
                             "build the claims again")
        _, findings = scrub_findings(self.session, self.reader, tenant=self.tenant, claim=claim,
                                     profile=house.profile, payer_id=row.payer_id, encounter_id=row.encounter_id)
        if row.status in EDITABLE:
            ClaimBuilder.apply_findings(row, findings, self.clock())
            self.session.flush()
        return ScrubResult(claim_id=claim_id, status=row.status, findings=findings)

    # ------------------------------------------------------------------ submit

    def submit(self, *, connector: str | None = None, out_dir: Path | None = None) -> list[FileResult]:
        """The ready claims (of ``connector`` when given) as 837P files, one per connector and payer: each
        checked by pyx12 (an invalid file sends nothing: its claims stay ready), kept as an outbound
        ``x12.837P`` message, its claims ``submitted``; then a delivery job to the connector, or with
        ``out_dir`` the file written there as ``<payer>-<ISA13>.837`` (and no job)."""
        if out_dir is not None and not Path(out_dir).is_dir():
            raise BadRequest(f"{out_dir} is not a directory")
        writer = FileWriter(self.session, self.settings, self.reader, tenant=self.tenant, houses=self.houses,
                            clock=self.clock)
        return writer.submit(connector=connector, out_dir=out_dir)

    # ------------------------------------------------------------------ views

    def _row(self, claim_id: str) -> BillingClaim:
        row = repo.claim_by_id(self.session, tenant=self.tenant, claim_id=claim_id)
        if row is None:
            raise NotFound(f"No claim {claim_id}")
        return row

    def claims(self, *, status: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Claim views (:func:`hub.billing.results.view_of`), newest date of service first."""
        statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
        unknown = sorted(set(statuses or ()) - set(CLAIM_STATUSES))
        if unknown:
            raise BadRequest(f"Unknown claim status {', '.join(unknown)}; one of {', '.join(CLAIM_STATUSES)}")
        rows = repo.claims(self.session, tenant=self.tenant, statuses=statuses, limit=limit, offset=offset)
        return [view_of(row) for row in rows]

    def claim(self, claim_id: str) -> dict[str, Any]:
        """One claim's view with its findings (``finding_list``)."""
        return view_of(self._row(claim_id), with_findings=True)

    def findings(self, claim_id: str) -> ScrubResult:
        row = self._row(claim_id)
        return ScrubResult(claim_id=claim_id, status=row.status, findings=findings_of(row))
