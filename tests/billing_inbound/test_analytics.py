"""Analytics on a known set of claims: by status, denials by CARC and payer, days to payment."""

from __future__ import annotations

from datetime import datetime

from fastapi.testclient import TestClient

from hub.billing.analytics import days_summary
from hub.billing.imports import MANUAL_SOURCE, import_x12
from hub.settings import Settings
from hub.unit_of_work import unit_of_work
from tests.billing_inbound.support import TENANT, claim, envelope, remit_body, sent_file


def _import(settings: Settings, raw: bytes) -> None:
    with unit_of_work(settings) as session:
        assert import_x12(session, settings, tenant=TENANT, raw=raw, source=MANUAL_SOURCE, name=None).ok


def test_analytics_of_a_known_set(client: TestClient, settings: Settings) -> None:
    sent_file(settings, [claim("TA1", ("97110", "100.00")), claim("TA2", ("97110", "100.00"), ("97750", "50.00")),
                         claim("TA3", ("97750", "75.00")), claim("TA4", ("97110", "40.00"))], 1001,
              submitted_at=datetime(2026, 3, 10, 9, 30))
    _import(settings, envelope([("835", remit_body(
        ["CLP*TA1*1*100*64*16*MB*P1*11*1", "SVC*HC:97110:GP*100*64**1", "CAS*CO*45*20", "CAS*PR*2*16",
         "REF*6R*TA1-1"], total="64", trace="EFTA1", day="20260320"))], control=951))
    _import(settings, envelope([("835", remit_body(
        ["CLP*TA2*1*150*64*16*MB*P2*11*1", "SVC*HC:97110:GP*100*64**1", "CAS*CO*45*20", "CAS*PR*2*16",
         "REF*6R*TA2-1", "SVC*HC:97750:GP*50*0**1", "CAS*CO*50*50", "REF*6R*TA2-2"],
        ["CLP*TA3*4*75*0*0*MB*P3*11*1", "SVC*HC:97750:GP*75*0**1", "CAS*CO*50*75", "REF*6R*TA3-1"],
        total="64", trace="EFTA2", day="20260324"))], control=952))

    answer = client.get("/admin/api/billing/analytics", params={"from": "2026-03-01", "to": "2026-04-01"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["claims"] == 4
    assert body["by_status"] == {
        "denied": {"count": 1, "charge_cents": 7500, "paid_cents": 0},
        "paid": {"count": 1, "charge_cents": 10000, "paid_cents": 6400},
        "partially_paid": {"count": 1, "charge_cents": 15000, "paid_cents": 6400},
        "submitted": {"count": 1, "charge_cents": 4000, "paid_cents": 0},
    }
    [co50] = body["denials"]["by_carc"]
    assert (co50["group"], co50["carc"], co50["count"], co50["amount_cents"]) == ("CO", "50", 2, 12500)
    assert co50["claims"] == 2
    assert co50["description"] and "medical necessity" in co50["description"].lower()
    [payer] = body["denials"]["by_payer"]
    assert payer["payer_id"] == "00952" and payer["count"] == 2
    days = body["days_to_payment"]
    assert (days["count"], days["median"], days["mean"], days["p90"]) == (2, 12, 12, 14)
    assert days["by_payer"]["00952"]["count"] == 2

    later = client.get("/admin/api/billing/analytics", params={"from": "2026-04-01"}).json()
    assert later["claims"] == 0 and later["days_to_payment"]["count"] == 0


def test_days_summary() -> None:
    assert days_summary([5, 1, 3, 10, 2, 8, 7, 4, 6, 9]) == {"count": 10, "median": 5.5, "mean": 5.5, "p90": 9}
    assert days_summary([]) == {"count": 0, "median": None, "mean": None, "p90": None}
