"""Wiring of the services for one transaction: the FHIR store with its listeners
(referral workflow rules, then routing into the outbox)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from hub.fhir.service import FhirService
from hub.settings import Settings
from hub.sync.service import SyncService


def fhir_service(session: Session, settings: Settings, tenant: str, base_url: str) -> FhirService:
    from hub.referrals.service import ReferralService

    fhir = FhirService(
        session,
        tenant=tenant,
        base_url=base_url,
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
    )
    fhir.listeners.append(ReferralService(fhir).on_change)
    fhir.listeners.append(SyncService(session, tenant=tenant, settings=settings).on_change)
    return fhir
