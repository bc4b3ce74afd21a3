"""GET /metrics, billing series: claims, their charges and what was paid on them, by tenant and billing
status, every status of every tenant present (zeros included, so that an alert sees a series fall to
0), an administrator's own tenant only, and no claim, patient or payer in any label."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from hub.app import create_app
from hub.kit import utcnow
from hub.settings import Settings
from hub.store.billing_views import CLAIM_STATUSES
from hub.store.models import Tenant
from hub.unit_of_work import unit_of_work
from tests.billing_rows import add_claim
from tests.security.conftest import add_client, bearer, get_token, secured
from tests.security.test_metrics import samples, value

SCRAPER = "scraper-token-0123456789"
SERIES = ("therapy_hub_billing_claims", "therapy_hub_billing_charge_cents", "therapy_hub_billing_paid_cents")


@pytest.fixture
def scraped(settings: Settings) -> Iterator[tuple[Settings, TestClient]]:
    configured = secured(settings, metrics_token=SecretStr(SCRAPER))
    with TestClient(create_app(configured), base_url="http://testserver") as api:
        yield configured, api


def _claims(settings: Settings) -> list[str]:
    """Three claims of "default", one of "other-clinic"; "idle-clinic" has none. Returns their claim ids."""
    return [
        add_claim(settings, "default", "PCN-M-0001", status="paid", charge_cents=15000, paid_cents=12000),
        add_claim(settings, "default", "PCN-M-0002", status="paid", charge_cents=5000, paid_cents=5000),
        add_claim(settings, "default", "PCN-M-0003", status="denied", charge_cents=8000, paid_cents=0,
                  payer_id="AETNA-60054"),
        add_claim(settings, "other-clinic", "PCN-M-0004", status="blocked", charge_cents=9900),
    ]


def test_claims_and_amounts_by_tenant_and_status_with_zeros(scraped: tuple[Settings, TestClient]) -> None:
    settings, api = scraped
    claim_ids = _claims(settings)
    with unit_of_work(settings) as session:  # a tenant without claims has its zeros too
        session.add(Tenant(id="idle-clinic", name="Idle", created_at=utcnow()))
    text = api.get("/metrics", headers=bearer(SCRAPER)).text
    found = samples(text)
    assert value(found, "therapy_hub_billing_claims", tenant="default", status="paid") == 2
    assert value(found, "therapy_hub_billing_charge_cents", tenant="default", status="paid") == 20000
    assert value(found, "therapy_hub_billing_paid_cents", tenant="default", status="paid") == 17000
    assert value(found, "therapy_hub_billing_claims", tenant="default", status="denied") == 1
    assert value(found, "therapy_hub_billing_charge_cents", tenant="default", status="denied") == 8000
    assert value(found, "therapy_hub_billing_claims", tenant="default", status="blocked") == 0
    assert value(found, "therapy_hub_billing_claims", tenant="other-clinic", status="blocked") == 1
    assert value(found, "therapy_hub_billing_charge_cents", tenant="other-clinic", status="blocked") == 9900
    assert value(found, "therapy_hub_billing_claims", tenant="other-clinic", status="paid") == 0
    for name in SERIES:  # every status of every tenant, and nothing else
        keys = {dict(pairs)["tenant"] + "/" + dict(pairs)["status"] for (n, pairs) in found if n == name}
        assert keys == {f"{t}/{s}" for t in ("default", "other-clinic", "idle-clinic") for s in CLAIM_STATUSES}, name
        assert all(value(found, name, tenant="idle-clinic", status=s) == 0 for s in CLAIM_STATUSES)
        labels = {k for (n, pairs) in found if n == name for k, _ in pairs}
        assert labels == {"tenant", "status"}
    for secret in ("PCN-M-", "patient-of-", "encounter-of-", "AETNA-60054", "MEDICARE-JL", *claim_ids):
        assert secret not in text


def test_an_administrator_sees_the_billing_of_their_own_tenant(scraped: tuple[Settings, TestClient]) -> None:
    settings, api = scraped
    _claims(settings)
    admin = add_client(settings, "other-clinic", "admin")
    found = samples(api.get("/metrics", headers=bearer(get_token(api, admin))).text)
    tenants = {dict(pairs)["tenant"] for (n, pairs) in found if n in SERIES}
    assert tenants == {"other-clinic"}
    assert value(found, "therapy_hub_billing_claims", tenant="other-clinic", status="blocked") == 1
    assert value(found, "therapy_hub_billing_paid_cents", tenant="other-clinic", status="blocked") == 0


def test_no_claims_at_all(scraped: tuple[Settings, TestClient]) -> None:
    settings, api = scraped
    admin = add_client(settings, "default", "admin")
    found = samples(api.get("/metrics", headers=bearer(get_token(api, admin))).text)
    for name in SERIES:
        assert all(value(found, name, tenant="default", status=s) == 0 for s in CLAIM_STATUSES), name
