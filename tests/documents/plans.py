"""A referral with a plan of care waiting for the referring physician's certification."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.referrals.test_intake_and_task import referral
from tests.referrals.test_plan_document import PLAN


def certification_page(client: TestClient, number: str = "R-1001") -> tuple[dict, str]:
    """(the plan-of-care answer: care_plan, document, return_code, obligations; the certification Task id)."""
    view = client.post("/referrals", json=referral(number)).json()
    task_id = view["task"].split("/")[1]
    assert client.post(f"/referrals/{task_id}/status", json={"status": "accepted"}).status_code == 200
    response = client.post(f"/referrals/{task_id}/plan-of-care", json=PLAN)
    assert response.status_code == 201, response.text
    plan = response.json()
    certification = next(o for o in plan["obligations"] if o["kind"] == "certification")
    return plan, certification["task"].split("/")[1]
