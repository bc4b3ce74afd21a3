"""The queries of the X12 imports and the analytics over ``billing_claims`` (keyword-only arguments)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.store.models import BillingClaim, ConnectorInstance

#: the statuses a claim may be in when its file's 999 (or TA1) arrives
ACK_STATUSES = ("submitted", "accepted", "rejected")
#: ... and when its 277CA arrives
CLAIM_ACK_STATUSES = ("submitted", "accepted", "rejected", "acknowledged", "payer_rejected")


def claims_of_transaction(session: Session, *, tenant: str, transaction_control: int,
                          connector_id: int | None = None) -> list[BillingClaim]:
    """The claims of the 837P transaction set with ST02 ``transaction_control`` (newest file first)."""
    statement = select(BillingClaim).where(BillingClaim.tenant_id == tenant,
                                           BillingClaim.transaction_control == transaction_control,
                                           BillingClaim.status.in_(ACK_STATUSES))
    if connector_id is not None:
        statement = statement.where((BillingClaim.connector_id == connector_id) | BillingClaim.connector_id.is_(None))
    return list(session.scalars(statement.order_by(BillingClaim.submitted_at.desc(), BillingClaim.id)))


def claims_past_acceptance(session: Session, *, tenant: str, transaction_control: int,
                           connector_id: int | None = None) -> int:
    """How many claims of the 837P set with ST02 ``transaction_control`` are past what a 999 moves
    (acknowledged, paid...): a 999 that comes after its 277CA or 835 leaves them as they are."""
    statement = select(func.count()).select_from(BillingClaim).where(
        BillingClaim.tenant_id == tenant, BillingClaim.transaction_control == transaction_control,
        BillingClaim.status.not_in(ACK_STATUSES))
    if connector_id is not None:
        statement = statement.where((BillingClaim.connector_id == connector_id) | BillingClaim.connector_id.is_(None))
    return int(session.scalar(statement) or 0)


def claims_of_interchange(session: Session, *, tenant: str, interchange_control: int,
                          connector_id: int | None = None) -> list[BillingClaim]:
    statement = select(BillingClaim).where(BillingClaim.tenant_id == tenant,
                                           BillingClaim.interchange_control == interchange_control,
                                           BillingClaim.status.in_(ACK_STATUSES))
    if connector_id is not None:
        statement = statement.where((BillingClaim.connector_id == connector_id) | BillingClaim.connector_id.is_(None))
    return list(session.scalars(statement.order_by(BillingClaim.id)))


def claim_by_pcn(session: Session, *, tenant: str, patient_control_number: str) -> BillingClaim | None:
    return session.scalars(select(BillingClaim).where(
        BillingClaim.tenant_id == tenant, BillingClaim.patient_control_number == patient_control_number)).first()


def claims_between(session: Session, *, tenant: str, start: datetime | None, end: datetime | None,
                   statuses: Iterable[str] | None = None) -> list[BillingClaim]:
    """Claims whose first date of service (else creation) falls in [start, end)."""
    statement = select(BillingClaim).where(BillingClaim.tenant_id == tenant)
    when = BillingClaim.service_from
    if start is not None:
        statement = statement.where(when >= start)
    if end is not None:
        statement = statement.where(when < end)
    if statuses is not None:
        statement = statement.where(BillingClaim.status.in_(list(statuses)))
    return list(session.scalars(statement.order_by(BillingClaim.id)))


def enabled_billing_connectors(session: Session) -> list[ConnectorInstance]:
    """Every enabled ``x12_billing`` connector instance of every tenant."""
    return list(session.scalars(select(ConnectorInstance).where(
        ConnectorInstance.kind == "x12_billing", ConnectorInstance.enabled.is_(True)).order_by(ConnectorInstance.id)))
