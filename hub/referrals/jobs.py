"""The scheduled clock job of the plans of care: every tenant's obligations recomputed, each tenant
in a transaction of its own."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.referrals.plans import PlanService
from hub.services import fhir_service
from hub.store.repository import tenant_ids
from hub.unit_of_work import unit_of_work


def refresh_all_tenants(settings: Any, *, now: datetime | None = None) -> int:
    """Recompute the obligations of every active plan of every tenant, one transaction per tenant,
    enqueueing the reminders each one routes after it commits (the scheduled clock job)."""
    with unit_of_work(settings) as session:
        tenants = tenant_ids(session)
    total = 0
    for tenant in tenants:
        with unit_of_work(settings) as session:
            fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir",
                                (lambda: now) if now else None)
            total += PlanService(fhir, payer_rules=settings.certification_rules).refresh_all()
    return total


__all__ = ["refresh_all_tenants"]
