"""835 remittances: a ClaimResponse per claim payment through the FHIR store, the claim paid,
partially paid, denied or reversed, to the cent; idempotent; unknown claims kept as unmatched."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from connectors.x12_billing import X12BillingConnector
from hub.billing.imports import MANUAL_SOURCE, ImportResult, import_x12
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync.inbox import Inbox
from hub.unit_of_work import unit_of_work
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing_inbound.support import (
    TENANT,
    billing_claim,
    claim,
    envelope,
    remit_body,
    resource,
    search,
    sent_file,
)


def _import(settings: Settings, raw: bytes, name: str, source: str = MANUAL_SOURCE) -> ImportResult:
    with unit_of_work(settings) as session:
        return import_x12(session, settings, tenant=TENANT, raw=raw, source=source, name=name)


def _translated(settings: Settings, message_id: str) -> dict:  # type: ignore[type-arg]
    with unit_of_work(settings, readonly=True) as session:
        message = repo.message_by_id(session, tenant=TENANT, message_id=message_id)
        assert message is not None
        payload = Inbox(session, tenant=TENANT, settings=settings).payload(message)
        assert payload is not None
        return dict(json.loads(payload), _status=message.status, _error=message.error)


def test_a_sandbox_835_pays_denies_and_partially_pays_to_the_cent(
        settings: Settings, house: SandboxClearinghouse, uploader: X12BillingConnector) -> None:
    sent = sent_file(settings, [claim("TH5001", ("97110", "100.00")),
                                claim("TH5002", ("97110", "100.00"), ("97750", "50.00")),
                                claim("TH5003", ("97750", "75.00"))], 501)
    uploader.submit("claims.x12", sent.file, "file-501")
    remit = next(n for n in house.wait_for_responses(3) if n.endswith(".835"))
    raw = house.response(remit)
    result = _import(settings, raw, remit)
    assert result.ok, result.view()
    assert result.claims() == {"paid": 1, "partially_paid": 1, "denied": 1}
    assert result.paid_cents == 6400 + 6400

    paid, partial, denied = (billing_claim(settings, pcn) for pcn in ("TH5001", "TH5002", "TH5003"))
    assert (paid.status, paid.paid_cents, paid.patient_responsibility_cents) == ("paid", 6400, 1600)
    assert (partial.status, partial.paid_cents, partial.patient_responsibility_cents) == ("partially_paid", 6400, 1600)
    assert (denied.status, denied.paid_cents, denied.patient_responsibility_cents) == ("denied", 0, 0)
    assert paid.paid_at is not None and paid.payer_claim_number

    for row, claim_id in zip((paid, partial, denied), sent.claim_ids, strict=True):
        assert row.claim_response_id
        response = resource(settings, "ClaimResponse", row.claim_response_id)
        assert response["request"]["reference"] == f"Claim/{claim_id}"
        for value in (f"Claim/{claim_id}", claim_id):  # found by the claim it answers
            assert [r["id"] for r in search(settings, "ClaimResponse", [("request", value)])] == [response["id"]]
        assert response["patient"]["reference"] == "Patient/pat-jones"
        totals = {t["category"]["coding"][0]["code"]: t["amount"]["value"] for t in response["total"]}
        assert totals["submitted"] * 100 == row.charge_cents
        assert round(totals["benefit"] * 100) == row.paid_cents
    partial_response = resource(settings, "ClaimResponse", partial.claim_response_id or "")
    denied_line = partial_response["item"][1]
    reasons = [a["reason"]["coding"][0]["code"] for a in denied_line["adjudication"] if "reason" in a]
    assert partial_response["item"][0]["itemSequence"] == 1 and reasons == ["50"]

    # the same file again is a duplicate: nothing is applied twice
    again = _import(settings, raw, remit)
    assert again.duplicate and again.message_id == result.message_id and not again.sets
    # the same remittance in another file (another name from a connector) updates the same resources
    other = _import(settings, raw, "copy.835", source="clearinghouse")
    assert not other.duplicate and other.claims() == {"paid": 1, "partially_paid": 1, "denied": 1}
    assert len(search(settings, "ClaimResponse", [("patient", "Patient/pat-jones")])) == 3
    assert resource(settings, "ClaimResponse", paid.claim_response_id or "")["meta"]["versionId"] == "2"
    assert billing_claim(settings, "TH5001").paid_cents == 6400


def test_a_reversal_and_its_correction(settings: Settings) -> None:
    sent_file(settings, [claim("TH6001", ("97110", "100.00"))], 601)
    first = envelope([("835", remit_body(
        ["CLP*TH6001*1*100*64*16*MB*PAYER6001*11*1", "CAS*CO*45*20", "CAS*PR*2*16"], total="64",
        trace="EFT6001"))])
    assert _import(settings, first, "first.835").claims() == {"paid": 1}
    reversal = envelope([("835", remit_body(
        ["CLP*TH6001*22*-100*-64*-16*MB*PAYER6001*11*1", "CAS*CO*45*-20", "CAS*PR*2*-16"],
        ["CLP*TH6001*1*100*70*10*MB*PAYER6001B*11*1", "CAS*CO*45*20", "CAS*PR*2*10"], total="6",
        trace="EFT6002"))], control=901)
    result = _import(settings, reversal, "reversal.835")
    assert result.claims() == {"reversed": 1, "paid": 1}
    [reversed_set] = result.sets
    reversal_ref, correction_ref = reversed_set.resources
    assert reversal_ref != correction_ref
    reversed_response = resource(settings, "ClaimResponse", reversal_ref.split("/")[1])
    urls = {e["url"]: e for e in reversed_response.get("extension", [])}
    assert any(e.get("valueBoolean") is True for e in urls.values())
    row = billing_claim(settings, "TH6001")
    assert (row.status, row.paid_cents, row.patient_responsibility_cents) == ("paid", 7000, 1000)
    assert row.claim_response_id == correction_ref.split("/")[1]


def test_a_payment_for_an_unknown_claim_is_kept_as_unmatched_and_the_plb_is_kept(settings: Settings) -> None:
    sent_file(settings, [claim("TH7001", ("97110", "100.00"))], 701)
    raw = envelope([("835", remit_body(
        ["CLP*TH7001*1*100*64*16*MB*P7001*11*1", "CAS*CO*45*20", "CAS*PR*2*16"],
        ["CLP*NOSUCH7002*1*50*32*8*MB*P7002*11*1", "CAS*CO*45*10", "CAS*PR*2*8"], total="91",
        plb=["PLB*1234567893*20261231*WO:TH7001*5"]))])
    result = _import(settings, raw, "mixed.835")
    assert result.claims() == {"paid": 1} and result.unmatched == ["NOSUCH7002"]
    assert billing_claim(settings, "TH7001").status == "paid"
    kept = _translated(settings, result.message_id)
    assert kept["_status"] == "unrouted" and "1 responses for claims the hub does not know" in kept["_error"]
    assert "NOSUCH7002" not in kept["_error"]  # the account number is kept in the payload, not the error
    [remittance] = kept["remittances"]
    assert remittance["unmatched"][0]["patient_control_number"] == "NOSUCH7002"
    assert remittance["unmatched"][0]["paid_cents"] == 3200
    [plb] = remittance["provider_adjustments"]["adjustments"]
    assert plb["reason"] == "WO" and float(plb["amount"]) == 5


def test_the_admin_api_imports_a_file(client: TestClient, settings: Settings) -> None:
    sent_file(settings, [claim("TH9901", ("97110", "100.00"))], 9901)
    raw = envelope([("835", remit_body(["CLP*TH9901*1*100*64*16*MB*P9901*11*1", "CAS*CO*45*20", "CAS*PR*2*16"],
                                       total="64"))])
    answer = client.post("/admin/api/billing/import", content=raw,
                         headers={"Content-Type": "application/edi-x12", "X-Filename": "remit-9901.835"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] and body["name"] == "remit-9901.835" and body["claims"] == {"paid": 1}
    assert body["paid_cents"] == 6400 and body["sets"][0]["resources"][0].startswith("ClaimResponse/")
    again = client.post("/admin/api/billing/import", content=raw, headers={"Content-Type": "application/edi-x12"})
    assert again.json()["duplicate"] is True and again.json()["message_id"] == body["message_id"]
    assert client.post("/admin/api/billing/import", content=b"").status_code == 400
    assert billing_claim(settings, "TH9901").paid_cents == 6400
