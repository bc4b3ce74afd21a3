"""271 results as FHIR R4 CoverageEligibilityResponse, validated with the R4B model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mappings.fhir import model_class
from mappings.fhir.jsonio import dumps
from mappings.x12.eligibility_fhir import (
    BENEFIT_TYPE_SYSTEM,
    REJECT_REASON_SYSTEM,
    SERVICE_TYPE_SYSTEM,
    coverage_eligibility_response,
)
from mappings.x12.read271 import EligibilityResult, read271

DATA = Path(__file__).parent / "data"
CREATED = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def results() -> list[EligibilityResult]:
    return read271((DATA / "271_benefits.x12").read_bytes()).results


def _response(result: EligibilityResult, **changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"patient_ref": "Patient/p-1", "insurer_ref": "Organization/acme",
                                 "request_ref": "CoverageEligibilityRequest/r-1", "coverage_ref": "Coverage/cov-1",
                                 "created": CREATED}
    arguments.update(changes)
    resource = coverage_eligibility_response(result, **arguments)
    model_class("CoverageEligibilityResponse").model_validate(resource)
    json.loads(dumps(resource))
    return resource


def _item(resource: dict[str, Any], service_type: str, network: str | None) -> dict[str, Any]:
    for item in resource["insurance"][0]["item"]:
        coding = item["category"]["coding"][0]
        item_network = item["network"]["coding"][0]["code"] if "network" in item else None
        if coding["system"] == SERVICE_TYPE_SYSTEM and coding["code"] == service_type and item_network == network:
            return item
    raise AssertionError(f"no item {service_type} {network}")


def _benefit(item: dict[str, Any], type_code: str) -> dict[str, Any]:
    (benefit,) = [b for b in item["benefit"] if b["type"]["coding"][0]["code"] == type_code]
    assert benefit["type"]["coding"][0]["system"] == BENEFIT_TYPE_SYSTEM
    return benefit


def test_active_coverage_with_physical_therapy_benefits(results: list[EligibilityResult]) -> None:
    resource = _response(results[0])
    assert (resource["status"], resource["purpose"], resource["outcome"]) == ("active", ["benefits"], "complete")
    assert resource["request"] == {"reference": "CoverageEligibilityRequest/r-1"}
    assert resource["insurer"]["reference"] == "Organization/acme" and "error" not in resource
    (insurance,) = resource["insurance"]
    assert insurance["coverage"] == {"reference": "Coverage/cov-1"} and insurance["inforce"] is True
    assert insurance["benefitPeriod"] == {"start": "2026-01-01", "end": "2026-12-31"}
    pt = _item(resource, "PT", "in")
    assert pt["category"]["coding"][0]["display"] == "Physical therapy"
    assert pt["authorizationRequired"] is True
    assert pt["term"]["coding"][0]["code"] == "annual" and pt["unit"]["coding"][0]["code"] == "individual"
    visits = _benefit(pt, "visit")
    assert (visits["allowedUnsignedInt"], visits["usedUnsignedInt"]) == (20, 6)
    assert _benefit(pt, "copay")["allowedMoney"] == {"value": Decimal("25.00"), "currency": "USD"}
    assert _benefit(pt, "copay-percent")["allowedUnsignedInt"] == 20
    assert _benefit(_item(resource, "PT", "out"), "copay-percent")["allowedUnsignedInt"] == 40
    plan = _item(resource, "30", "in")
    deductible = _benefit(plan, "deductible")
    assert deductible["allowedMoney"]["value"] == Decimal("500.00")
    assert deductible["usedMoney"]["value"] == Decimal("150.00")  # 350.00 remaining
    assert _benefit(plan, "copay-maximum")["allowedMoney"]["value"] == Decimal("3000.00")
    assert _item(resource, "AF", None)["excluded"] is True
    assert _item(resource, "PT", None)["excluded"] is False
    assert _benefit(_item(resource, "AE", None), "benefit")["allowedMoney"]["value"] == Decimal("2410.00")


def test_remaining_only_is_stated_as_such(results: list[EligibilityResult]) -> None:
    text = (DATA / "271_benefits.x12").read_bytes().decode("latin-1").replace("EB*C*IND*30***23*500.00*****Y~\n", "")
    text = text.replace("SE*34*0001", "SE*33*0001")
    resource = _response(read271(text).results[0])
    deductible = _benefit(_item(resource, "30", "in"), "deductible")
    assert deductible["allowedString"] == "350 remaining" and "usedMoney" not in deductible


def test_rejection_gives_errors_and_no_insurance(results: list[EligibilityResult]) -> None:
    resource = _response(results[1], coverage_ref=None)
    assert resource["outcome"] == "error" and "insurance" not in resource
    codes = [(e["code"]["coding"][0]["system"], e["code"]["coding"][0]["code"]) for e in resource["error"]]
    assert codes == [(REJECT_REASON_SYSTEM, "72"), (REJECT_REASON_SYSTEM, "73")]
    assert resource["error"][0]["code"]["coding"][0]["display"] == "Invalid or missing member (subscriber) id"
    assert "Invalid or missing member" in resource["disposition"]
    busy = _response(results[2], request_ref=None, insurer_ref=None)
    assert busy["outcome"] == "error" and busy["error"][0]["code"]["coding"][0]["code"] == "42"
    assert busy["insurer"] == {"display": "ACME HEALTH PLAN"}
    assert busy["request"]["identifier"]["value"] == "ELIG270A3"


def test_ids_are_deterministic(results: list[EligibilityResult]) -> None:
    again = read271((DATA / "271_benefits.x12").read_bytes()).results
    assert _response(results[0])["id"] == _response(again[0])["id"]
    assert len({_response(r)["id"] for r in results}) == 3
