"""Wiring of the services for one transaction: the FHIR store with its listeners
(referral workflow rules, then routing into the outbox)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from hub.fhir.service import FhirService
from hub.settings import Settings
from hub.sync.outbox import Outbox


def fhir_service(
    session: Session,
    settings: Settings,
    tenant: str,
    base_url: str,
    clock: Callable[[], datetime] | None = None,
) -> FhirService:
    from hub.referrals.plans import PlanService

    fhir = FhirService(
        session,
        tenant=tenant,
        base_url=base_url,
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
        **({"clock": clock} if clock else {}),
    )
    fhir.listeners.append(PlanService(fhir, payer_rules=settings.certification_rules).on_change)
    fhir.listeners.append(
        Outbox(
            session, tenant=tenant, settings=settings, **({"clock": clock} if clock else {})
        ).on_change
    )
    return fhir
