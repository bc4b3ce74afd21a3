"""The billing profiles of a tenant: its ``x12_billing`` connectors that carry a ``billing`` section, and
which of them bills a payer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.orm import Session

from connectors.x12_billing.config import X12BillingConfig
from connectors.x12_billing.profile import BillingProfile
from hub.settings import Settings
from hub.store import sync_repository as sync_repo
from hub.sync.config import SyncConfig

__all__ = ["Clearinghouse", "claim_number", "clearinghouses", "for_payer"]

KIND = "x12_billing"
#: base32 without padding: upper-case letters and digits, as CLM01 takes them
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True, slots=True)
class Clearinghouse:
    """One x12_billing connector instance with its billing profile."""

    connector_id: int
    name: str
    profile: BillingProfile


def clearinghouses(session: Session, settings: Settings, tenant: str) -> list[Clearinghouse]:
    """The tenant's enabled x12_billing connectors with a billing profile, by name."""
    config = SyncConfig(session, tenant=tenant, settings=settings)
    found = []
    for instance in sync_repo.list_connectors(session, tenant=tenant):
        if instance.kind != KIND or not instance.enabled:
            continue
        parsed = X12BillingConfig.model_validate(config.connector_config(instance))
        if parsed.billing is not None:
            found.append(Clearinghouse(instance.id, instance.name, parsed.billing))
    return found


def for_payer(houses: list[Clearinghouse], payer_id: str) -> Clearinghouse | None:
    """The connector that bills ``payer_id``: the first that lists it, else the first default one."""
    return (next((h for h in houses if h.profile.takes(payer_id)), None)
            or next((h for h in houses if h.profile.default), None))


def claim_number(tenant: str, encounter_id: str, revision: int = 0) -> str:
    """The patient control number (CLM01, at most 20 characters) of a visit's claim: 16 characters
    derived from the tenant and the Encounter id (the same visit always gives the same number), and
    ``R<n>`` for its n-th replacement."""
    digest = hashlib.sha256(f"{tenant}|Encounter/{encounter_id}".encode()).digest()
    bits = int.from_bytes(digest[:10], "big")  # 80 bits = 16 base32 characters
    text = "".join(_ALPHABET[(bits >> shift) & 31] for shift in range(75, -1, -5))
    return text if revision == 0 else f"{text}R{revision}"
