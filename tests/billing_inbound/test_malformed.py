"""A broken file or transaction set: a clear error (segment, position, rule), the raw file kept,
nothing else lost: the other sets of the same file are applied."""

from __future__ import annotations

import pytest

from hub.billing.imports import MANUAL_SOURCE, ImportResult, import_x12
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync.inbox import Inbox
from hub.unit_of_work import unit_of_work
from tests.billing_inbound.support import TENANT, billing_claim, claim, ensure, envelope, remit_body, sent_file


@pytest.fixture(autouse=True)
def _tenant(settings: Settings) -> None:
    ensure(settings)


def _import(settings: Settings, raw: bytes, name: str) -> ImportResult:
    with unit_of_work(settings) as session:
        return import_x12(session, settings, tenant=TENANT, raw=raw, source=MANUAL_SOURCE, name=name)


def _kept(settings: Settings, result: ImportResult) -> tuple[str, str | None, bytes]:
    with unit_of_work(settings, readonly=True) as session:
        message = repo.message_by_id(session, tenant=TENANT, message_id=result.message_id)
        assert message is not None
        from hub.crypto import decrypt

        raw = decrypt(Inbox(session, tenant=TENANT, settings=settings).box, message.raw_payload)
        assert raw is not None
        return message.status, message.error, raw


def _two_remittances(settings: Settings) -> str:
    sent_file(settings, [claim("TH8001", ("97110", "100.00")), claim("TH8002", ("97110", "100.00"))], 801)
    return envelope([
        ("835", remit_body(["CLP*TH8001*1*100*64*16*MB*P8001*11*1", "CAS*CO*45*20", "CAS*PR*2*16"], total="64",
                           trace="EFT8001")),
        ("835", remit_body(["CLP*TH8002*1*100*64*16*MB*P8002*11*1", "CAS*CO*45*20", "CAS*PR*2*16"], total="64",
                           trace="EFT8002")),
    ]).decode()


@pytest.mark.parametrize(("breakage", "segment", "rule"), [
    ("wrong-count", "SE", "x12.se-count"),
    ("missing-se", "ST", "x12.missing-se"),
])
def test_a_broken_set_is_rejected_and_the_other_set_of_the_file_applied(
        settings: Settings, breakage: str, segment: str, rule: str) -> None:
    text = _two_remittances(settings)
    if breakage == "wrong-count":
        broken, good_pcn, bad_pcn = text.replace("SE*10*0002~", "SE*12*0002~"), "TH8001", "TH8002"
    else:
        broken, good_pcn, bad_pcn = text.replace("SE*10*0001~", ""), "TH8002", "TH8001"
    assert broken != text
    result = _import(settings, broken.encode(), f"{breakage}.835")
    assert not result.ok and result.claims() == {"paid": 1}
    assert billing_claim(settings, good_pcn).status == "paid"
    assert billing_claim(settings, bad_pcn).status == "submitted"
    errors = [e for s in result.sets for e in s.errors]
    assert any(e.startswith(f"{segment} (segment ") and f"[{rule}]" in e for e in errors), errors
    status, error, raw = _kept(settings, result)
    assert raw == broken.encode() and status == "unrouted"
    assert error and "1 transaction sets with errors" in error and rule in error
    assert "Jones" not in error and "TH800" not in error


def test_a_truncated_file_applies_what_is_complete(settings: Settings) -> None:
    text = _two_remittances(settings)
    cut = text[: text.index("CLP*TH8002") + 12]
    result = _import(settings, cut.encode(), "truncated.835")
    assert billing_claim(settings, "TH8001").status == "paid"
    assert billing_claim(settings, "TH8002").status == "submitted"
    errors = [e for s in result.sets for e in s.errors]
    assert any("[x12.truncated]" in e and "segment" in e for e in errors), errors
    assert _kept(settings, result)[2] == cut.encode()


@pytest.mark.parametrize("raw", [b"hello, this is not X12", b"ISA*00*too short~",
                                 b"ISA|00|          |00|          |ZZ|CLEARHOUSE01   *ZZ*RRB000123~"])
def test_a_file_that_is_not_x12_is_kept_rejected_with_the_reason(settings: Settings, raw: bytes) -> None:
    result = _import(settings, raw, "garbage.x12")
    assert not result.readable and not result.ok and result.error
    assert "ISA (segment 1" in result.error and "[x12." in result.error
    status, error, kept = _kept(settings, result)
    assert status == "rejected" and kept == raw and error and "[x12." in error
    again = _import(settings, raw, "garbage.x12")
    assert again.duplicate and not again.readable and again.message_id == result.message_id


def test_a_set_the_hub_does_not_read_is_named(settings: Settings) -> None:
    raw = envelope([("850", ["BEG*00*SA*1**20260310"])], functional="PO", version="004010")
    result = _import(settings, raw, "order.x12")
    [outcome] = result.sets
    assert not outcome.applied and "[billing.import.unsupported]" in outcome.errors[0]
    assert _kept(settings, result)[0] == "rejected"
