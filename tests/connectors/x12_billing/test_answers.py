"""What the sandbox clearinghouse answers: 999 (accepted or IK3/IK4), 277CA per claim, 835 to the cent."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from connectors.x12_billing import X12BillingConnector
from mappings.x12.reader import Segment, TransactionSet, read_interchanges
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.connectors.x12_billing.claims import ClaimSpec, LineSpec, claim_file

Connect = Callable[..., X12BillingConnector]


def _answers(connector: X12BillingConnector, content: bytes, key: str) -> dict[str, list[TransactionSet]]:
    connector.submit("claims.837", content, key)
    out: dict[str, list[TransactionSet]] = {}
    for remote in connector.poll_responses():
        read = read_interchanges(remote.content)
        assert read.errors == [], (remote.name, [str(e) for e in read.errors])
        out[remote.name.rsplit(".", 1)[1]] = list(read.transactions)
    return out


def _d(seg: Segment, index: int) -> Decimal:
    return Decimal(seg.get(index) or "0")


def _claims(remit: TransactionSet) -> dict[str, list[Segment]]:
    """CLP01 -> the segments of that claim payment (CLP up to the next LX/CLP)."""
    out: dict[str, list[Segment]] = {}
    current: list[Segment] | None = None
    for seg in remit.body:
        if seg.id == "CLP":
            current = out.setdefault(seg.get(1), [seg])
        elif seg.id in ("LX",):
            current = None
        elif current is not None:
            current.append(seg)
    return out


def test_835_pays_to_the_cent_and_adds_up(house: SandboxClearinghouse, connect: Connect) -> None:
    claims = [ClaimSpec("PCN1", [LineSpec("97110", "150", control="L1"),
                                 LineSpec("97140", "97.33", units="2", control="L2"),
                                 LineSpec("97750", "100", control="L3")]),
              ClaimSpec("PCN2", [LineSpec("97530", "80.05", control="L4")], member_id="MEM0002")]
    answers = _answers(connect("sftp"), claim_file(claims), "remit-1")
    [remit] = answers["835"]
    bpr = remit.body[0]
    assert bpr.id == "BPR" and bpr.get(1) == "I" and bpr.get(4) == "ACH"
    trn = next(s for s in remit.body if s.id == "TRN")
    assert trn.get(1) == "1" and trn.get(2)  # the EFT trace number
    payments = _claims(remit)
    assert set(payments) == {"PCN1", "PCN2"}  # patient control number = CLM01

    expected = {  # code: (charge, allowed, coinsurance, paid)
        "97110": ("150", "120", "24", "96"), "97140": ("97.33", "77.86", "15.57", "62.29"),
        "97750": ("100", "0", "0", "0"), "97530": ("80.05", "64.04", "12.81", "51.23")}
    total_paid = Decimal(0)
    for segments in payments.values():
        clp = segments[0]
        assert clp.get(2) == "1"  # processed as primary
        services = [s for s in segments if s.id == "SVC"]
        assert _d(clp, 4) == sum(_d(s, 3) for s in services)  # CLP04 = sum of the paid lines
        cas = [s for s in segments if s.id == "CAS"]
        assert _d(clp, 5) == sum(_d(s, 3) for s in cas if s.get(1) == "PR")  # patient responsibility
        assert _d(clp, 3) - sum(_d(s, 3) for s in cas) == _d(clp, 4)  # charge - adjustments = paid
        total_paid += _d(clp, 4)
        for i, seg in enumerate(segments):
            if seg.id != "SVC":
                continue
            code = seg.components(1)[1]
            charge, allowed, coinsurance, paid = (Decimal(v) for v in expected[code])
            line = segments[i + 1: next((j for j in range(i + 1, len(segments)) if segments[j].id == "SVC"),
                                        len(segments))]
            assert (_d(seg, 2), _d(seg, 3)) == (charge, paid)
            adjustments = {(s.get(1), s.get(2)): _d(s, 3) for s in line if s.id == "CAS"}
            if code == "97750":
                assert adjustments == {("CO", "50"): charge}
                assert any(s.id == "LQ" and s.elements[1:] == ("HE", "N386") for s in line)
            else:
                assert adjustments == {("CO", "45"): charge - allowed, ("PR", "2"): coinsurance}
                assert next(_d(s, 2) for s in line if s.id == "AMT" and s.get(1) == "B6") == allowed
    assert _d(bpr, 2) == total_paid == Decimal("209.52")  # BPR02 = sum of CLP04
    refs = [s.get(2) for s in remit.body if s.id == "REF" and s.get(1) == "6R"]
    assert refs == ["L1", "L2", "L3", "L4"]  # the line control numbers echoed


def test_277ca_rejects_by_rule_and_the_835_pays_only_the_accepted(house: SandboxClearinghouse,
                                                                 connect: Connect) -> None:
    house.configure(known_payers=["60054"])
    claims = [ClaimSpec("PCN1", [LineSpec("97110", "100")]), ClaimSpec("REJ-2", [LineSpec("97110", "50")]),
              ClaimSpec("PCN3", [LineSpec("97110", "70")], payer_id="99999")]
    answers = _answers(connect("https"), claim_file(claims), "rules-1")
    [status] = answers["277"]
    by_claim: dict[str, tuple[str, ...]] = {}
    pcn = None
    for seg in status.body:
        if seg.id == "TRN" and seg.get(1) == "2":
            pcn = seg.get(2)
        elif seg.id == "STC" and pcn in ("PCN1", "REJ-2", "PCN3"):
            by_claim[pcn] = seg.components(1)
    assert by_claim == {"PCN1": ("A2", "20"), "REJ-2": ("A3", "21"), "PCN3": ("A3", "116")}
    quantities = {s.get(1): s.get(2) for s in status.body if s.id == "QTY"}
    assert quantities == {"90": "1", "AA": "2"}
    [remit] = answers["835"]
    assert list(_claims(remit)) == ["PCN1"] and _d(remit.body[0], 2) == Decimal("64")


def test_a_broken_837_is_rejected_in_the_999_with_ik3_ik4(house: SandboxClearinghouse, connect: Connect) -> None:
    content = claim_file([ClaimSpec("PCN1", [LineSpec("97110", "100")])], charge_override={"PCN1": "12X"})
    answers = _answers(connect("sftp"), content, "broken-1")
    assert set(answers) == {"999"}  # a rejected set gets no 277CA, no 835
    [ack] = answers["999"]
    body = [s.elements for s in ack.body]
    claim_position = next(s.position for s in read_interchanges(content).transactions.__next__().segments
                          if s.id == "CLM") - 2  # ISA and GS come before ST
    assert ("IK3", "CLM", str(claim_position), "2300", "8") in body
    assert ("IK4", "2", "", "6") in body
    assert ("IK5", "R", "5") in body and ("AK9", "R", "1", "1", "0") in body


def test_a_wrong_segment_count_is_ik5_4(house: SandboxClearinghouse, connect: Connect) -> None:
    content = claim_file([ClaimSpec("PCN1", [LineSpec("97110", "100")])]).replace(b"~SE*", b"~SE*9", 1)
    answers = _answers(connect("sftp"), content, "count-1")
    [ack] = answers["999"]
    assert ("IK5", "R", "4") in [s.elements for s in ack.body]


def test_all_lines_denied_and_checks(house: SandboxClearinghouse, connect: Connect) -> None:
    house.configure(payment_method="CHK")
    denied = _answers(connect("sftp"), claim_file([ClaimSpec("PCN1", [LineSpec("97750", "100")])]), "deny-1")
    [remit] = denied["835"]
    clp = next(s for s in remit.body if s.id == "CLP")
    assert clp.get(2) == "4" and _d(clp, 4) == 0
    assert remit.body[0].elements[:5] == ("BPR", "H", "0", "C", "NON")
    paid = _answers(connect("sftp"), claim_file([ClaimSpec("PCN2", [LineSpec("97110", "10.01")])], control=102),
                    "chk-1")
    [remit] = paid["835"]
    assert remit.body[0].elements[:5] == ("BPR", "C", "6.41", "C", "CHK")  # 8.01 allowed, 1.60 coinsurance
