"""A week of PT/OT/SLP visits -> FHIR R4 Claims: lines, units by the payer's rule, modifiers, the care
team, diagnoses, links to the plan of care and the referral; valid for fhir.resources R4B."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mappings.billing.claims import ClaimDataError, claim_from_visits
from mappings.billing.codes import LINE_CONTROL_EXTENSION, MODIFIER_EXTENSION, POS_EXTENSION, TIMED_MINUTES_EXTENSION
from mappings.billing.model import MODIFIER_SYSTEM, PATIENT_CONTROL_SYSTEM, POS_SYSTEM
from mappings.fhir import model_class
from mappings.fhir.ids import deterministic_id
from mappings.fhir.jsonio import dumps, loads
from tests.mappings.billing.visits_support import CREATED, FEES, Week, charge, claim_for, encounter, week

GOLDEN = Path(__file__).parents[1] / "data" / "billing"


def lines(claim: dict[str, Any]) -> list[tuple[str, str, Decimal, tuple[str, ...]]]:
    """(date, code, units, modifiers) of each item."""
    return [
        (
            item["servicedDate"],
            item["productOrService"]["coding"][0]["code"],
            item["quantity"]["value"],
            tuple(m["coding"][0]["code"] for m in item.get("modifier", [])),
        )
        for item in claim["item"]
    ]


def ext(item: dict[str, Any], url: str) -> Any:
    return next((e for e in item.get("extension", []) if e["url"] == url), None)


@pytest.mark.parametrize("discipline", ["PT", "OT", "SLP"])
def test_the_claim_of_each_discipline_is_a_valid_fhir_r4_claim(discipline: str) -> None:
    claim = claim_for(week(), discipline)  # type: ignore[arg-type]
    parsed = model_class("Claim").model_validate(claim)
    assert parsed.status == "active" and parsed.use == "claim"
    assert claim["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/claim-type",
        "code": "professional",
    }
    assert claim["priority"]["coding"][0]["code"] == "normal"
    assert claim["insurance"] == [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/cov-1"}}]
    assert claim["identifier"] == [{"system": PATIENT_CONTROL_SYSTEM, "value": f"W11-{discipline}"}]
    assert claim["id"] == deterministic_id("Claim", PATIENT_CONTROL_SYSTEM, f"W11-{discipline}")
    assert claim["provider"] == {"reference": "Organization/clinic"}
    assert claim["insurer"] == {"reference": "Organization/medicare"}  # the Coverage's payor: a ClaimResponse's
    assert claim["referral"] == {"reference": "ServiceRequest/referral-1"}


def test_pt_week_matches_the_golden_claim() -> None:
    claim = loads(dumps(claim_for(week(), "PT")))
    assert claim == loads((GOLDEN / "pt_week" / "expected.json").read_text())


def test_pt_week_lines_units_and_modifiers_by_the_cms_rule() -> None:
    claim = claim_for(week(), "PT")
    assert lines(claim) == [
        ("2025-03-10", "97162", 1, ("GP",)),  # evaluation: untimed
        ("2025-03-10", "97110", 2, ("GP",)),  # 23 min -> 2
        ("2025-03-13", "97110", 2, ("GP",)),  # 33 + 7 = 40 min -> 3 units: 2 + 1
        ("2025-03-13", "97140", 1, ("GP",)),
        ("2025-03-14", "97110", 2, ("GP", "CQ")),  # PTA: 24 + 23 = 47 min -> 3 units: 2 + 1
        ("2025-03-14", "97112", 1, ("GP", "CQ")),
        ("2025-03-14", "97010", 1, ("GP", "CQ")),  # untimed modality
        ("2025-03-14", "G0283", 1, ("GP", "CQ")),  # untimed even when given in minutes
    ]
    nets = [item["net"]["value"] for item in claim["item"]]
    assert nets == [Decimal(v) for v in ("180.00", "90.00", "90.00", "42.00", "90.00", "48.00", "15.00", "20.00")]
    assert claim["total"] == {"value": Decimal("575.00"), "currency": "USD"}
    minutes = [(ext(i, TIMED_MINUTES_EXTENSION) or {}).get("valueInteger") for i in claim["item"]]
    assert minutes == [None, 23, 33, 7, 24, 23, None, None]  # G0283 is untimed: its 15 minutes are not timed
    controls = [ext(i, LINE_CONTROL_EXTENSION)["valueIdentifier"]["value"] for i in claim["item"]]
    assert controls == [f"W11-PT-{n}" for n in range(1, 9)]


def test_per_code_rule_bills_each_code_alone_and_drops_a_code_under_eight_minutes() -> None:
    claim = claim_for(week(), "PT", units_rule="per-code")
    assert [(d, c, u) for d, c, u, _ in lines(claim)] == [
        ("2025-03-10", "97162", 1),
        ("2025-03-10", "97110", 2),
        ("2025-03-13", "97110", 2),  # 97140 (7 min) bills nothing alone
        ("2025-03-14", "97110", 2),  # 24 min -> 2 (CMS: 2 of the visit's 3)
        ("2025-03-14", "97112", 2),  # 23 min -> 2 (CMS: 1)
        ("2025-03-14", "97010", 1),
        ("2025-03-14", "G0283", 1),
    ]


def test_seven_minutes_alone_is_no_line_and_eight_is_one_unit() -> None:
    w = week()
    w.encounters["PT"] = [encounter("e1", "2025-03-17", ["lbp"]), encounter("e2", "2025-03-18", ["lbp"])]
    w.charges["PT"] = [
        charge("a", "97110", "e1", "2025-03-17", "pt", minutes=7),
        charge("b", "97110", "e2", "2025-03-18", "pt", minutes=8),
    ]
    assert [(d, c, u) for d, c, u, _ in lines(claim_for(w, "PT"))] == [("2025-03-18", "97110", 1)]


def test_charge_items_of_one_code_in_one_visit_add_up_before_rounding() -> None:
    w = week()
    w.encounters["PT"] = [encounter("e1", "2025-03-17", ["lbp"])]
    w.charges["PT"] = [
        charge("a", "97110", "e1", "2025-03-17", "pt", minutes=10),
        charge("b", "97110", "e1", "2025-03-17", "pt", minutes=13),
    ]
    claim = claim_for(w, "PT")
    assert [(c, u) for _, c, u, _ in lines(claim)] == [("97110", 2)]
    assert ext(claim["item"][0], TIMED_MINUTES_EXTENSION)["valueInteger"] == 23


def test_units_given_as_units_are_kept_with_their_documented_minutes() -> None:
    w = week()
    w.encounters["PT"] = [encounter("e1", "2025-03-17", ["lbp"])]
    given = charge("a", "97110", "e1", "2025-03-17", "pt", units=3)
    given["extension"] = [{"url": TIMED_MINUTES_EXTENSION, "valueInteger": 40}]
    w.charges["PT"] = [given]
    claim = claim_for(w, "PT")
    assert claim["item"][0]["quantity"]["value"] == 3
    assert ext(claim["item"][0], TIMED_MINUTES_EXTENSION)["valueInteger"] == 40


def test_ot_week_marks_the_ot_assistant_with_co_and_slp_lines_with_gn() -> None:
    w = week()
    ot = claim_for(w, "OT")
    assert lines(ot) == [
        ("2025-03-11", "97166", 1, ("GO",)),
        ("2025-03-11", "97535", 2, ("GO",)),
        ("2025-03-13", "97530", 3, ("GO", "CO")),
    ]
    assert lines(claim_for(w, "SLP")) == [("2025-03-12", "92610", 1, ("GN",)), ("2025-03-12", "92526", 1, ("GN",))]


def test_care_team_has_the_therapist_primary_and_the_assistant_on_the_assistant_lines() -> None:
    claim = claim_for(week(), "PT")
    team = {
        m["sequence"]: (
            m["provider"]["reference"],
            m["role"]["coding"][0]["code"],
            m["qualification"]["coding"][0]["code"],
        )
        for m in claim["careTeam"]
    }
    assert team == {1: ("Practitioner/pt", "primary", "therapist"), 2: ("Practitioner/pta", "assist", "assistant")}
    assert claim["careTeam"][0]["responsible"] is True
    assert [i["careTeamSequence"] for i in claim["item"]] == [[1], [1], [1], [1], [1, 2], [1, 2], [1, 2], [1, 2]]


def test_diagnoses_in_rank_order_with_each_line_pointing_to_its_visit() -> None:
    claim = claim_for(week(), "PT")
    codes = [d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in claim["diagnosis"]]
    assert codes == ["M54.50", "M62.81"]
    assert [d["sequence"] for d in claim["diagnosis"]] == [1, 2]
    assert [i["diagnosisSequence"] for i in claim["item"]][-1] == [1]  # Friday's visit: low back pain only
    assert claim["item"][0]["diagnosisSequence"] == [1, 2]


def test_charge_reason_points_the_line_to_its_own_diagnosis() -> None:
    w = week()
    w.charges["PT"][1]["reason"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M62.81"}]}]
    claim = claim_for(w, "PT")
    assert claim["item"][1]["diagnosisSequence"] == [2]


def test_plan_of_care_initial_treatment_and_onset_are_supporting_info() -> None:
    claim = claim_for(week(), "PT")
    info = [
        (
            s["sequence"],
            s["category"]["coding"][0]["code"],
            (s.get("code") or {"coding": [{}]})["coding"][0].get("code"),
            s.get("valueReference", {}).get("reference") or s.get("timingDate"),
        )
        for s in claim["supportingInfo"]
    ]
    assert info == [
        (1, "info", "plan-of-care", "CarePlan/plan-pt"),
        (2, "info", "initial-treatment", "2025-03-10"),
        (3, "onset", None, "2025-02-20"),
    ]


def test_place_of_service_from_the_encounter_extension_else_office() -> None:
    w = week()
    w.encounters["PT"][2] = encounter("pt-fri", "2025-03-14", ["lbp"], pos="10")  # telehealth at home
    claim = claim_for(w, "PT")
    places = [i["locationCodeableConcept"]["coding"][0] for i in claim["item"]]
    assert {p["system"] for p in places} == {POS_SYSTEM}
    assert [p["code"] for p in places] == ["11"] * 4 + ["10"] * 4
    assert POS_EXTENSION.endswith("place-of-service")


def test_extra_modifiers_from_the_charge_and_kx_when_asked() -> None:
    w = week()
    w.charges["PT"][3]["extension"] = [
        {"url": MODIFIER_EXTENSION, "valueCoding": {"system": MODIFIER_SYSTEM, "code": "59"}}
    ]
    claim = claim_for(w, "PT", kx=True)
    assert lines(claim)[3][3] == ("GP", "59", "KX")
    assert lines(claim)[4][3] == ("GP", "CQ", "KX")


def test_the_same_visits_always_give_the_same_claim() -> None:
    assert claim_for(week(), "OT") == claim_for(week(), "OT")
    assert claim_for(week(), "OT", number="X1")["id"] != claim_for(week(), "OT")["id"]
    w = week()
    assert call(w, id_scope="tenant-a")["id"] != call(w, id_scope="tenant-b")["id"] != call(w)["id"]
    assert call(w, id_scope="tenant-a")["id"] == deterministic_id("Claim", PATIENT_CONTROL_SYSTEM, "N1", "tenant-a")


def call(w: Week, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "billing_org": w.clinic,
        "careplan": w.careplans["PT"],
        "claim_number": "N1",
        "created": CREATED,
        "units_rule": "cms-8-minute",
        "conditions": w.conditions,
        "fee_schedule": FEES,
    }
    kwargs.update(overrides)
    return claim_from_visits(w.encounters["PT"], w.charges["PT"], w.coverage, w.patient, **kwargs)


def test_missing_data_is_named_by_its_fhir_path() -> None:
    w = week()
    bad = copy.deepcopy(w)
    bad.charges["PT"][0]["code"] = {"text": "evaluation"}
    with pytest.raises(ClaimDataError) as caught:
        call(bad)
    assert caught.value.path == "ChargeItem[0].code" and "CPT or HCPCS" in caught.value.message

    bad = copy.deepcopy(w)
    bad.charges["PT"][2]["context"] = {"reference": "Encounter/elsewhere"}
    with pytest.raises(ClaimDataError, match=r"ChargeItem\[2\]\.context"):
        call(bad)

    with pytest.raises(ClaimDataError, match="priceOverride"):
        call(w, fee_schedule={})

    with pytest.raises(ClaimDataError, match=r"Encounter\[0\]\.diagnosis\[0\]\.condition") as missing:
        call(w, conditions=())
    assert "lbp" not in str(missing.value)

    with pytest.raises(ValueError, match="timezone-aware"):
        call(w, created=CREATED.replace(tzinfo=None))


def test_price_override_on_the_charge_wins_over_the_fee_schedule() -> None:
    w = week()
    w.charges["PT"][0]["priceOverride"] = {"value": 150, "currency": "USD"}
    claim = call(w)
    assert claim["item"][0]["unitPrice"]["value"] == Decimal("150.00")


def test_diagnoses_from_the_encounter_reason_code_when_it_names_no_condition() -> None:
    w = week()
    visit = encounter("e1", "2025-03-17", [])
    visit["reasonCode"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M25.511"}]}]
    w.encounters["PT"] = [visit]
    w.charges["PT"] = [charge("a", "97110", "e1", "2025-03-17", "pt", minutes=30)]
    claim = claim_for(w, "PT")
    assert [d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in claim["diagnosis"]] == ["M25.511"]
    assert claim["item"][0]["diagnosisSequence"] == [1]


def test_without_a_plan_of_care_the_discipline_comes_from_the_evaluation_and_the_referral_from_the_visit() -> None:
    w = week()
    claim = call(w, careplan=None)
    assert lines(claim)[0][3] == ("GP",) and lines(claim)[1][3] == ("GP",)
    assert claim["referral"] == {"reference": "ServiceRequest/referral-1"}
    assert [s["category"]["coding"][0]["code"] for s in claim["supportingInfo"]] == ["onset"]
    model_class("Claim").model_validate(claim)


def test_a_line_by_another_therapist_joins_the_care_team() -> None:
    w = week()
    w.charges["PT"][2]["performer"][0]["actor"] = {"reference": "Practitioner/ot"}
    w.charges["PT"][3]["performer"][0]["actor"] = {"reference": "Practitioner/ot"}
    claim = claim_for(w, "PT")
    roles = [(m["provider"]["reference"], m["role"]["coding"][0]["code"]) for m in claim["careTeam"]]
    assert roles == [("Practitioner/pt", "primary"), ("Practitioner/ot", "other"), ("Practitioner/pta", "assist")]
    assert [i["careTeamSequence"] for i in claim["item"]][2:5] == [[2], [2], [1, 3]]


def test_a_charge_for_another_patient_is_refused() -> None:
    w = week()
    w.charges["PT"][4]["subject"] = {"reference": "Patient/someone-else"}
    with pytest.raises(ClaimDataError) as caught:
        call(w)
    assert caught.value.path == "ChargeItem[4].subject" and "someone-else" not in str(caught.value)


def test_the_weeks_visits_are_valid_fhir_r4_resources() -> None:
    w = week()
    resources = [
        w.patient,
        w.coverage,
        w.clinic,
        w.payer,
        w.referral,
        *w.practitioners.values(),
        *w.conditions,
        *w.careplans.values(),
        *(r for rs in [*w.encounters.values(), *w.charges.values()] for r in rs),
    ]
    for resource in resources:
        model_class(resource["resourceType"]).model_validate(resource)
