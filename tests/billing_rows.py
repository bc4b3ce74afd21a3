"""A factory of ``billing_claims`` rows written straight into the store, for the tests of what reads the
billing state (the dashboard's Billing page, ``/metrics``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from hub.kit import utcnow
from hub.settings import Settings
from hub.store.models import BillingClaim
from hub.store.repository import ensure_tenant
from hub.unit_of_work import unit_of_work


def add_claim(settings: Settings, tenant: str, pcn: str, *, status: str, charge_cents: int,
              findings: list[dict[str, Any]] | str | None = None, updated_at: datetime | None = None,
              **fields: Any) -> str:
    """Write one claim of ``tenant`` with patient control number ``pcn``; returns its claim id.
    ``findings`` as a list is stored as JSON; a string is stored as it is (to store a broken one)."""
    now = updated_at or utcnow()
    claim_id = str(fields.pop("claim_id", f"claim-{tenant}-{pcn}".lower()))
    values: dict[str, Any] = {
        "payer_id": "MEDICARE-JL", "discipline": "PT", "patient_id": f"patient-of-{pcn}",
        "encounter_id": f"encounter-of-{pcn}", "frequency_code": "1", "created_at": now, "updated_at": now,
        **fields,
    }
    stored = json.dumps(findings) if isinstance(findings, list) else findings
    with unit_of_work(settings) as session:
        ensure_tenant(session, tenant_id=tenant, name=f"Clinic {tenant}", now=now)
        session.add(BillingClaim(tenant_id=tenant, claim_id=claim_id, patient_control_number=pcn, status=status,
                                 charge_cents=charge_cents, findings=stored, **values))
    return claim_id
