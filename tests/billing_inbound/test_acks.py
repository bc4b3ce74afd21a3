"""999, TA1 and 277CA from the sandbox clearinghouse move the claims the hub sent."""

from __future__ import annotations

from connectors.x12_billing import X12BillingConnector
from hub.billing.imports import MANUAL_SOURCE, import_x12
from hub.settings import Settings
from hub.unit_of_work import unit_of_work
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing_inbound.support import TENANT, billing_claim, claim, envelope, sent_file


def _import(settings: Settings, raw: bytes, name: str, connector_id: int | None = None):  # type: ignore[no-untyped-def]
    with unit_of_work(settings) as session:
        return import_x12(session, settings, tenant=TENANT, raw=raw, source=MANUAL_SOURCE, name=name,
                          connector_id=connector_id)


def test_a_999_accepting_the_file_accepts_its_claims(settings: Settings, house: SandboxClearinghouse,
                                                     uploader: X12BillingConnector, connector_id: int) -> None:
    sent = sent_file(settings, [claim("TH1001", ("97110", "100.00")), claim("TH1002", ("97140", "60.00"))], 101,
                     connector_id=connector_id)
    uploader.submit("claims.x12", sent.file, "file-101")
    names = house.wait_for_responses(3)
    ack = next(n for n in names if n.endswith(".999"))
    result = _import(settings, house.response(ack), ack, connector_id)
    assert result.ok and result.claims() == {"accepted": 2}
    assert [s.kind for s in result.sets] == ["999"]
    for pcn in ("TH1001", "TH1002"):
        row = billing_claim(settings, pcn)
        assert row.status == "accepted" and row.status_detail and row.status_detail.startswith("999 A")


def test_a_999_rejecting_one_file_rejects_its_claims_with_the_ik3_reason(
        settings: Settings, house: SandboxClearinghouse, uploader: X12BillingConnector, connector_id: int) -> None:
    good = sent_file(settings, [claim("TH2001", ("97110", "100.00"))], 201, connector_id=connector_id)
    bad = sent_file(settings, [claim("TH2002", ("97110", "90.00")), claim("TH2003", ("97140", "40.00"))], 202,
                    connector_id=connector_id)
    line = b"SV1*HC:97140:GP*40*UN*1***1~DTP*472*D8*20260302~"
    assert bad.file.count(line) == 1
    broken = bad.file.replace(line, line.replace(b"20260302", b"20261302"))  # the date of TH2003's line
    uploader.submit("good.x12", good.file, "file-201")
    uploader.submit("bad.x12", broken, "file-202")
    names = house.wait_for_responses(5)
    for name in sorted(n for n in names if n.endswith(".999")):
        assert _import(settings, house.response(name), name, connector_id).ok
    assert billing_claim(settings, "TH2001").status == "accepted"
    rejected = [billing_claim(settings, pcn) for pcn in ("TH2002", "TH2003")]
    assert {row.status for row in rejected} == {"rejected"}
    detail = billing_claim(settings, "TH2003").status_detail or ""
    assert detail.startswith("999 R") and "IK304 8" in detail and "DTP03 IK403 8" in detail
    assert "20261302" not in detail  # the copied bad value (IK404) is never kept
    other = billing_claim(settings, "TH2002").status_detail or ""
    assert other.startswith("999 R: transaction set rejected") and "DTP" not in other


def test_277ca_acknowledges_or_rejects_each_claim(settings: Settings, house: SandboxClearinghouse,
                                                  uploader: X12BillingConnector, connector_id: int) -> None:
    sent = sent_file(settings, [claim("TH3001", ("97110", "100.00")), claim("REJ3002", ("97110", "80.00"))], 301,
                     connector_id=connector_id)
    uploader.submit("claims.x12", sent.file, "file-301")
    names = house.wait_for_responses(3)
    status = next(n for n in names if n.endswith(".277"))
    result = _import(settings, house.response(status), status, connector_id)
    assert result.ok and result.claims() == {"acknowledged": 1, "payer_rejected": 1}
    good, bad = billing_claim(settings, "TH3001"), billing_claim(settings, "REJ3002")
    assert good.status == "acknowledged" and good.payer_claim_number and good.acknowledged_at is not None
    assert bad.status == "payer_rejected"
    assert bad.status_detail and "A3:21" in bad.status_detail and "277CA rejected" in bad.status_detail


TA1_REJECT = ("ISA*00*          *00*          *ZZ*CLEARHOUSE01   *ZZ*RRB000123      *260310*0930*^*00501*"
              "000000900*0*T*:~TA1*000000401*260310*0930*R*022~IEA*0*000000900~")


def test_a_ta1_rejecting_the_interchange_rejects_its_claims(settings: Settings) -> None:
    sent_file(settings, [claim("TH4001", ("97110", "100.00"))], 401)
    result = _import(settings, TA1_REJECT.encode(), "reject.ta1")
    assert result.claims() == {"rejected": 1}
    row = billing_claim(settings, "TH4001")
    assert row.status == "rejected" and row.status_detail and row.status_detail.startswith("TA1 R: TA105 022")


def _ack(group: int, st02: str) -> bytes:
    return envelope([("999", [f"AK1*HC*{group}*005010X222A1", f"AK2*837*{st02}*005010X222A1", "IK5*A",
                              "AK9*A*1*1*1"])], functional="FA", version="005010X231A1", control=950 + group % 10)


def test_a_999_of_another_group_leaves_the_claims_of_a_file_alone(settings: Settings) -> None:
    sent_file(settings, [claim("TH4101", ("97110", "100.00"))], 1201, group=77, record_file=True)
    other = _import(settings, _ack(78, "1201"), "other.999")
    assert other.claims() == {} and "another group (GS06)" in other.sets[0].warnings[0]
    assert billing_claim(settings, "TH4101").status == "submitted"
    assert _import(settings, _ack(77, "1201"), "ours.999").claims() == {"accepted": 1}
    assert billing_claim(settings, "TH4101").status == "accepted"


def test_a_999_after_the_277ca_leaves_the_acknowledged_claims_as_they_are(
        settings: Settings, house: SandboxClearinghouse, uploader: X12BillingConnector, connector_id: int) -> None:
    sent = sent_file(settings, [claim("TH4101", ("97110", "100.00"))], 411, connector_id=connector_id)
    uploader.submit("late.x12", sent.file, "file-411")
    names = house.wait_for_responses(3)
    status = next(n for n in names if n.endswith(".277"))
    assert _import(settings, house.response(status), status, connector_id).claims() == {"acknowledged": 1}
    ack = next(n for n in names if n.endswith(".999"))
    late = _import(settings, house.response(ack), ack, connector_id)
    assert late.ok and late.claims() == {}
    [warning] = late.sets[0].warnings
    assert "already past the 999" in warning and "no claim file" not in warning
    assert billing_claim(settings, "TH4101").status == "acknowledged"
