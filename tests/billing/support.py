"""Small readers shared by the billing tests: the claims of the store by visit, an 837P's CLM01s."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hub.billing.service import BillingService
from hub.settings import Settings
from hub.store.models import BillingClaim
from hub.unit_of_work import unit_of_work


def rows(settings: Settings) -> dict[str, BillingClaim]:
    """encounter id -> its latest claim row (detached, read in a transaction of its own)."""
    with unit_of_work(settings) as session:
        found = list(session.scalars(select(BillingClaim).order_by(BillingClaim.id)))
        session.expunge_all()
    return {row.encounter_id or "": row for row in found}


def service_call(settings: Settings, work: Any) -> Any:
    with unit_of_work(settings) as session:
        return work(BillingService(session, settings, settings.default_tenant))


def claim_numbers(x12: str) -> list[str]:
    """CLM01 of every claim in an 837P (segment terminator ~, element separator *)."""
    return [segment.split("*")[1] for segment in x12.replace("\n", "").split("~") if segment.startswith("CLM*")]


def modifiers(claim: dict[str, Any]) -> list[list[str]]:
    return [[m["coding"][0]["code"] for m in item.get("modifier", [])] for item in claim["item"]]
