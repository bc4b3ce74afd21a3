"""The write policy of the inbound channels, and their audit trail.

API callers write under :class:`hub.security.policy.AccessPolicy` (scopes, compartments). What a
partner sends through an inbound channel (the signed webhook, HL7 v2 over MLLP, polling, and the
fax, Direct and HEP intakes) is written under an :class:`InboundPolicy` instead: the FHIR service
checks every create, update and delete against the resource types the partner's connector may
write (``inbound_types`` in its config; by default :data:`DEFAULT_INBOUND_TYPES`, the clinical
types the hub stores, less :data:`PAYER_TYPES`, which a connector writes only when it lists them).
The hub's own records (:data:`connectors.base.HUB_ONLY_TYPES`: AuditEvent, Provenance) are refused
whatever the config says. A refusal is an :class:`InboundRefused` (403) that the channel keeps as the
reason of the rejected message.

Every inbound write, and every refused one, records an AuditEvent whose agent is the connector (or
listener) the message came through (:func:`inbound_audit`), in the transaction of the write.
Reads the channel does to place a write (lookup by business identifier) are not checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from connectors.base import HUB_ONLY_TYPES
from hub.fhir.service import FhirService
from hub.security.audit import audit_event
from hub.security.principal import Forbidden, Principal
from mappings.fhir import SUPPORTED_TYPES

__all__ = ["CONNECTOR_SYSTEM", "DEFAULT_INBOUND_TYPES", "PAYER_TYPES", "InboundPolicy", "InboundRefused",
           "inbound_audit"]

#: a payer's adjudications and the eligibility exchange: the billing imports (835, 271) write them as
#: the hub itself; a partner connector writes them only when its ``inbound_types`` names them
PAYER_TYPES: frozenset[str] = frozenset({"ClaimResponse", "CoverageEligibilityResponse",
                                         "CoverageEligibilityRequest"})
#: what partners may write when their connector does not say
DEFAULT_INBOUND_TYPES: frozenset[str] = frozenset(SUPPORTED_TYPES) - HUB_ONLY_TYPES - PAYER_TYPES
#: the identifier system of a connector (or listener) as the agent of an AuditEvent
CONNECTOR_SYSTEM = "https://therapy-hub.example/sid/connector"


class InboundRefused(Forbidden):
    title = "Resource type not accepted from this partner"


class InboundPolicy:
    """The policy of one inbound channel's writes (:class:`hub.fhir.policy.StorePolicy`): the
    channel builds its FHIR store with it."""

    restricted = False  # no compartment: the partner's writes are limited by type, not by patient

    def __init__(self, *, tenant: str, source: str, channel: str, allowed: Iterable[str] | None = None) -> None:
        self.tenant = tenant
        self.source = source
        self.channel = channel
        self.allowed = (frozenset(allowed) if allowed is not None else DEFAULT_INBOUND_TYPES) - HUB_ONLY_TYPES
        #: who writes, for what asks the policy about its caller (a system, without scopes to spend)
        self.principal = Principal.of(f"{channel}:{source}", tenant, "system", "", None)

    @classmethod
    def for_config(cls, *, tenant: str, source: str, channel: str, config: Any) -> InboundPolicy:
        """The policy of a connector from its (validated or raw) config: ``inbound_types``, else the default."""
        value = config.get("inbound_types") if isinstance(config, dict) else getattr(config, "inbound_types", None)
        return cls(tenant=tenant, source=source, channel=channel, allowed=value)

    # ------------------------------------------------ the interface FhirService calls (as AccessPolicy's)

    def check(self, resource_type: str, permission: str) -> None:
        if permission in "cud" and resource_type not in self.allowed:
            raise InboundRefused(f"{resource_type} is not accepted from the {self.channel} {self.source!r}"
                                 + (" (only the hub writes it)" if resource_type in HUB_ONLY_TYPES else
                                    " (not in its connector's inbound_types)"), expression="resourceType")

    def check_write(self, resource_type: str, resource: dict[str, Any]) -> None:
        self.check(resource_type, "c")

    def may_read(self, resource_type: str) -> bool:
        return True

    def visible(self, resource_type: str, resource: dict[str, Any]) -> bool:
        return True

    def search_items(self, resource_type: str, items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        return list(items)

    def forbidden(self, what: str) -> Forbidden:
        return Forbidden(f"The {self.channel} {self.source!r} may not read {what}")

    # ------------------------------------------------ audit

    def audit(self, fhir: FhirService, *, interaction: str, outcome: int, resource_type: str | None = None,
              resource_id: str | None = None, description: str | None = None, address: str | None = None) -> None:
        """Record the AuditEvent of one inbound write in ``fhir``'s transaction."""
        fhir.record_audit(inbound_audit(
            tenant=self.tenant, source=self.source, channel=self.channel, now=fhir.clock(), outcome=outcome,
            interaction=interaction, resource_type=resource_type, resource_id=resource_id,
            description=description, address=address))


def inbound_audit(*, tenant: str, source: str, channel: str, now: datetime, outcome: int, interaction: str,
                  resource_type: str | None = None, resource_id: str | None = None,
                  description: str | None = None, address: str | None = None) -> dict[str, Any]:
    """An AuditEvent of a write by a partner: the agent is its connector ``source`` (a system, not a
    user), identified under :data:`CONNECTOR_SYSTEM` as ``<channel>:<source>``.
    ``outcome``: 0 success, 4 refused (the message is kept as rejected), 8 failure."""
    agent = Principal.of(f"{channel}:{source}", tenant, "system", "", None)
    event = audit_event(principal=agent, interaction=interaction, now=now, outcome=outcome, address=address,
                        resource_type=resource_type, resource_id=resource_id, description=description)
    event["agent"][0]["who"]["identifier"]["system"] = CONNECTOR_SYSTEM
    event["agent"][0]["name"] = source
    event["type"] = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110107",
                     "display": "Import"}
    return event
