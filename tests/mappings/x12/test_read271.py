"""271 eligibility responses: benefits of a therapy plan, and rejections (AAA) at each level."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from mappings.x12.read271 import Benefit, EligibilityFile, EligibilityResult, read271

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def eligibility() -> EligibilityFile:
    return read271((DATA / "271_benefits.x12").read_bytes())


def _benefits(result: EligibilityResult, code: str, service_type: str) -> list[Benefit]:
    return [b for b in result.benefits if b.info_code == code and service_type in b.service_types]


def test_one_result_per_answer_with_source_receiver_and_subscriber(eligibility: EligibilityFile) -> None:
    assert [r.control_number for r in eligibility.results] == ["0001", "0002", "0003"]
    first = eligibility.results[0]
    assert first.reference == "ELIG270A1" and first.trace_numbers == [("2", "93175-012547")]
    assert first.source is not None and (first.source.name, first.source.identifier) == ("ACME HEALTH PLAN", "ACME01")
    assert first.source.contacts == [("IC", "", "8885550000")]
    assert first.receiver is not None and first.receiver.identifier == "1234567893"
    assert first.subscriber is not None and first.patient is first.subscriber
    assert (first.subscriber.member_id, first.subscriber.birth_date, first.subscriber.gender) == (
        "ACM123456", date(1960, 1, 15), "M")
    assert first.subscriber.dates["291"] == (date(2026, 1, 1), date(2026, 12, 31))
    assert first.rejections == []


def test_therapy_benefits_visits_copay_coinsurance_deductible(eligibility: EligibilityFile) -> None:
    first = eligibility.results[0]
    (active,) = _benefits(first, "1", "PT")
    assert active.service_types == ("30", "PT", "AD") and active.info_description == "Active coverage"
    assert (active.insurance_type, active.plan_description) == ("PR", "ACME GOLD PPO")
    allowed, remaining = _benefits(first, "F", "PT")
    assert (allowed.time_period, allowed.quantity_qualifier, allowed.quantity) == ("23", "VS", Decimal("20"))
    assert allowed.time_period_description == "Calendar year"
    assert allowed.authorization_required is True and allowed.in_network == "Y"
    assert allowed.delivery == [{"HSD01": "VS", "HSD02": "20", "HSD05": "22"}]
    assert allowed.messages == ["PHYSICAL AND OCCUPATIONAL THERAPY COMBINED VISIT LIMIT"]
    assert (remaining.time_period, remaining.quantity) == ("29", Decimal("14"))
    assert remaining.authorization_required is None
    (copay,) = _benefits(first, "B", "PT")
    assert (copay.amount, copay.time_period) == (Decimal("25.00"), "27")
    in_network, out_network = _benefits(first, "A", "PT")
    assert (in_network.percent, in_network.in_network) == (Decimal("0.20"), "Y")
    assert (out_network.percent, out_network.in_network) == (Decimal("0.40"), "N")
    deductible, deductible_left = _benefits(first, "C", "30")
    assert (deductible.amount, deductible_left.amount, deductible_left.time_period) == (
        Decimal("500.00"), Decimal("350.00"), "29")
    (oop,) = _benefits(first, "G", "30")
    assert oop.inquiries == [("ZZ", "11")] and oop.dates["348"] == (date(2026, 1, 1), None)
    assert [(e.entity, e.name, e.identifier) for e in oop.related_entities] == [("P3", "JONES", "1234567890")]
    assert _benefits(first, "6", "AF")[0].info_description == "Inactive"
    (cap,) = _benefits(first, "F", "AE")
    assert cap.amount == Decimal("2410.00") and cap.in_network == "W"


def test_a_benefit_that_cannot_be_read_is_an_error_naming_it_and_the_rest_is_kept(eligibility: EligibilityFile) -> None:
    first = eligibility.results[0]
    (error,) = first.errors
    assert (error.rule, error.segment_id, error.element, error.transaction) == ("x12.number", "EB", 7, "0001")
    assert error.position == 35
    assert not _benefits(first, "B", "98")
    assert len(first.benefits) == 11
    assert [e.rule for e in eligibility.errors] == ["x12.number"]


def test_rejections_at_subscriber_and_source_level_with_descriptions(eligibility: EligibilityFile) -> None:
    rejected = eligibility.results[1]
    assert rejected.subscriber is not None and rejected.subscriber.member_id == "ACM000000"
    assert [(r.loop, r.reason, r.follow_up, r.valid_request) for r in rejected.rejections] == [
        ("2100C", "72", "C", True), ("2100C", "73", "C", True)]
    assert rejected.rejections[0].description == "Invalid or missing member (subscriber) id"
    assert rejected.rejections[0].follow_up_description == "Please correct and resubmit"
    assert rejected.benefits == []
    busy = eligibility.results[2]
    assert busy.subscriber is None
    assert [(r.loop, r.reason, r.description) for r in busy.rejections] == [
        ("2100A", "42", "Unable to respond at this time")]


def test_dependent_loop_and_unknown_codes_are_kept() -> None:
    text = (DATA / "271_benefits.x12").read_bytes().decode("latin-1")
    text = text.replace("HL*3*2*22*0~\nTRN*2*93175-012548", "HL*3*2*22*1~\nNM1*IL*1*DOE*JANE****MI*ACM777~\n"
                        "HL*4*3*23*0~\nTRN*2*93175-012548").replace("SE*12*0002", "SE*14*0002")
    text = text.replace("AAA*Y**73*C", "AAA*N**Q9*Z")
    result = read271(text)
    assert [e.rule for e in result.errors] == ["x12.number"]
    assert len(result.results) == 3  # the subscriber without benefits is not an answer of its own
    rejected = result.results[1]
    assert rejected.subscriber is not None and rejected.subscriber.member_id == "ACM777"
    assert rejected.dependent is not None and rejected.patient is rejected.dependent
    assert [(r.loop, r.reason) for r in rejected.rejections] == [("2100D", "72"), ("2100D", "Q9")]
    unknown = rejected.rejections[1]
    assert (unknown.description, unknown.follow_up_description, unknown.valid_request) == (None, None, False)
