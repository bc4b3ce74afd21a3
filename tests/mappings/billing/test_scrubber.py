"""The claim scrubber: a clean week bills with no finding; each rule caught on one broken example."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from mappings.billing.claims import professional_claim
from mappings.billing.model import Finding, PayerRules, ProfessionalClaim, ScrubContext
from mappings.billing.scrubber import blocking, scrub
from tests.mappings.billing.visits_support import (
    claim_for,
    context_for,
    over_kx_threshold,
    plan_on_file,
    resources_of,
    week,
)


def flat(discipline: str = "PT", **kwargs: Any) -> ProfessionalClaim:
    w = week()
    return professional_claim(claim_for(w, discipline, **kwargs), resources_of(w))  # type: ignore[arg-type]


def with_line(claim: ProfessionalClaim, number: int, **changes: Any) -> ProfessionalClaim:
    lines = tuple(x.model_copy(update=changes) if x.line_number == number else x for x in claim.lines)
    return claim.model_copy(update={"lines": lines})


def rules_of(findings: list[Finding]) -> set[tuple[str, str, int | None]]:
    return {(f.rule, f.severity, f.line) for f in findings}


def only(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


@pytest.mark.parametrize("discipline", ["PT", "OT", "SLP"])
def test_clean_week_claims_have_no_finding(discipline: str) -> None:
    assert scrub(flat(discipline), context_for(discipline)) == []  # type: ignore[arg-type]


def test_units_cms_8_minute_rule_names_the_expected_units() -> None:
    claim = with_line(flat(), 3, units=Decimal(3))  # 97110 33 min + 97140 7 min: 2 + 1, not 3 + 1
    findings = scrub(claim, context_for("PT"))
    assert rules_of(findings) == {("units.cms-8-minute", "error", 3)}
    assert "gives 2" in findings[0].message and "40 timed minutes" in findings[0].message
    assert "bill 2 units of 97110" in findings[0].fix
    assert blocking(findings)


def test_units_per_code_rule_disagrees_with_units_counted_by_the_cms_rule() -> None:
    context = ScrubContext(rules=PayerRules(units_rule="per-code"), plans=(plan_on_file("PT"),))
    findings = scrub(flat(), context)
    assert rules_of(findings) == {("units.per-code", "error", 4), ("units.per-code", "error", 6)}
    assert "gives 0" in only(findings, "units.per-code")[0].message  # 97140, 7 minutes alone
    assert scrub(flat(units_rule="per-code"), context) == []


def test_units_untimed_code_billed_as_more_than_one() -> None:
    findings = scrub(with_line(flat(), 1, units=Decimal(2)), context_for("PT"))
    assert rules_of(findings) == {("units.untimed", "error", 1)}


def test_modifier_discipline_missing() -> None:
    findings = scrub(with_line(flat(), 2, modifiers=()), context_for("PT"))
    assert rules_of(findings) == {("modifier.discipline", "error", 2)}
    assert findings[0].fix == "add GP"


def test_modifier_discipline_against_the_plan_of_care() -> None:
    findings = scrub(with_line(flat(), 2, modifiers=("GO",)), context_for("PT"))
    assert ("modifier.discipline", "error", 2) in rules_of(findings)
    assert "plan of care is PT" in only(findings, "modifier.discipline")[0].message


def test_modifier_discipline_against_the_evaluation_code() -> None:
    findings = scrub(with_line(flat(), 1, code="97166"), context_for("PT"))  # OT evaluation with GP
    assert rules_of(findings) == {("modifier.discipline", "error", 1)}
    assert "OT evaluation code" in findings[0].message


def test_modifier_discipline_twice() -> None:
    findings = scrub(with_line(flat(), 2, modifiers=("GP", "GN")), context_for("PT"))
    assert "more than one discipline modifier" in only(findings, "modifier.discipline")[0].message


def test_modifier_assistant_cq_missing_on_a_pta_line() -> None:
    findings = scrub(with_line(flat(), 5, modifiers=("GP",)), context_for("PT"))
    assert rules_of(findings) == {("modifier.assistant", "error", 5)}
    assert "add CQ" in findings[0].fix


def test_modifier_assistant_co_missing_on_a_cota_line() -> None:
    findings = scrub(with_line(flat("OT"), 3, modifiers=("GO",)), context_for("OT"))
    assert rules_of(findings) == {("modifier.assistant", "error", 3)}
    assert "add CO" in findings[0].fix


def test_modifier_assistant_wrong_one_or_without_an_assistant() -> None:
    findings = scrub(with_line(flat(), 5, modifiers=("GP", "CO")), context_for("PT"))
    assert {(f.severity, f.line) for f in only(findings, "modifier.assistant")} == {("error", 5)}
    findings = scrub(with_line(flat(), 2, modifiers=("GP", "CQ")), context_for("PT"))
    assert rules_of(findings) == {("modifier.assistant", "warning", 2)}
    assert not blocking(findings)


def test_modifier_kx_missing_once_the_year_passes_the_threshold() -> None:
    findings = scrub(flat(), over_kx_threshold())
    # $2,100 + 180 + 90 = 2,370 within $2,410; the Thursday 97110 line (3) brings it to 2,460
    assert rules_of(findings) == {("modifier.kx", "error", n) for n in range(3, 9)}
    assert "2460.00" in findings[0].message and "2410.00" in findings[0].message


def test_modifier_kx_unneeded_below_the_threshold_is_a_warning() -> None:
    findings = scrub(flat(kx=True), over_kx_threshold())
    assert rules_of(findings) == {("modifier.kx-unneeded", "warning", 1), ("modifier.kx-unneeded", "warning", 2)}
    assert not blocking(findings)


def test_modifier_kx_counts_pt_and_slp_together_and_ot_alone() -> None:
    ytd = (("PT/SLP", Decimal("2400.00")), ("OT", Decimal("100.00")))
    assert {f.rule for f in scrub(flat("SLP"), context_for("SLP", year_to_date=ytd))} == {"modifier.kx"}
    assert scrub(flat("OT"), context_for("OT", year_to_date=ytd)) == []
    separate = ScrubContext(
        rules=PayerRules(kx_combined_pt_slp=False),
        plans=(plan_on_file("SLP"),),
        year_to_date=(("PT", Decimal("2400.00")),),
    )
    assert scrub(flat("SLP"), separate) == []
    assert (
        scrub(
            flat(),
            ScrubContext(
                rules=PayerRules(kx_thresholds=()),
                plans=(plan_on_file("PT"),),
                year_to_date=(("PT/SLP", Decimal("9999")),),
            ),
        )
        == []
    )


def test_modifier_kx_threshold_of_a_year_not_listed_is_the_latest_earlier_one() -> None:
    rules = PayerRules(kx_thresholds=((2020, Decimal("100.00")),))
    findings = scrub(flat(), ScrubContext(rules=rules, plans=(plan_on_file("PT"),)))
    assert {f.line for f in only(findings, "modifier.kx")} == set(range(1, 9))


def test_modifier_count_more_than_four() -> None:
    findings = scrub(with_line(flat(), 2, modifiers=("GP", "59", "KX", "XU", "76")), context_for("PT"))
    assert ("modifier.count", "error", 2) in rules_of(findings)


def test_plan_missing_for_the_dates_of_service_but_not_for_the_evaluation() -> None:
    findings = scrub(flat(), ScrubContext())
    assert rules_of(findings) == {("plan.missing", "error", n) for n in range(2, 9)}
    late = context_for()
    late = late.model_copy(update={"plans": (plan_on_file("PT", start=date(2025, 3, 14)),)})
    assert {f.line for f in scrub(flat(), late)} == {2, 3, 4}
    assert scrub(flat(), ScrubContext(rules=PayerRules(requires_plan_of_care=False))) == []
    assert only(scrub(flat(), context_for("OT")), "plan.missing")  # a plan of another discipline


def test_plan_not_certified_is_a_warning() -> None:
    findings = scrub(flat(), ScrubContext(plans=(plan_on_file("PT", certified=False),)))
    assert rules_of(findings) == {("plan.not-certified", "warning", n) for n in range(2, 9)}
    assert not blocking(findings)


def test_npi_check_digit_of_billing_rendering_and_referring() -> None:
    claim = flat()
    for role in ("billing_provider", "rendering_provider", "referring_provider"):
        party = getattr(claim, role)
        bad = party.npi[:-1] + str((int(party.npi[-1]) + 1) % 10)
        findings = scrub(claim.model_copy(update={role: party.model_copy(update={"npi": bad})}), context_for("PT"))
        assert rules_of(findings) == {("npi.check-digit", "error", None)}
        assert role.split("_")[0] in findings[0].message and bad not in findings[0].message


def test_npi_missing_on_the_rendering_provider() -> None:
    claim = flat()
    assert claim.rendering_provider is not None
    broken = claim.model_copy(update={"rendering_provider": claim.rendering_provider.model_copy(update={"npi": None})})
    assert rules_of(scrub(broken, context_for("PT"))) == {("npi.missing", "error", None)}


@pytest.mark.parametrize("tax_id", [None, "12-3456789", "12345678"])
def test_ein_format(tax_id: str | None) -> None:
    claim = flat()
    broken = claim.model_copy(update={"billing_provider": claim.billing_provider.model_copy(update={"tax_id": tax_id})})
    assert rules_of(scrub(broken, context_for("PT"))) == {("ein.format", "error", None)}


@pytest.mark.parametrize("code", ["M54.50", "m5450", "5450", "M5", "MM450", "M545000X"])
def test_icd10_format(code: str) -> None:
    claim = flat().model_copy(update={"diagnoses": (code, "M6281")})
    assert rules_of(scrub(claim, context_for("PT"))) == {("icd10.format", "error", None)}


def test_icd10_format_accepts_codes_of_three_to_seven_characters() -> None:
    for code in ("R69", "M545", "S52501D", "M62810"):
        assert scrub(flat().model_copy(update={"diagnoses": (code, "M6281")}), context_for("PT")) == []


def test_diagnosis_missing() -> None:
    claim = flat().model_copy(update={"diagnoses": ()})
    assert ("diagnosis.missing", "error", None) in rules_of(scrub(claim, context_for("PT")))


def test_diagnosis_too_many() -> None:
    claim = flat().model_copy(update={"diagnoses": tuple(f"M62{n:02d}" for n in range(13))})
    assert rules_of(scrub(claim, context_for("PT"))) == {("diagnosis.too-many", "error", None)}


@pytest.mark.parametrize("pointers", [(3,), (0,), (), (1, 2, 1, 2, 1)])
def test_diagnosis_pointer(pointers: tuple[int, ...]) -> None:
    findings = scrub(with_line(flat(), 2, diagnosis_pointers=pointers), context_for("PT"))
    assert rules_of(findings) == {("diagnosis.pointer", "error", 2)}


def test_ncci_pair_on_one_day_needs_a_distinct_modifier() -> None:
    claim = flat()
    thursday = claim.lines[3]  # 97140 on 2025-03-13
    extra = thursday.model_copy(update={"line_number": 9, "control_number": "X9", "code": "97530", "minutes": None})
    paired = claim.model_copy(update={"lines": (*claim.lines, extra)})
    findings = scrub(paired, context_for("PT"))
    # listed both ways and neither line has a distinct modifier: both are flagged
    assert rules_of(findings) == {("ncci.pair", "error", 4), ("ncci.pair", "error", 9)}
    assert "97530 with 97140 on 2025-03-13" in only(findings, "ncci.pair")[-1].message
    with_59 = with_line(paired, 9, modifiers=("GP", "59"))
    assert not only(scrub(with_59, context_for("PT")), "ncci.pair")
    # listed both ways: the distinct modifier on either line answers it; one way only: on column 2
    on_first = with_line(paired, 4, modifiers=("GP", "XU"))
    assert not only(scrub(on_first, context_for("PT")), "ncci.pair")
    one_way = ScrubContext(rules=PayerRules(ncci_pairs=(("97140", "97530"),)), plans=(plan_on_file("PT"),))
    assert {f.line for f in only(scrub(on_first, one_way), "ncci.pair")} == {9}
    other_day = with_line(paired, 9, service_date=date(2025, 3, 14))
    assert not only(scrub(other_day, context_for("PT")), "ncci.pair")


def test_mue_units_per_day() -> None:
    context = ScrubContext(rules=PayerRules(mue=(("97110", 1),)), plans=(plan_on_file("PT"),))
    findings = scrub(flat(), context)
    assert rules_of(findings) == {("mue.units", "error", 2), ("mue.units", "error", 3), ("mue.units", "error", 5)}


def test_claim_total_must_be_positive() -> None:
    claim = flat()
    free = claim.model_copy(
        update={"lines": tuple(x.model_copy(update={"charge": Decimal("0.00")}) for x in claim.lines)}
    )
    assert rules_of(scrub(free, context_for("PT"))) == {("claim.total", "error", None)}


def test_claim_lines_max_fifty() -> None:
    base = flat().lines[1]
    lines = tuple(
        base.model_copy(
            update={"line_number": n, "control_number": f"L{n}", "service_date": date(2025, 3, 10) + timedelta(days=n)}
        )
        for n in range(1, 52)
    )
    claim = flat().model_copy(update={"lines": lines})
    rules = PayerRules(requires_plan_of_care=False, kx_thresholds=())
    assert rules_of(scrub(claim, ScrubContext(rules=rules))) == {("claim.lines-max", "error", None)}


@pytest.mark.parametrize("number", ["A" * 21, "W11 PT", "W11*PT"])
def test_claim_control_number_at_most_twenty_letters_digits_or_dashes(number: str) -> None:
    claim = flat().model_copy(update={"patient_control_number": number})
    assert rules_of(scrub(claim, context_for("PT"))) == {("claim.control-number", "error", None)}


def test_findings_come_claim_first_then_by_line_errors_before_warnings() -> None:
    claim = with_line(flat(), 2, modifiers=("GP", "CQ"), units=Decimal(5))
    claim = claim.model_copy(update={"diagnoses": ("M54.50", "M6281")})
    findings = scrub(claim, context_for("PT"))
    assert [(f.line, f.severity, f.rule) for f in findings] == [
        (None, "error", "icd10.format"),
        (2, "error", "units.cms-8-minute"),
        (2, "warning", "modifier.assistant"),
    ]
    assert all(f.fix and f.message for f in findings)
    for f in findings:
        assert "Doe" not in f.message and "1EG4TE5MK73" not in f.message
