"""GET /referrals finds the plans of a whole page of referrals with a few CarePlan searches (chunks of
referrals ORed in one token search): each referral still lists its own plan, never another's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

import hub.referrals.service as referral_service
from tests.referrals.test_intake_and_task import referral
from tests.referrals.test_plan_document import PLAN, Clock, clinic_client, clock, put  # noqa: F401 - fixtures


@pytest.mark.parametrize("chunk", [2, 50])
def test_each_referral_lists_its_own_plan(clinic_client: TestClient, clock: Clock,  # noqa: F811
                                          monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(referral_service, "PLAN_SEARCH_CHUNK", chunk)
    client = clinic_client
    put(client, {"resourceType": "PractitionerRole", "id": "pt-lee"})
    plans: dict[str, str] = {}
    for number in range(5):
        body = referral(f"R-{number}")
        body["patient"] = {**body["patient"], "identifier": {**body["patient"]["identifier"], "value": f"MRN-{number}"}}
        view = client.post("/referrals", json=body)
        assert view.status_code in (200, 201), view.text
        task_id = view.json()["task"].split("/")[1]
        if number == 3:
            continue  # one referral without a plan
        assert client.post(f"/referrals/{task_id}/status", json={"status": "accepted"}).status_code == 200
        clock.now += timedelta(hours=1)
        made = client.post(f"/referrals/{task_id}/plan-of-care", json=PLAN)
        assert made.status_code == 201, made.text
        plans[f"Task/{task_id}"] = made.json()["care_plan"]
    listed = client.get("/referrals").json()
    assert len(listed) == 5
    for view in listed:
        care_plans = {d["care_plan"] for d in view["documents"]}
        if view["task"] in plans:
            assert care_plans == {plans[view["task"]]}
        else:
            assert care_plans == set()
