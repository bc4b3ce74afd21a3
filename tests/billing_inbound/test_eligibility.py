"""Eligibility round trip with the sandbox clearinghouse: the admin API stores a
CoverageEligibilityRequest and queues a 270; the sandbox answers with a 271, polled back and
stored as a CoverageEligibilityResponse linked to the request and the Coverage."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from hub.billing.imports_poll import poll_billing
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync.delivery import deliver
from hub.unit_of_work import unit_of_work
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing_inbound.support import TENANT, patient_and_coverage, resource, search
from tests.mappings.x12.claims_support import JONES


def _item(response: dict[str, Any], category: str) -> list[dict[str, Any]]:
    return [item for item in response["insurance"][0]["item"]
            if item.get("category", {}).get("coding", [{}])[0].get("code") == category]


def _benefits(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        for benefit in item.get("benefit", []):
            out.setdefault(benefit["type"]["coding"][0]["code"], {}).update(benefit)
    return out


def test_eligibility_round_trip_with_the_sandbox(client: TestClient, settings: Settings,
                                                house: SandboxClearinghouse, connector_id: int) -> None:
    patient_and_coverage(settings)
    house.visits_used[JONES.member_id or ""] = 8
    answer = client.post("/admin/api/billing/eligibility",
                         json={"coverage": "Coverage/cov-jones", "disciplines": ["PT", "SLP"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["service_types"] == ["PT", "AF"] and body["connector"] == "clearinghouse"
    request = resource(settings, body["request"].split("/")[0], body["request"].split("/")[1])
    assert request["insurance"][0]["coverage"]["reference"] == "Coverage/cov-jones"

    with unit_of_work(settings, readonly=True) as session:
        [job] = repo.jobs_of(session, message_id=body["message_id"])
        job_id = job.id
    assert deliver(settings, job_id) is None  # the engine sends the 270 through the connector
    [name] = house.wait_for_responses(1)
    assert name.endswith(".271")

    report = poll_billing(settings, connector_id)
    assert report is not None and report.acknowledged == 1
    [result] = report.files
    assert result.ok and [s.kind for s in result.sets] == ["271"], result.view()
    assert result.sets[0].resources, result.view()
    found = search(settings, "CoverageEligibilityResponse", [])
    assert len(found) == 1 and found[0]["request"].get("reference") == body["request"], (found[0]["request"], body)
    [response] = found
    assert response["patient"]["reference"] == "Patient/pat-jones"
    assert response["insurance"][0]["coverage"]["reference"] == "Coverage/cov-jones"
    assert response["outcome"] == "complete"
    pt = _benefits(_item(response, "PT"))
    assert pt["visit"]["allowedUnsignedInt"] == 20 and pt["visit"]["usedUnsignedInt"] == 8
    assert float(pt["copay"]["allowedMoney"]["value"]) == 25
    assert float(pt["copay-percent"]["allowedUnsignedInt"]) == 20
    slp = _item(response, "AF")
    assert any(item.get("authorizationRequired") is True for item in slp)
    deductible = _benefits(_item(response, "30"))["deductible"]
    assert float(deductible["allowedMoney"]["value"]) == 240
    assert TENANT


def test_eligibility_without_a_clearinghouse_or_coverage_is_a_clear_error(client: TestClient,
                                                                          settings: Settings) -> None:
    patient_and_coverage(settings)
    answer = client.post("/admin/api/billing/eligibility", json={"coverage": "Coverage/cov-jones"})
    assert answer.status_code == 404 and "x12_billing" in answer.text
    assert client.post("/admin/api/billing/eligibility", json={"coverage": "Patient/x"}).status_code == 400
