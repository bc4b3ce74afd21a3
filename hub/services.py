"""Wiring of the services for one transaction: the FHIR store, built with its caller's access
policy, and the reactions to its change events: routing into the outbox first, then the referral
and plan-of-care workflow rules (docs/adr/0008-explicit-workflow.md)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy.orm import Session

from hub.fhir.policy import StorePolicy
from hub.fhir.service import FhirService
from hub.referrals.plans import PlanService
from hub.settings import Settings
from hub.sync.inbox import Inbox
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


class ChannelStore(NamedTuple):
    """What an inbound channel (MLLP intake, inbound webhook, polling) writes through."""

    #: the FHIR store under the channel's inbound policy, with its reactions
    fhir: FhirService
    #: the message store: the raw message kept first, then translated or rejected
    inbox: Inbox


def channel_store(
    session: Session,
    settings: Settings,
    tenant: str,
    policy: StorePolicy,
    clock: Callable[[], datetime] | None = None,
) -> ChannelStore:
    """The FHIR store and the Inbox of an inbound channel of ``tenant`` in ``session``: what the
    partner sends is written under ``policy`` (its connector's inbound policy), and audited."""
    fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir", clock, policy=policy)
    inbox = Inbox(session, tenant=tenant, settings=settings, **({"clock": clock} if clock else {}))
    return ChannelStore(fhir, inbox)
