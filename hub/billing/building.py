"""Visits -> claims: one FHIR ``Claim`` per finished Encounter with billable ChargeItems (ADR 0013),
written through the FHIR store, with its ``billing_claims`` row, and scrubbed.

A visit's claim is rebuilt while it has not gone out (``draft``, ``blocked``, ``ready``; and after a
rejection that kept it from the payer). Once submitted it is left as it is; when the visit changed
after that, a replacement claim (frequency 7, REF*F8 the payer's claim number) is made, but only
when the payer's claim number is known (from the 835 or 277CA): else the visit is reported, and the
next build tries again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from connectors.x12_billing.profile import BillingProfile
from hub.billing import repository as repo
from hub.billing.context import plans_on_file, scrub_context
from hub.billing.fhir_access import StoreReader
from hub.billing.profiles import Clearinghouse, claim_number, for_payer
from hub.billing.results import EDITABLE, RESUBMITTABLE, BuildResult, BuiltClaim, Skipped
from hub.fhir.service import FhirService
from hub.kit import parse_reference
from hub.store.models import BillingClaim
from mappings.billing.claims import claim_from_visits, professional_claim
from mappings.billing.codes import EVALUATION_DISCIPLINE, PAYER_ID_SYSTEM
from mappings.billing.errors import ClaimDataError
from mappings.billing.fhir_read import careplan_discipline, reference_text
from mappings.billing.model import Finding, PlanOnFile, ProfessionalClaim
from mappings.billing.scrubber import scrub
from mappings.fhir import jsonio

__all__ = ["ClaimBuilder", "read_claim", "scrub_findings"]


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _normal(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource as JSON values, without ``meta`` (what the store adds), for comparing contents."""
    return {k: v for k, v in jsonio.loads(jsonio.dumps(resource)).items() if k != "meta"}


def read_claim(reader: StoreReader, claim: dict[str, Any],
               profile: BillingProfile | None = None) -> ProfessionalClaim | Finding:
    """The flat claim of a stored FHIR Claim, or the error finding naming what is missing. A payer the
    billing ``profile`` lists is named as the clearinghouse knows it (NM1*PR name, SBR09 filing indicator)."""
    try:
        flat = professional_claim(claim, reader.closure(claim))
    except ClaimDataError as exc:
        return Finding(rule="claim.data", severity="error", message=str(exc),
                       fix="complete the record the message names, then build the claims again")
    listed = profile.payers.get(flat.payer.payer_id) if profile is not None else None
    if listed is not None:
        payer = flat.payer.model_copy(update={"name": listed.name, "filing_indicator": listed.filing_indicator})
        flat = flat.model_copy(update={"payer": payer})
    return flat


def scrub_findings(session: Session, reader: StoreReader, *, tenant: str, claim: dict[str, Any],
                   profile: BillingProfile, payer_id: str,
                   encounter_id: str | None) -> tuple[ProfessionalClaim | None, list[Finding]]:
    """Read and scrub a FHIR Claim with the store's context (plans on file, the year's amount) and the
    rules of its payer in the billing ``profile``."""
    rules = profile.rules_for(payer_id)
    flat = read_claim(reader, claim, profile)
    if isinstance(flat, Finding):
        return None, [flat]
    first = min(line.service_date for line in flat.lines)
    context = scrub_context(session, reader, tenant=tenant, patient_ref=str(reference_text(claim.get("patient"))),
                            service_from=datetime(first.year, first.month, first.day),
                            encounter_id=encounter_id, rules=rules)
    return flat, scrub(flat, context)


def _pick_plan(plans: list[tuple[dict[str, Any], PlanOnFile]], day: date,
               charges: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The plan of care a visit bills under: of the visit's evaluation discipline, else the one its
    therapist wrote, else the only one covering the date."""
    covering = [p for p in plans if p[1].start <= day <= p[1].end] or plans
    codes = {str(c.get("code") or "") for ch in charges for c in (ch.get("code") or {}).get("coding") or []}
    evaluated = {EVALUATION_DISCIPLINE[c] for c in codes if c in EVALUATION_DISCIPLINE}
    if evaluated:
        covering = [p for p in covering if p[1].discipline in evaluated]
    performers = {reference_text(p.get("actor")) for ch in charges for p in ch.get("performer") or []}
    authored = [p for p in covering if reference_text(p[0].get("author")) in performers]
    if len(authored) == 1:
        return authored[0][0]
    if len(covering) == 1:
        return covering[0][0]
    return None


class ClaimBuilder:
    def __init__(self, session: Session, fhir: FhirService, reader: StoreReader, *, tenant: str,
                 houses: list[Clearinghouse], clock: Callable[[], datetime]) -> None:
        self.session, self.fhir, self.reader = session, fhir, reader
        self.tenant, self.houses, self.clock = tenant, houses, clock

    # ------------------------------------------------------------------ which visits

    def billable_visits(self, through: date | None) -> dict[str, list[dict[str, Any]]]:
        """Encounter id -> its billable ChargeItems, of finished Encounters started on or before ``through``."""
        visits: dict[str, list[dict[str, Any]]] = {}
        for charge in self.reader.search("ChargeItem", []):
            if charge.get("status") != "billable":
                continue
            parsed = parse_reference(str(reference_text(charge.get("context")) or ""))
            if parsed is None or parsed[0] != "Encounter":
                continue
            visits.setdefault(parsed[1], []).append(charge)
        chosen: dict[str, tuple[date, list[dict[str, Any]]]] = {}
        for encounter_id in sorted(visits):
            encounter = self.reader.read(f"Encounter/{encounter_id}")
            if encounter is None or encounter.get("status") != "finished":
                continue
            start = _day((encounter.get("period") or {}).get("start"))
            if through is not None and (start is None or start > through):
                continue
            chosen[encounter_id] = (start or date.min, sorted(visits[encounter_id], key=lambda c: str(c.get("id"))))
        # in date order: a visit's year-to-date therapy amount counts the claims of the visits before it
        return {eid: charges for eid, (_, charges) in sorted(chosen.items(), key=lambda item: (item[1][0], item[0]))}

    def build(self, through: date | None) -> BuildResult:
        result = BuildResult()
        for encounter_id, charges in self.billable_visits(through).items():
            outcome = self.build_visit(encounter_id, charges)
            if isinstance(outcome, BuiltClaim):
                result.claims.append(outcome)
            else:
                result.skipped.append(outcome)
        return result

    # ------------------------------------------------------------------ one visit

    def _coverage(self, patient_ref: str) -> dict[str, Any] | None:
        found = [c for c in self.reader.search("Coverage", [("beneficiary", patient_ref)])
                 if c.get("status") == "active"]
        found.sort(key=lambda c: (c.get("order") is None, c.get("order") or 0, str(c.get("id"))))
        return found[0] if found else None

    def build_visit(self, encounter_id: str, charges: list[dict[str, Any]]) -> BuiltClaim | Skipped:
        def skip(reason: str) -> Skipped:
            return Skipped(encounter_id, reason)

        encounter = self.reader.read(f"Encounter/{encounter_id}")
        assert encounter is not None
        patient_ref = reference_text(encounter.get("subject"))
        patient = self.reader.read(patient_ref)
        if patient is None or patient_ref is None or not patient_ref.startswith("Patient/"):
            return skip("the Encounter's subject is not a Patient in the store")
        coverage = self._coverage(patient_ref)
        if coverage is None:
            return skip("the patient has no active Coverage")
        payer = self.reader.read(reference_text((coverage.get("payor") or [{}])[0]))
        payer_id = next((str(i["value"]) for i in (payer or {}).get("identifier") or []
                         if i.get("system") == PAYER_ID_SYSTEM and i.get("value")), None)
        if payer_id is None:
            return skip(f"the Coverage's payor has no payer id ({PAYER_ID_SYSTEM})")
        house = for_payer(self.houses, payer_id)
        if house is None:
            return skip(f"no x12_billing connector with a billing profile bills payer {payer_id}")
        profile = house.profile
        org = self.reader.read(profile.organization)
        if org is None:
            return skip(f"the billing provider {profile.organization} of connector {house.name} is not in the store")
        rules = profile.rules_for(payer_id)
        day = _day((encounter.get("period") or {}).get("start")) or date.min
        careplan = _pick_plan(plans_on_file(self.reader, patient_ref), day, charges)
        conditions = [c for c in (self.reader.read(reference_text(d.get("condition")))
                                  for d in encounter.get("diagnosis") or []) if c is not None]

        rows = repo.claims_of_encounter(self.session, tenant=self.tenant, encounter_id=encounter_id)
        latest = rows[-1] if rows else None
        now = self.clock()
        if latest is None:
            number, created, replaces, row = claim_number(self.tenant, encounter_id), now, None, None
        else:
            number, created, row = latest.patient_control_number, latest.created_at, latest
            replaces = rows[-2].payer_claim_number if latest.frequency_code == "7" and len(rows) > 1 else None

        def make(kx: bool, number: str, created: datetime, replaces: str | None) -> dict[str, Any]:
            claim = claim_from_visits(
                [encounter], charges, coverage, patient, billing_org=org, careplan=careplan, claim_number=number,
                created=_aware(created), units_rule=rules.units_rule, conditions=conditions,
                fee_schedule=profile.fee_schedule, kx=kx, replaces=replaces, id_scope=self.tenant)
            return _normal(claim)

        def built(number: str, created: datetime, replaces: str | None,
                  ) -> tuple[dict[str, Any], ProfessionalClaim | None, list[Finding]]:
            claim = make(False, number, created, replaces)
            flat, findings = scrub_findings(self.session, self.reader, tenant=self.tenant, claim=claim,
                                            profile=profile, payer_id=payer_id, encounter_id=encounter_id)
            if any(f.rule == "modifier.kx" for f in findings):  # past the year's threshold: KX on its lines
                claim = make(True, number, created, replaces)
                flat, findings = scrub_findings(self.session, self.reader, tenant=self.tenant, claim=claim,
                                                profile=profile, payer_id=payer_id, encounter_id=encounter_id)
            return claim, flat, findings

        try:
            claim, flat, findings = built(number, created, replaces)
        except ClaimDataError as exc:
            return skip(f"no claim can be made: {exc}")
        stored = self.reader.read(f"Claim/{claim['id']}")
        same = stored is not None and _normal(stored) == claim
        action = "created" if stored is None else ("unchanged" if same else "updated")

        if latest is not None and latest.status not in EDITABLE:
            if same:
                return self._view(latest, "unchanged")
            if latest.status not in RESUBMITTABLE:
                if not latest.payer_claim_number:
                    return skip(f"the visit changed after claim {latest.claim_id} was submitted; its replacement "
                                "waits for the payer's claim number (835 or 277CA)")
                replaces = latest.payer_claim_number
                number, created, row = claim_number(self.tenant, encounter_id, len(rows)), now, None
                try:
                    claim, flat, findings = built(number, created, replaces)
                except ClaimDataError as exc:
                    return skip(f"no replacement claim can be made: {exc}")
                action = "replacement"

        if action != "unchanged":
            self.fhir.update("Claim", claim["id"], claim)
            self.reader.forget(f"Claim/{claim['id']}")
        if row is None:
            row = BillingClaim(tenant_id=self.tenant, claim_id=claim["id"], patient_control_number=number,
                               encounter_id=encounter_id, created_at=now, frequency_code="1")
            self.session.add(row)
        row.patient_id = patient_ref.split("/", 1)[1]
        row.discipline = (flat.discipline if flat is not None else None) or (
            careplan_discipline(careplan) if careplan else None)
        row.payer_id = payer_id
        row.connector_id = house.connector_id
        row.frequency_code = "7" if replaces else "1"
        row.charge_cents = int((Decimal(str(claim["total"]["value"])) * 100).to_integral_value())
        period = claim.get("billablePeriod") or {}
        start, end = _day(period.get("start")), _day(period.get("end"))
        row.service_from = datetime(start.year, start.month, start.day) if start else None
        row.service_to = datetime(end.year, end.month, end.day) if end else None
        self.apply_findings(row, findings, now)
        self.session.flush()
        return self._view(row, action)

    @staticmethod
    def apply_findings(row: BillingClaim, findings: list[Finding], now: datetime) -> None:
        row.findings = json.dumps([f.model_dump(mode="json") for f in findings])
        row.status = "blocked" if any(f.severity == "error" for f in findings) else "ready"
        row.status_detail = None
        row.updated_at = now

    @staticmethod
    def _view(row: BillingClaim, action: Any) -> BuiltClaim:
        findings = json.loads(row.findings or "[]")
        return BuiltClaim(claim_id=row.claim_id, patient_control_number=row.patient_control_number,
                          encounter_id=row.encounter_id or "", status=row.status, action=action,
                          errors=sum(1 for f in findings if f["severity"] == "error"),
                          warnings=sum(1 for f in findings if f["severity"] == "warning"))
