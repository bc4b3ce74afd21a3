"""The Billing page: claims by status with their amounts, the totals (billed, paid, the patients'
share, the denial rate), the claims filtered by status and paged, a claim's findings, the tenant's
claims only, no patient id on any page, and refused without the Claim scopes."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hub.security.clients import NewClient
from hub.settings import Settings
from hub.store.billing_views import CLAIM_STATUSES
from hub.store.models import Resource
from hub.unit_of_work import unit_of_work
from tests.billing_rows import add_claim
from tests.dashboard.conftest import TENANT, signed_in
from tests.security.conftest import add_client

OTHER = "other-clinic"
KX = {"rule": "KX-THRESHOLD", "severity": "error", "line": "2",
      "message": "The year's PT/SLP amount passes the KX threshold without the KX modifier",
      "fix": "Add modifier KX when the therapy is medically necessary, or hold the claim"}
UNITS = {"rule": "8-MINUTE-RULE", "severity": "warning", "line": "1",
         "message": "38 timed minutes bill 3 units, the line has 2", "fix": "Bill 3 units of 97110"}


@dataclass
class Claims:
    paid: str
    denied: str
    blocked: str
    partial: str
    draft: str
    other: str  # the other tenant's


@pytest.fixture
def claims(auth_settings: Settings) -> Claims:
    """Five claims of the signed-in tenant (one of each of five statuses, the newest last) and one of
    another tenant, written straight into billing_claims."""
    start = datetime(2026, 3, 2, 9, 0)

    def at(hours: int) -> datetime:
        return start + timedelta(hours=hours)

    paid = add_claim(auth_settings, TENANT, "PCN-PAID-0001", status="paid", charge_cents=15000, paid_cents=12000,
                     patient_responsibility_cents=3000, service_from=at(0), service_to=at(0), payer_id="MEDICARE-JL",
                     payer_claim_number="ICN-77001", updated_at=at(1))
    denied = add_claim(auth_settings, TENANT, "PCN-DENIED-0002", status="denied", charge_cents=8000, paid_cents=0,
                       status_detail="CO-50 not medically necessary", discipline="OT", payer_id="AETNA-60054",
                       service_from=at(24), service_to=at(24), updated_at=at(2))
    blocked = add_claim(auth_settings, TENANT, "PCN-BLOCKED-0003", status="blocked", charge_cents=9900,
                        findings=[KX, UNITS], status_detail="2 findings", service_from=at(48), service_to=at(72),
                        updated_at=at(3))
    partial = add_claim(auth_settings, TENANT, "PCN-PARTIAL-0004", status="partially_paid", charge_cents=10000,
                        paid_cents=6000, patient_responsibility_cents=2000, discipline="SLP", updated_at=at(4))
    draft = add_claim(auth_settings, TENANT, "PCN-DRAFT-0005", status="draft", charge_cents=5000, updated_at=at(5))
    other = add_claim(auth_settings, OTHER, "PCN-OTHER-0001", status="paid", charge_cents=77700, paid_cents=77700,
                      payer_id="OTHER-PAYER-99", updated_at=at(6))
    return Claims(paid, denied, blocked, partial, draft, other)


def count_of(page: str, status: str) -> int:
    match = re.search(rf'data-status="{status}">(\d+)</td>', page)
    assert match, f"no count for {status}"
    return int(match.group(1))


def claims_table(page: str) -> str:
    return page.split('<table id="claims">', 1)[1].split("</table>", 1)[0]


def cell(page: str, cell_id: str) -> str:
    match = re.search(rf'id="{cell_id}">([^<]*)</td>', page)
    assert match, cell_id
    return html.unescape(match.group(1))


def test_counts_amounts_and_totals(web: TestClient, admin: NewClient, claims: Claims) -> None:
    signed_in(web, admin)
    response = web.get("/dashboard/billing")
    assert response.status_code == 200, response.text
    page = response.text
    assert 'href="/dashboard/billing" class="active"' in page  # in the navigation
    counts = {s: count_of(page, s) for s in CLAIM_STATUSES}
    assert counts == {**dict.fromkeys(CLAIM_STATUSES, 0),
                      "paid": 1, "denied": 1, "blocked": 1, "partially_paid": 1, "draft": 1}
    status_row = re.search(r'status=blocked">blocked</a></th>\s*<td class="num bad" data-status="blocked">1</td>\s*'
                           r'<td class="num">\$99\.00</td>', page)
    assert status_row, "the blocked claims' count and charge"
    # billed: the claims sent (paid, denied, partially paid), not the draft or the blocked one
    assert cell(page, "billed") == "$330.00"
    assert cell(page, "paid") == "$180.00"
    assert cell(page, "patient-responsibility") == "$50.00"
    assert cell(page, "denial-rate") == "33.3 %"  # one denied of three decided
    table = claims_table(page)
    order = [m.group(1) for m in re.finditer(r"<code>(PCN-[A-Z]+-\d+)</code>", table)]
    assert order == ["PCN-DRAFT-0005", "PCN-PARTIAL-0004", "PCN-BLOCKED-0003", "PCN-DENIED-0002", "PCN-PAID-0001"]
    assert "CO-50 not medically necessary" in table and "AETNA-60054" in table and "OT" in table
    assert "2026-03-04 – 2026-03-05" in table  # the blocked claim's dates of service
    assert f'href="/dashboard/billing/claims/{claims.blocked}"' in table
    blocked_row = table.split("PCN-BLOCKED-0003", 1)[1].split("</tr>", 1)[0]
    assert re.search(r'<td class="num">2</td>\s*$', blocked_row), "two findings on the blocked claim"


def test_the_overview_counts_the_claims_to_look_at(web: TestClient, admin: NewClient, claims: Claims) -> None:
    signed_in(web, admin)
    card = web.get("/dashboard").text.split('id="claims-card"', 1)[1].split("</section>", 1)[0]
    assert {s: count_of(card, s) for s in ("blocked", "rejected", "payer_rejected", "denied")} == {
        "blocked": 1, "rejected": 0, "payer_rejected": 0, "denied": 1}
    assert 'href="/dashboard/billing?status=blocked"' in card
    assert re.search(r'all claims</th><td class="num">5<', card)


def test_no_claims_yet(web: TestClient, admin: NewClient) -> None:
    signed_in(web, admin)
    page = web.get("/dashboard/billing").text
    assert all(count_of(page, s) == 0 for s in CLAIM_STATUSES)
    assert cell(page, "billed") == "$0.00" and cell(page, "denial-rate") == "—" and "No claims match." in page


def test_filter_by_status_and_pages(web: TestClient, admin: NewClient, claims: Claims) -> None:
    signed_in(web, admin)
    table = claims_table(web.get("/dashboard/billing", params={"status": "blocked"}).text)
    assert "PCN-BLOCKED-0003" in table
    assert not any(p in table for p in ("PCN-PAID-0001", "PCN-DENIED-0002", "PCN-DRAFT-0005"))
    assert "PCN-" not in claims_table(web.get("/dashboard/billing", params={"status": "reversed"}).text)

    first = web.get("/dashboard/billing", params={"limit": "2"}).text
    assert "1–2 of 5" in first and claims_table(first).count("<code>PCN-") == 2
    following = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert following and "offset=2" in following.group(1) and "limit=2" in following.group(1)
    last = web.get(html.unescape(following.group(1))).text
    assert "3–4 of 5" in last and "PCN-BLOCKED-0003" in claims_table(last)

    refused = web.get("/dashboard/billing", params={"status": "lost"})
    assert refused.status_code == 400 and "There is no claim status &#39;lost&#39;" in refused.text
    assert "PCN-" not in claims_table(refused.text)


def test_a_claims_findings(web: TestClient, admin: NewClient, auth_settings: Settings, claims: Claims) -> None:
    signed_in(web, admin)
    response = web.get(f"/dashboard/billing/claims/{claims.blocked}")
    assert response.status_code == 200, response.text
    page = html.unescape(response.text)
    findings = page.split('<table id="findings">', 1)[1]
    for finding in (KX, UNITS):
        row = findings.split(f"<code>{finding['rule']}</code>", 1)[1].split("</tr>", 1)[0]
        assert finding["severity"] in row and finding["message"] in row and finding["fix"] in row
        assert f"<td>{finding['line']}</td>" in row
    assert "PCN-BLOCKED-0003" in page and "$99.00" in page and "2 findings" in page

    paid = html.unescape(web.get(f"/dashboard/billing/claims/{claims.paid}").text)
    assert "No findings." in paid and "ICN-77001" in paid and "$120.00" in paid and "$30.00" in paid

    broken = add_claim(auth_settings, TENANT, "PCN-BROKEN-0006", status="blocked", charge_cents=100,
                       findings="{not json")
    assert "cannot be read" in web.get(f"/dashboard/billing/claims/{broken}").text
    assert "unreadable" in claims_table(web.get("/dashboard/billing").text)

    with unit_of_work(auth_settings) as session:  # each view is audited as the client's read of Claim
        events = [r.content or "" for r in session.scalars(
            select(Resource).where(Resource.tenant_id == TENANT, Resource.resource_type == "AuditEvent"))]
    assert any(f"Claim/{claims.blocked}" in e and admin.client_id in e for e in events)


def test_another_tenants_claims_are_never_shown(web: TestClient, admin: NewClient, auth_settings: Settings,
                                                claims: Claims) -> None:
    signed_in(web, admin)
    page = web.get("/dashboard/billing").text
    assert "PCN-OTHER-0001" not in page and "OTHER-PAYER-99" not in page and "$777.00" not in page
    assert count_of(page, "paid") == 1
    assert "PCN-OTHER" not in web.get("/dashboard/billing", params={"status": "paid"}).text
    missing = web.get(f"/dashboard/billing/claims/{claims.other}")
    assert missing.status_code == 404 and "PCN-OTHER-0001" not in missing.text

    other_admin = add_client(auth_settings, OTHER, "admin")  # and the other tenant sees its own only
    signed_in(web, other_admin)
    page = web.get("/dashboard/billing").text
    assert "PCN-OTHER-0001" in page and "PCN-PAID-0001" not in page and cell(page, "paid") == "$777.00"
    assert web.get(f"/dashboard/billing/claims/{claims.paid}").status_code == 404


def test_no_patient_id_on_any_page(web: TestClient, admin: NewClient, claims: Claims) -> None:
    signed_in(web, admin)
    pages = [web.get("/dashboard/billing").text, web.get("/dashboard/billing", params={"status": "blocked"}).text]
    pages += [web.get(f"/dashboard/billing/claims/{c}").text
              for c in (claims.paid, claims.denied, claims.blocked, claims.partial, claims.draft)]
    for page in pages:
        assert "patient-of-" not in page and "encounter-of-" not in page


@pytest.mark.parametrize("scopes", ["system/Patient.rs system/Task.rs", "system/Claim.r system/ClaimResponse.rs",
                                    "system/Claim.rs"])
def test_refused_without_the_claim_scopes(auth_settings: Settings, web: TestClient, claims: Claims,
                                          scopes: str) -> None:
    narrow = add_client(auth_settings, TENANT, "admin", scopes=scopes)
    signed_in(web, narrow)
    for path in ("/dashboard/billing", f"/dashboard/billing/claims/{claims.blocked}"):
        page = web.get(path)
        assert page.status_code == 403 and "do not allow reading and searching Claim" in page.text, path
        assert "PCN-" not in page.text and "$" not in page.text
    card = web.get("/dashboard").text.split('id="claims-card"', 1)[1].split("</section>", 1)[0]
    assert "do not allow reading and searching Claim" in card and "data-status" not in card


def test_the_claim_scopes_are_enough(auth_settings: Settings, web: TestClient, claims: Claims) -> None:
    billing_only = add_client(auth_settings, TENANT, "admin", scopes="system/Claim.rs system/ClaimResponse.rs")
    signed_in(web, billing_only)
    assert "PCN-PAID-0001" in web.get("/dashboard/billing").text
