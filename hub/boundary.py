"""The audited request boundary: one call runs a piece of work for a caller inside
:func:`hub.unit_of_work.unit_of_work`, with the services of that transaction and the caller's access
policy, and records the AuditEvent of the interaction it is told, on success and on failure.

- A write (``readonly=False``): the work and its success AuditEvent in one transaction: both are
  stored, or neither; the delivery jobs it wrote are enqueued after the commit.
- A read (``readonly=True``): the work in a read-only transaction, then the success AuditEvent in a
  short transaction of its own. On SQLite the read then neither waits for nor holds the single write
  lock (only the audit insert does). The read and its audit are not atomic: the audit is committed
  before the response is sent, and if it cannot be stored the call fails (and an outcome-8 audit is
  attempted): no read is served without its AuditEvent.
- A failure is audited in a transaction of its own (the outcome and description that
  :attr:`Audit.failure` gives: 4 for a client error, 8 for a server error), reads and writes alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from hub.errors import HubError
from hub.fhir.service import FhirService
from hub.referrals.plans import PlanService
from hub.security.audit import audit_event
from hub.security.policy import AccessPolicy
from hub.security.principal import Principal
from hub.services import fhir_service
from hub.settings import Settings
from hub.sync.actions import SyncActions
from hub.sync.inbox import Inbox
from hub.unit_of_work import unit_of_work

T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    """Who calls, from where, against which FHIR base, by which clock (None: the store's own)."""

    principal: Principal
    address: str | None
    base_url: str
    clock: Callable[[], datetime] | None = None


def fhir_failure(exc: BaseException) -> tuple[int, str]:
    """The FHIR API's failure audit: 4 for a domain error (``HTTP 404 not-found``), else 8."""
    if isinstance(exc, HubError):
        return 4, f"HTTP {exc.status_code} {exc.code}"
    return 8, "HTTP 500"


@dataclass(frozen=True)
class Audit:
    """The AuditEvent of one interaction (``read``, ``create``, ``operation`` ...)."""

    interaction: str
    resource_type: str | None = None
    resource_id: str | None = None
    query: str | None = None
    description: str | None = None
    #: the id of what the work wrote, when ``resource_id`` is not known before (a create)
    written_id: Callable[[Any], str | None] | None = None
    #: (outcome, description) of a failed call
    failure: Callable[[BaseException], tuple[int, str]] = fhir_failure


class Work:
    """The services of one transaction, under the caller's access policy."""

    def __init__(self, session: Session, settings: Settings, tenant: str, caller: Caller) -> None:
        self.session = session
        self.settings = settings
        self.tenant = tenant
        self.caller = caller

    @cached_property
    def fhir(self) -> FhirService:
        """The FHIR store with its listeners (:func:`hub.services.fhir_service`) and the caller's policy."""
        policy = AccessPolicy(self.caller.principal, session=self.session, tenant=self.tenant)
        return fhir_service(self.session, self.settings, self.tenant, self.caller.base_url, self.caller.clock,
                            policy=policy)

    @cached_property
    def plans(self) -> PlanService:
        """The referral and plan-of-care workflow over :attr:`fhir`."""
        return PlanService(self.fhir, payer_rules=self.settings.certification_rules, clinics=self.settings.clinics)

    @cached_property
    def sync(self) -> SyncActions:
        """The operator actions on deliveries (retry, replay, discard)."""
        return SyncActions(self.session, tenant=self.tenant, settings=self.settings,
                           **({"clock": self.caller.clock} if self.caller.clock else {}))


def record_rejected(settings: Settings, tenant: str, *, source: str, event: str, raw: bytes, reason: str) -> None:
    """Keep a refused message for inspection (payload encrypted), in a unit of work of its own."""
    with unit_of_work(settings) as session:
        Inbox(session, tenant=tenant, settings=settings).record_rejected(
            source=source, event=event, raw=raw, reason=reason)


def run(settings: Settings, tenant: str, caller: Caller, audit: Audit, work: Callable[[Work], T], *,
        readonly: bool = False) -> T:
    """Run ``work`` in one unit of work and audit it (see the module docstring)."""

    def record(fhir: FhirService, outcome: int, resource_id: str | None, description: str | None) -> None:
        fhir.record_audit(audit_event(
            principal=caller.principal, interaction=audit.interaction, now=fhir.clock(), outcome=outcome,
            address=caller.address, resource_type=audit.resource_type, resource_id=resource_id,
            query=audit.query, description=description))

    def written(result: Any) -> str | None:
        return audit.resource_id or (audit.written_id(result) if audit.written_id else None)

    def record_alone(outcome: int, resource_id: str | None, description: str | None) -> None:
        with unit_of_work(settings) as session:
            record(fhir_service(session, settings, tenant, caller.base_url, caller.clock), outcome, resource_id,
                   description)

    try:
        if readonly:
            with unit_of_work(settings, readonly=True) as session:
                result = work(Work(session, settings, tenant, caller))
            record_alone(0, written(result), audit.description)  # raises if it cannot be stored: no response
            return result
        with unit_of_work(settings) as session:
            services = Work(session, settings, tenant, caller)
            result = work(services)
            record(services.fhir, 0, written(result), audit.description)
            return result
    except Exception as exc:
        outcome, description = audit.failure(exc)
        record_alone(outcome, audit.resource_id, description)
        raise
