"""Wiring of the services for one transaction: the FHIR store, built with its caller's access
policy, and the reactions to its change events: routing into the outbox first, then the referral
and plan-of-care workflow rules (docs/adr/0008-explicit-workflow.md)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from hub.fhir.policy import StorePolicy
from hub.fhir.service import FhirService
from hub.referrals.plans import PlanService
from hub.settings import Settings
from hub.sync.outbox import Outbox


def fhir_service(
    session: Session,
    settings: Settings,
    tenant: str,
    base_url: str,
    clock: Callable[[], datetime] | None = None,
    *,
    policy: StorePolicy | None = None,
) -> FhirService:
    """The FHIR store of ``session`` for ``tenant`` under ``policy`` (None: the hub itself)."""
    fhir = FhirService(
        session,
        tenant=tenant,
        base_url=base_url,
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
        policy=policy,
        **({"clock": clock} if clock else {}),
    )
    # each change is routed before the writes it causes are (they wait their turn in the change log)
    fhir.listeners.append(
        Outbox(
            session, tenant=tenant, settings=settings, **({"clock": clock} if clock else {})
        ).on_change
    )
    fhir.listeners.append(PlanService(fhir, payer_rules=settings.certification_rules).on_change)
    return fhir
