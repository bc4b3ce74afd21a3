"""Queries of the outbound billing service over ``billing_claims`` (keyword-only, no commit)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.store.models import BillingClaim

__all__ = ["claim_by_id", "claims", "claims_of_encounter", "claims_of_patient_in", "ready_claims"]


def claim_by_id(session: Session, *, tenant: str, claim_id: str) -> BillingClaim | None:
    return session.scalars(
        select(BillingClaim).where(BillingClaim.tenant_id == tenant, BillingClaim.claim_id == claim_id)
    ).one_or_none()


def claims_of_encounter(session: Session, *, tenant: str, encounter_id: str) -> list[BillingClaim]:
    """Every claim of one visit, oldest first (an original, then its replacements)."""
    return list(session.scalars(
        select(BillingClaim)
        .where(BillingClaim.tenant_id == tenant, BillingClaim.encounter_id == encounter_id)
        .order_by(BillingClaim.id)
    ))


def claims_of_patient_in(session: Session, *, tenant: str, patient_id: str, start: datetime,
                         end: datetime) -> list[BillingClaim]:
    """The claims of a patient whose first date of service is in [start, end), by date then id."""
    return list(session.scalars(
        select(BillingClaim)
        .where(BillingClaim.tenant_id == tenant, BillingClaim.patient_id == patient_id,
               BillingClaim.service_from >= start, BillingClaim.service_from < end)
        .order_by(BillingClaim.service_from, BillingClaim.id)
    ))


def claims(session: Session, *, tenant: str, statuses: Sequence[str] | None = None, limit: int = 100,
           offset: int = 0) -> list[BillingClaim]:
    """Claims newest first (by date of service, then id), of ``statuses`` when given."""
    query = select(BillingClaim).where(BillingClaim.tenant_id == tenant)
    if statuses:
        query = query.where(BillingClaim.status.in_(list(statuses)))
    query = query.order_by(BillingClaim.service_from.desc(), BillingClaim.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


def ready_claims(session: Session, *, tenant: str, connector_id: int | None = None) -> list[BillingClaim]:
    """The claims that passed the scrubber and wait for a file, oldest first (of one connector when given)."""
    query = select(BillingClaim).where(BillingClaim.tenant_id == tenant, BillingClaim.status == "ready")
    if connector_id is not None:
        query = query.where(BillingClaim.connector_id == connector_id)
    return list(session.scalars(query.order_by(BillingClaim.id).with_for_update()))
