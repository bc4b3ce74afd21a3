"""The Billing page's actions and analytics: a week of visits in the store -> Build -> the claims are
listed; Re-scrub writes a claim's findings again; Submit sends the ready claims to the sandbox
clearinghouse connector as queued delivery jobs (a clear notice when no connector is configured);
only a client that may bill sees the buttons and may post them, each action carries the CSRF token
and is audited; the analytics section shows denials by CARC and payer and days to payment."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hub.app import create_app
from hub.billing.imports import MANUAL_SOURCE, import_x12
from hub.deps import get_clock
from hub.security.clients import NewClient
from hub.settings import Settings
from hub.store.models import BillingClaim, DeliveryJob, Resource
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work, using_enqueuer
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing.scenario import ACME, MEDICARE, billing_profile, load_week
from tests.billing_inbound.support import claim, envelope, remit_body, sent_file
from tests.dashboard.conftest import TENANT, Clock, csrf_of, signed_in
from tests.enqueuers import RecordingEnqueuer
from tests.security.conftest import add_client

CONNECTOR = "clearinghouse"
BUILD, SUBMIT = "/dashboard/billing/build", "/dashboard/billing/submit"
READ_ONLY = "system/Claim.rs system/ClaimResponse.rs"


@pytest.fixture
def recorder() -> Iterator[RecordingEnqueuer]:
    recording = RecordingEnqueuer()
    with using_enqueuer(recording):
        yield recording


@pytest.fixture
def web(auth_settings: Settings, clock: Clock, recorder: RecordingEnqueuer) -> Iterator[TestClient]:
    """The dashboard (authentication on), its delivery jobs recorded instead of sent to a broker."""
    app = create_app(auth_settings, enqueuer=recorder)
    app.dependency_overrides[get_clock] = lambda: clock
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def house() -> Iterator[SandboxClearinghouse]:
    with SandboxClearinghouse() as sandbox:
        yield sandbox


@pytest.fixture
def week(api: TestClient, auth_settings: Settings, house: SandboxClearinghouse) -> None:
    """A week of finished visits with their ChargeItems, and the clearinghouse connector configured."""
    load_week(api)
    with unit_of_work(auth_settings) as session:
        SyncConfig(session, tenant=TENANT, settings=auth_settings).add_connector(
            name=CONNECTOR, kind="x12_billing", config=house.connector_config("sftp", billing=billing_profile()))


def count_of(page: str, status: str) -> int:
    found = re.search(rf'data-status="{status}">(\d+)</td>', page)
    assert found, status
    return int(found.group(1))


def notice_of(web: TestClient, answer: httpx.Response) -> str:
    """The notice of an action's answer (303), on the page it leads to."""
    assert answer.status_code == 303, answer.text
    page = web.get(answer.headers["location"])
    found = re.search(r'<p class="notice (ok|error)" role="status">([^<]*)</p>', page.text)
    assert found, "no notice"
    return f"{found.group(1)}: {html.unescape(found.group(2))}"


def rows(settings: Settings) -> list[BillingClaim]:
    with unit_of_work(settings) as session:
        found = list(session.scalars(select(BillingClaim).where(BillingClaim.tenant_id == TENANT)))
        session.expunge_all()
    return found


def dashboard_audits(settings: Settings) -> list[tuple[str, str]]:
    """(outcome, description) of the AuditEvents of the billing actions."""
    with unit_of_work(settings) as session:
        events = [json.loads(r.content or "{}") for r in session.scalars(
            select(Resource).where(Resource.tenant_id == TENANT, Resource.resource_type == "AuditEvent"))]
    return sorted((e.get("outcome", ""), e.get("outcomeDesc", "")) for e in events
                  if e.get("outcomeDesc", "").startswith("POST /dashboard/billing"))


def test_build_rescrub_and_submit(web: TestClient, admin: NewClient, auth_settings: Settings, week: None,
                                  recorder: RecordingEnqueuer) -> None:
    csrf = signed_in(web, admin)
    page = web.get("/dashboard/billing").text
    assert f'action="{BUILD}"' in page and f'action="{SUBMIT}"' in page and "billing-read-only" not in page
    assert count_of(page, "ready") == 0

    built = web.post(BUILD, data={"csrf": csrf, "through": "2025-03-31"}, follow_redirects=False)
    assert notice_of(web, built) == ("error: 12 claim(s) built: 12 created, 0 updated, 0 replacement(s), "
                                     "0 unchanged; 11 ready, 1 blocked.")
    page = web.get("/dashboard/billing").text
    assert (count_of(page, "ready"), count_of(page, "blocked")) == (11, 1)
    assert page.count('href="/dashboard/billing/claims/') == 12
    assert "pat-" not in page  # no patient on the page

    # re-scrub writes the findings again: a claim whose findings were lost is blocked once more
    [blocked] = [r for r in rows(auth_settings) if r.status == "blocked"]
    with unit_of_work(auth_settings) as session:
        row = session.get(BillingClaim, blocked.id)
        assert row is not None
        row.status, row.findings = "ready", "[]"
    detail = web.get(f"/dashboard/billing/claims/{blocked.claim_id}").text
    assert f'action="/dashboard/billing/claims/{blocked.claim_id}/scrub"' in detail and "No findings." in detail
    scrubbed = web.post(f"/dashboard/billing/claims/{blocked.claim_id}/scrub", data={"csrf": csrf},
                        follow_redirects=False)
    assert scrubbed.headers["location"].startswith(f"/dashboard/billing/claims/{blocked.claim_id}?")
    assert notice_of(web, scrubbed).startswith("error: Claim scrubbed: blocked,")
    assert "<code>ncci.pair</code>" in web.get(f"/dashboard/billing/claims/{blocked.claim_id}").text
    assert web.post("/dashboard/billing/claims/no-such-claim/scrub", data={"csrf": csrf},
                    follow_redirects=False).status_code == 404

    submitted = web.post(SUBMIT, data={"csrf": csrf}, follow_redirects=False)
    text = notice_of(web, submitted)
    assert text.startswith("ok: 2 837P file(s) queued to the clearinghouse, 11 claim(s) submitted"), text
    assert f"payer {MEDICARE} via {CONNECTOR}: 10 claim(s)" in text
    assert f"payer {ACME} via {CONNECTOR}: 1 claim(s)" in text
    after = rows(auth_settings)
    assert sorted(r.status for r in after) == ["blocked"] + ["submitted"] * 11
    with unit_of_work(auth_settings) as session:
        jobs = list(session.scalars(select(DeliveryJob).where(DeliveryJob.tenant_id == TENANT)))
        assert len(jobs) == 2 and {j.status for j in jobs} == {"pending"}
        job_ids = {j.id for j in jobs}
    assert job_ids <= set(recorder.sent)  # enqueued after the commit
    page = web.get("/dashboard/billing").text
    assert count_of(page, "submitted") == 11

    again = web.post(SUBMIT, data={"csrf": csrf}, follow_redirects=False)
    assert notice_of(web, again) == "ok: No claim is ready to go out: nothing was submitted."
    outcomes = dashboard_audits(auth_settings)
    assert ("0", "POST /dashboard/billing/build") in outcomes
    assert ("0", f"POST /dashboard/billing/claims/{blocked.claim_id}/scrub") in outcomes
    assert outcomes.count(("0", "POST /dashboard/billing/submit")) == 2
    assert ("4", "POST /dashboard/billing/claims/no-such-claim/scrub HTTP 404") in outcomes


def test_submit_without_a_clearinghouse(web: TestClient, admin: NewClient, auth_settings: Settings) -> None:
    csrf = signed_in(web, admin)
    answer = web.post(SUBMIT, data={"csrf": csrf}, follow_redirects=False)
    assert notice_of(web, answer).startswith("error: No x12_billing connector with a billing profile is configured")
    built = web.post(BUILD, data={"csrf": csrf, "through": "soon"}, follow_redirects=False)
    assert notice_of(web, built).startswith("error: The date must be like")


def test_a_client_that_may_not_bill_sees_no_buttons_and_is_refused(
        web: TestClient, auth_settings: Settings, week: None) -> None:
    viewer = add_client(auth_settings, TENANT, "admin", scopes=READ_ONLY)
    csrf = signed_in(web, viewer)
    page = web.get("/dashboard/billing")
    assert page.status_code == 200
    assert 'id="billing-actions"' not in page.text and f'action="{BUILD}"' not in page.text
    assert f'action="{SUBMIT}"' not in page.text and "Submit ready claims" not in page.text
    assert "needs an admin client whose scopes allow" in page.text
    for path in (BUILD, SUBMIT, "/dashboard/billing/claims/any-claim/scrub"):
        refused = web.post(path, data={"csrf": csrf}, follow_redirects=False)
        assert refused.status_code == 403, (path, refused.text)
        assert "needs an admin client" in refused.text
    assert rows(auth_settings) == []
    assert [o for o, _ in dashboard_audits(auth_settings)] == ["4", "4", "4"]


def test_the_claim_page_has_no_button_for_a_viewer(web: TestClient, auth_settings: Settings) -> None:
    from tests.billing_rows import add_claim

    claim_id = add_claim(auth_settings, TENANT, "PCN-VIEW-0001", status="blocked", charge_cents=100)
    signed_in(web, add_client(auth_settings, TENANT, "admin", scopes=READ_ONLY))
    page = web.get(f"/dashboard/billing/claims/{claim_id}").text
    assert "PCN-VIEW-0001" in page and "/scrub" not in page and "Re-scrub" not in page


def test_the_csrf_token_is_required(web: TestClient, admin: NewClient, auth_settings: Settings, week: None) -> None:
    signed_in(web, admin)
    for path in (BUILD, SUBMIT):
        assert web.post(path, data={}, follow_redirects=False).status_code == 403
        assert web.post(path, data={"csrf": "forged"}, follow_redirects=False).status_code == 403
    assert rows(auth_settings) == []


def test_the_analytics_of_a_period(web: TestClient, admin: NewClient, auth_settings: Settings) -> None:
    sent_file(auth_settings, [claim("TA1", ("97110", "100.00")), claim("TA2", ("97110", "100.00"), ("97750", "50.00")),
                              claim("TA3", ("97750", "75.00")), claim("TA4", ("97110", "40.00"))], 1001,
              submitted_at=datetime(2026, 3, 10, 9, 30))
    for raw in (envelope([("835", remit_body(
            ["CLP*TA1*1*100*64*16*MB*P1*11*1", "SVC*HC:97110:GP*100*64**1", "CAS*CO*45*20", "CAS*PR*2*16",
             "REF*6R*TA1-1"], total="64", trace="EFTA1", day="20260320"))], control=951),
            envelope([("835", remit_body(
                ["CLP*TA2*1*150*64*16*MB*P2*11*1", "SVC*HC:97110:GP*100*64**1", "CAS*CO*45*20", "CAS*PR*2*16",
                 "REF*6R*TA2-1", "SVC*HC:97750:GP*50*0**1", "CAS*CO*50*50", "REF*6R*TA2-2"],
                ["CLP*TA3*4*75*0*0*MB*P3*11*1", "SVC*HC:97750:GP*75*0**1", "CAS*CO*50*75", "REF*6R*TA3-1"],
                total="64", trace="EFTA2", day="20260324"))], control=952)):
        with unit_of_work(auth_settings) as session:
            assert import_x12(session, auth_settings, tenant=TENANT, raw=raw, source=MANUAL_SOURCE, name=None).ok
    signed_in(web, admin)
    response = web.get("/dashboard/billing", params={"from": "2026-03-01", "to": "2026-04-01"})
    assert response.status_code == 200, response.text
    page = html.unescape(response.text)
    assert "4 claim(s) with a first date of service from 2026-03-01 to before 2026-04-01" in " ".join(page.split())

    def cells(table: str) -> list[list[str]]:
        body = page.split(f'id="{table}">', 1)[1].split("</tbody>", 1)[0].split("<tbody>", 1)[1]
        return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
                for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]

    [co50] = cells("denials-by-carc")
    assert co50[0] == "CO-50" and "medical necessity" in co50[1].lower() and co50[2:] == ["2", "2", "$125.00"]
    [payer] = cells("denials-by-payer")
    assert payer[0] == "00952" and payer[1] == "CO-50" and payer[3:] == ["2", "2", "$125.00"]
    assert cells("days-to-payment") == [["00952", "2", "12", "12", "14"]]
    assert [re.search(rf'id="{i}">([^<]*)<', page).group(1) for i in  # type: ignore[union-attr]
            ("days-count", "days-median", "days-mean", "days-p90")] == ["2", "12", "12", "14"]
    # the period's totals, defined as the store's: billed = claims sent, denial rate = denied in full
    assert re.search(r'id="period-billed">\$365\.00<', page) and re.search(r'id="period-paid">\$128\.00<', page)
    assert re.search(r'id="period-denial-rate">33\.3 %<', page)

    later = html.unescape(web.get("/dashboard/billing", params={"from": "2026-04-01"}).text)
    assert "0 claim(s) with a first date of service from 2026-04-01 on" in " ".join(later.split())
    assert later.count("No denials.") == 2 and re.search(r'id="days-median">—<', later)
    bad = web.get("/dashboard/billing", params={"from": "March"})
    assert bad.status_code == 400 and "From must be a date like 2026-03-01" in html.unescape(bad.text)


def test_the_forms_carry_the_sessions_token(web: TestClient, admin: NewClient) -> None:
    csrf = signed_in(web, admin)
    page = web.get("/dashboard/billing").text
    assert csrf_of(page.split('id="billing-actions"', 1)[1]) == csrf
