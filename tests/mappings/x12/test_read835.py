"""835 remittances as payers write them: Medicare (``*``/``:``/``^``, CRLF) and commercial (``|``/``>``)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from mappings.x12.read835 import ClaimPayment, Remittance, RemittanceFile, read835

DATA = Path(__file__).parent / "data"


def _read(name: str) -> RemittanceFile:
    return read835((DATA / name).read_bytes())


@pytest.fixture(scope="module")
def medicare() -> RemittanceFile:
    return _read("835_medicare.x12")


@pytest.fixture(scope="module")
def commercial() -> RemittanceFile:
    return _read("835_commercial.x12")


def _medicare_text() -> str:
    return (DATA / "835_medicare.x12").read_bytes().decode("latin-1")  # CRLF kept


def _claim(remittance: Remittance, pcn: str, status: str) -> ClaimPayment:
    return next(c for c in remittance.claims if c.patient_control_number == pcn and c.status_code == status)


def test_medicare_payment_header_payer_and_payee(medicare: RemittanceFile) -> None:
    assert medicare.ok, [str(e) for e in medicare.errors]
    first = medicare.remittances[0]
    assert (first.handling_code, first.total_paid, first.credit_debit) == ("I", Decimal("94.10"), "C")
    assert (first.payment_method, first.payment_method_description) == ("ACH", "Automated clearing house (EFT)")
    assert first.payment_date == date(2026, 3, 5)
    assert (first.trace_number, first.trace_payer_id) == ("EFT0001234", "1512345678")
    assert (first.receiver_id, first.production_date) == ("SUNRISEPT", date(2026, 3, 3))
    assert first.payer.name == "MEDICARE JURISDICTION 15" and first.payer_id == "15202"
    assert (first.payer.city, first.payer.state, first.payer.postal_code) == ("NASHVILLE", "TN", "37202")
    assert first.payer.contacts == [("BL", "PROVIDER SERVICES", "8005551212")]
    assert (first.payee.id_qualifier, first.payee.identifier) == ("XX", "1234567893")
    assert ("TJ", "371234567") in first.payee.references
    assert first.headers[0][0] == "1" and first.headers[0][1]["TS301"] == "1234567893"
    assert [r.control_number for r in medicare.remittances] == ["0001", "0002"]


def test_paid_claim_with_contractual_and_coinsurance_adjustments(medicare: RemittanceFile) -> None:
    claim = _claim(medicare.remittances[0], "PCN1001", "1")
    assert claim.status_description == "Processed as primary"
    assert (claim.charge, claim.paid, claim.patient_responsibility) == (
        Decimal("250.00"), Decimal("117.60"), Decimal("30.00"))
    assert (claim.filing_indicator, claim.payer_claim_control_number, claim.facility_type, claim.frequency) == (
        "MB", "26060000101", "11", "1")
    assert claim.patient is not None and claim.patient.identifier == "1EG4TE5MK73"
    assert claim.rendering is not None and claim.rendering.identifier == "1987654325"
    assert claim.dates == {"050": date(2026, 2, 20), "232": date(2026, 2, 10), "233": date(2026, 2, 12)}
    assert claim.amounts["AU"] == Decimal("250.00")
    assert [r.code for r in claim.remarks] == ["MA01"]
    first, second = claim.services
    assert (first.procedure.qualifier, first.procedure.code, first.procedure.modifiers) == ("HC", "97110", ("GP",))
    assert (first.charge, first.paid, first.units, first.allowed) == (
        Decimal("150.00"), Decimal("70.56"), Decimal("2"), Decimal("90.00"))
    assert first.line_control_number == "L1001-1" and first.dates["472"] == date(2026, 2, 10)
    assert [(a.group, a.reason, a.amount) for a in first.adjustments] == [
        ("CO", "45", Decimal("60.00")), ("CO", "253", Decimal("1.44")), ("PR", "2", Decimal("18.00"))]
    assert first.adjustments[0].reason_description == "Charge exceeds the fee schedule or contracted amount"
    assert first.adjustments[2].group_description is not None and "Patient" in first.adjustments[2].group_description
    assert [r.code for r in second.remarks] == ["N130"]
    for line in claim.services:  # to the cent: adjustments + paid = charge, per line
        assert sum(a.amount for a in line.adjustments) + line.paid == line.charge
    assert sum(line.paid for line in claim.services) == claim.paid
    assert sum(a.amount for line in claim.services for a in line.adjustments if a.group == "PR") == Decimal("30.00")


def test_denied_claim_keeps_reason_and_remarks(medicare: RemittanceFile) -> None:
    claim = _claim(medicare.remittances[0], "PCN1002", "4")
    assert claim.is_denied and claim.status_description == "Denied" and claim.paid == Decimal("0")
    assert claim.corrected_patient is not None and claim.corrected_patient.first_name == "RICHARD"
    (line,) = claim.services
    assert [(a.group, a.reason, a.amount) for a in line.adjustments] == [("CO", "50", Decimal("120.00"))]
    assert [(r.code, r.description is not None) for r in line.remarks] == [("N386", True), ("M76", True)]


def test_provider_level_adjustments_and_payment_balance(medicare: RemittanceFile) -> None:
    first = medicare.remittances[0]
    assert [(p.reason, p.reference, p.amount) for p in first.provider_adjustments] == [
        ("WO", "26050000777", Decimal("25.00")), ("L6", None, Decimal("-1.50"))]
    assert first.provider_adjustments[0].fiscal_period_date == date(2026, 12, 31)
    assert first.provider_adjustments[0].description is not None
    paid = sum(c.paid for c in first.claims)
    assert paid - sum(p.amount for p in first.provider_adjustments) == first.total_paid
    assert first.warnings == []


def test_reversal_and_corrected_claim_in_a_second_transaction_set(medicare: RemittanceFile) -> None:
    second = medicare.remittances[1]
    reversal = _claim(second, "PCN1001", "22")
    corrected = _claim(second, "PCN1001", "1")
    assert reversal.is_reversal and reversal.status_description == "Reversal of previous payment"
    assert (reversal.charge, reversal.paid, reversal.patient_responsibility) == (
        Decimal("-250.00"), Decimal("-117.60"), Decimal("-30.00"))
    assert corrected.frequency == "7" and corrected.payer_claim_control_number == "26060000199"
    changed = corrected.services[1]
    assert changed.procedure.code == "97530"
    assert changed.original_procedure is not None and changed.original_procedure.code == "97140"
    assert changed.original_procedure.modifiers == ("GP",)
    assert reversal.paid + corrected.paid == second.total_paid
    assert second.warnings == []


def test_commercial_separators_two_interchanges_and_unknown_codes(commercial: RemittanceFile) -> None:
    assert [r.control_number for r in commercial.remittances] == ["1001", "1002"]
    first = commercial.remittances[0]
    assert first.payment_method == "CHK" and first.trace_number == "CHK778899"
    assert first.payment_date == date(2026, 3, 10)
    assert first.payer_id == "1411111111"  # no REF*2U: TRN03
    claim = _claim(first, "PCN2001", "1")
    assert [(a.group, a.reason, a.amount) for a in claim.services[0].adjustments] == [
        ("PR", "1", Decimal("50.00")), ("PR", "3", Decimal("30.00"))]
    assert claim.insured is not None and claim.insured.identifier == "ACM123456"
    assert ("1K", "ACM555001") in claim.references
    secondary = _claim(first, "PCN2002", "2")
    unknown = secondary.adjustments[1]
    assert (unknown.reason, unknown.reason_description, unknown.amount) == ("ZZ9", None, Decimal("40.00"))
    assert secondary.status_description == "Processed as secondary"
    denied = _claim(first, "PCN2003", "4")
    assert [(a.group, a.reason, a.amount) for a in denied.services[0].adjustments] == [
        ("CO", "197", Decimal("150.00"))]
    assert denied.services[0].adjustments[0].reason_description == (
        "Precertification, authorization or notification absent")
    assert [r.code for r in denied.services[0].remarks] == ["N386"]
    (refund,) = first.provider_adjustments
    assert (refund.reason, refund.reference, refund.amount) == ("72", "REFUND01", Decimal("-20.00"))
    assert first.warnings == []


def test_truncated_claim_and_missing_se_are_errors_while_the_rest_is_read(commercial: RemittanceFile) -> None:
    broken = commercial.remittances[1]
    rules = {(e.rule, e.segment_id, e.position) for e in broken.errors}
    assert ("x12.missing-se", "GE", 51) in rules
    assert ("x12.required", "CLP", 44) in rules
    clp_error = next(e for e in broken.errors if e.segment_id == "CLP")
    assert clp_error.element == 3 and clp_error.transaction == "1002"
    assert "LOE" not in str(clp_error) and "PCN3001" not in str(clp_error)  # no content in messages
    assert [c.patient_control_number for c in broken.claims] == ["PCN3002"]
    assert broken.claims[0].paid == Decimal("55.00") and broken.warnings == []
    assert not commercial.ok
    assert {e.rule for e in commercial.errors} >= {"x12.missing-se", "x12.required"}
    assert len([e for e in commercial.errors if e.rule == "x12.missing-se"]) == 1  # reported once


def test_sums_that_do_not_balance_are_warnings_not_errors() -> None:
    text = _medicare_text().replace("BPR*I*94.10*", "BPR*I*99.10*")
    text = text.replace("SVC*HC:97110:GP*150.00*70.56**2~\r\nDTM*472*20260210~",
                        "SVC*HC:97110:GP*150.00*71.56**2~\r\nDTM*472*20260210~")
    first = read835(text).remittances[0]
    assert first.total_paid == Decimal("99.10") and len(first.claims) == 2
    rules = [(w.rule, w.segment_id) for w in first.warnings]
    assert ("x835.balance-total", "BPR") in rules
    assert ("x835.balance-line", "SVC") in rules
    assert ("x835.balance-claim-lines", "CLP") in rules
    assert first.errors == []


def test_bad_values_name_the_segment_and_keep_the_claim_when_only_a_detail_is_wrong() -> None:
    text = _medicare_text()
    text = text.replace("DTM*050*20260220~", "DTM*050*2026022~").replace("CAS*CO*50*120.00~", "CAS*CO*50*12O.00~")
    first = read835(text).remittances[0]
    assert [(e.rule, e.segment_id, e.element) for e in first.errors] == [
        ("x12.date", "DTM", 2), ("x12.number", "CAS", 3)]
    assert [c.patient_control_number for c in first.claims] == ["PCN1001", "PCN1002"]
    assert "050" not in first.claims[0].dates


def test_other_transaction_sets_are_reported_not_read() -> None:
    text = _medicare_text().replace("ST*835*0002", "ST*277*0002")
    result = read835(text)
    assert [r.control_number for r in result.remittances] == ["0001"]
    assert any(e.rule == "x835.not-835" and e.transaction == "0002" for e in result.errors)


def test_a_file_cut_short_keeps_the_claims_read_before_the_cut() -> None:
    text = _medicare_text()
    text = text[: text.index("CLP*PCN1002")]  # ends inside the first transaction set
    result = read835(text)
    (remittance,) = result.remittances
    assert [c.patient_control_number for c in remittance.claims] == ["PCN1001"]
    assert any(e.rule == "x12.truncated" and e.transaction == "0001" for e in remittance.errors)
    assert len(remittance.claims[0].services) == 2


def test_unknown_claim_status_is_kept_without_description() -> None:
    claim = read835(_medicare_text().replace("CLP*PCN1002*4*", "CLP*PCN1002*99*")).remittances[0].claims[1]
    assert (claim.status_code, claim.status_description, claim.is_denied) == ("99", None, False)


def test_six_reason_triplets_with_quantities_in_one_cas() -> None:
    text = _medicare_text().replace(
        "CAS*CO*50*120.00~", "CAS*CO*50*20.00*1*4*20.00**16*20.00**18*20.00**45*20.00**96*20.00*2~")
    first = read835(text).remittances[0]
    (line,) = first.claims[1].services
    assert [(a.reason, a.amount, a.quantity) for a in line.adjustments] == [
        ("50", Decimal("20.00"), Decimal("1")), ("4", Decimal("20.00"), None), ("16", Decimal("20.00"), None),
        ("18", Decimal("20.00"), None), ("45", Decimal("20.00"), None), ("96", Decimal("20.00"), Decimal("2"))]
    assert first.warnings == [] and first.errors == []
