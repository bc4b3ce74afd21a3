"""835 claims as FHIR R4 ClaimResponse, validated with the R4B model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mappings.billing.model import PATIENT_CONTROL_SYSTEM
from mappings.fhir import model_class
from mappings.fhir.jsonio import dumps
from mappings.x12.read835 import ClaimPayment, Remittance, read835
from mappings.x12.remittance_fhir import (
    CARC_SYSTEM,
    CLAIM_STATUS_EXTENSION,
    GROUP_SYSTEM,
    PAYER_CLAIM_SYSTEM,
    REVERSAL_EXTENSION,
    claim_response,
    provider_adjustments,
)

DATA = Path(__file__).parent / "data"
CREATED = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def medicare() -> list[Remittance]:
    return read835((DATA / "835_medicare.x12").read_bytes()).remittances


def _response(remittance: Remittance, claim: ClaimPayment, **changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"request_ref": "Claim/c-1001", "patient_ref": "Patient/p-1",
                                 "insurer_ref": "Organization/medicare", "line_sequences": {}, "created": CREATED}
    arguments.update(changes)
    return claim_response(claim, remittance, **arguments)


def _by_category(adjudications: list[dict[str, Any]]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for entry in adjudications:
        coding = entry["category"]["coding"][0]
        key = coding["code"]
        if coding["system"] == GROUP_SYSTEM:
            key += "-" + entry["reason"]["coding"][0]["code"]
        out[key] = entry["amount"]["value"]
    return out


def test_paid_claim_items_adjudications_totals_and_payment(medicare: list[Remittance]) -> None:
    remittance = medicare[0]
    claim = remittance.claims[0]
    resource = _response(remittance, claim, line_sequences={"L1001-1": 3, "L1001-2": 4})
    model_class("ClaimResponse").model_validate(resource)
    assert json.loads(dumps(resource))["total"][1]["amount"]["value"] == 117.6  # serialisable
    assert (resource["status"], resource["use"], resource["outcome"]) == ("active", "claim", "complete")
    assert resource["type"]["coding"][0]["code"] == "professional"
    assert resource["request"] == {"reference": "Claim/c-1001"}
    assert resource["insurer"]["reference"] == "Organization/medicare"
    assert {"system": PATIENT_CONTROL_SYSTEM, "value": "PCN1001"} in resource["identifier"]
    assert any(i["system"] == PAYER_CLAIM_SYSTEM and i["value"] == "26060000101" for i in resource["identifier"])
    first, second = resource["item"]
    assert (first["itemSequence"], second["itemSequence"]) == (3, 4)
    amounts = _by_category(first["adjudication"])
    assert amounts == {"submitted": Decimal("150.00"), "eligible": Decimal("90.00"), "benefit": Decimal("70.56"),
                       "CO-45": Decimal("60.00"), "CO-253": Decimal("1.44"), "PR-2": Decimal("18.00")}
    for item in resource["item"]:  # adjustments + benefit = submitted, to the cent
        lines = _by_category(item["adjudication"])
        adjusted = sum(v for k, v in lines.items() if "-" in k)
        assert adjusted + lines["benefit"] == lines["submitted"]
    reason = first["adjudication"][3]["reason"]["coding"][0]
    assert reason["system"] == CARC_SYSTEM and reason["display"]
    totals = {t["category"]["coding"][0]["code"]: t["amount"]["value"] for t in resource["total"]}
    assert totals == {"submitted": Decimal("250.00"), "benefit": Decimal("117.60"), "PR": Decimal("30.00")}
    assert resource["payment"]["amount"]["value"] == Decimal("117.60")
    assert resource["payment"]["date"] == "2026-03-05"
    assert resource["payment"]["identifier"]["value"] == "EFT0001234"
    notes = {n["number"]: n["text"] for n in resource["processNote"]}
    assert any(t.startswith("MA01") for t in notes.values())
    assert notes[second["noteNumber"][0]].startswith("N130: ")
    assert resource["extension"][0]["url"] == CLAIM_STATUS_EXTENSION


def test_denied_claim_is_complete_with_disposition_reason_and_remarks(medicare: list[Remittance]) -> None:
    remittance = medicare[0]
    resource = _response(remittance, remittance.claims[1])
    model_class("ClaimResponse").model_validate(resource)
    assert resource["outcome"] == "complete" and resource["disposition"] == "Denied"
    (item,) = resource["item"]
    assert item["itemSequence"] == 1  # no known line control number: order in the claim
    assert _by_category(item["adjudication"])["CO-50"] == Decimal("120.00")
    texts = [resource["processNote"][n - 1]["text"] for n in item["noteNumber"]]
    assert [t.split(":")[0] for t in texts] == ["N386", "M76"]


def test_reversal_is_marked_and_keeps_negative_amounts(medicare: list[Remittance]) -> None:
    remittance = medicare[1]
    reversal, corrected = remittance.claims
    reversed_resource = _response(remittance, reversal)
    corrected_resource = _response(remittance, corrected)
    for resource in (reversed_resource, corrected_resource):
        model_class("ClaimResponse").model_validate(resource)
    assert {"url": REVERSAL_EXTENSION, "valueBoolean": True} in reversed_resource["extension"]
    assert reversed_resource["disposition"] == "Reversal of previous payment"
    assert reversed_resource["payment"]["amount"]["value"] == Decimal("-117.60")
    assert not any(e["url"] == REVERSAL_EXTENSION for e in corrected_resource["extension"])
    assert reversed_resource["id"] != corrected_resource["id"]
    billed = corrected_resource["item"][1]["extension"]
    assert [e["extension"][0]["valueCoding"]["code"] for e in billed] == ["97530", "97140"]


def test_ids_are_deterministic_and_insurer_falls_back_to_the_payer_name(medicare: list[Remittance]) -> None:
    remittance = medicare[0]
    claim = remittance.claims[0]
    again = read835((DATA / "835_medicare.x12").read_bytes()).remittances[0]
    assert _response(remittance, claim)["id"] == _response(again, again.claims[0])["id"]
    assert _response(remittance, claim)["id"] != _response(remittance, remittance.claims[1])["id"]
    resource = _response(remittance, claim, insurer_ref=None, request_ref=None)
    model_class("ClaimResponse").model_validate(resource)
    assert resource["insurer"] == {"display": "MEDICARE JURISDICTION 15"}
    assert "request" not in resource


def test_provider_adjustments_summary(medicare: list[Remittance]) -> None:
    summary = provider_adjustments(medicare[0])
    assert summary["trace_number"] == "EFT0001234" and summary["total_paid"] == Decimal("94.10")
    assert summary["claims_paid"] - summary["total_adjusted"] == summary["total_paid"]
    assert [(a["reason"], a["amount"]) for a in summary["adjustments"]] == [
        ("WO", Decimal("25.00")), ("L6", Decimal("-1.50"))]
    assert summary["adjustments"][0]["description"]
