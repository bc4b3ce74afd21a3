"""Queries of the deliveries about resources (what the referral views show of the sync engine)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.store.models import ConnectorInstance, DeliveryJob, Message


def jobs_about(session: Session, *, tenant: str, resource_type: str,
               resource_ids: Sequence[str]) -> list[tuple[str, DeliveryJob, str]]:
    """(resource id, job, connector kind) of the delivery jobs of the messages about these resources
    of one type (routed changes), oldest job first."""
    if not resource_ids:
        return []
    query = (
        select(Message.resource_id, DeliveryJob, ConnectorInstance.kind)
        .join(DeliveryJob, DeliveryJob.message_id == Message.id)
        .join(ConnectorInstance, ConnectorInstance.id == DeliveryJob.connector_id)
        .where(Message.tenant_id == tenant, Message.resource_type == resource_type,
               Message.resource_id.in_(list(resource_ids)))
        .order_by(DeliveryJob.id)
    )
    return [(str(rid), job, str(kind)) for rid, job, kind in session.execute(query)]
