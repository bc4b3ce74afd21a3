"""The referral views say how each document went to the referrer: the plan of care's certification
Task sent by Direct (sandbox HISP; awaiting the referrer's MDN) and dead-lettered by fax (the
referrer has no fax number),
in GET /referrals, GET /certifications and the dashboard's referral page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from hub.settings import Settings
from hub.sync.delivery import deliver
from sandboxes.fax import SandboxFaxServer
from sandboxes.hisp import PHYSICIAN_ADDRESS, SandboxHisp
from tests.connectors.fax.support import CLINIC_FAX
from tests.referrals.test_intake_and_task import referral
from tests.referrals.test_plan_document import PLAN, Clock, clinic_client, clock, put  # noqa: F401 - fixtures

CERTIFICATIONS = "code.coding.where(code='certification').exists()"


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


@pytest.fixture
def fax() -> Iterator[SandboxFaxServer]:
    with SandboxFaxServer(profile="phaxio", api_key="key-1234", api_secret="secret-5678",
                          webhook_secret="vendor-webhook-token-0123") as server:
        yield server


def test_each_document_shows_its_channels_and_statuses(clinic_client: TestClient, clock: Clock,  # noqa: F811
                                                       settings: Settings, hisp: SandboxHisp,
                                                       fax: SandboxFaxServer) -> None:
    client = clinic_client
    fax_config = {"profile": "phaxio", "base_url": fax.url, "api_key": "key-1234", "api_secret": "secret-5678",
                  "webhook_secret": "vendor-webhook-token-0123", "sender_fax": CLINIC_FAX,
                  "clinic_name": "Riverside Rehab"}
    for name, kind, config in (("hisp", "direct", hisp.connector_config()), ("vendor", "fax", fax_config)):
        assert client.put(f"/admin/api/connectors/{name}", json={
            "name": name, "kind": kind, "config": config, "max_attempts": 1}).status_code == 200
        assert client.post("/admin/api/routes", json={"name": f"plans-{name}", "resource_type": "Task",
                                                      "filter": CERTIFICATIONS, "connector": name}).status_code == 201
    put(client, {"resourceType": "PractitionerRole", "id": "pt-lee"})
    referrer = referral()["referrer"]
    view = client.post("/referrals", json=referral(referrer={**referrer, "direct_address": PHYSICIAN_ADDRESS})).json()
    task_id = view["task"].split("/")[1]
    assert client.post(f"/referrals/{task_id}/status", json={"status": "accepted"}).status_code == 200
    clock.now += timedelta(days=1)
    assert client.post(f"/referrals/{task_id}/plan-of-care", json=PLAN).status_code == 201

    [listed] = client.get("/referrals").json()
    documents = {d["document"]: d for d in listed["documents"]}
    document = documents["plan-of-care"]
    assert document["care_plan"].startswith("CarePlan/") and document["task"].startswith("Task/")
    assert documents["progress-report"]["deliveries"] == []  # not routed: not sent
    assert [(d["channel"], d["status"]) for d in document["deliveries"]] == [("Direct", "pending"), ("fax", "pending")]

    for job in client.get("/admin/api/jobs").json()["items"]:
        deliver(settings, int(job["id"]))
    hisp.wait_for(1)

    [listed] = client.get("/referrals").json()
    document = next(d for d in listed["documents"] if d["document"] == "plan-of-care")
    assert [(d["channel"], d["status"]) for d in document["deliveries"]] == [
        ("Direct", "awaiting"), ("fax", "dead")]
    certification = next(o for o in client.get("/certifications").json() if o["kind"] == "certification")
    assert certification["document"] == "plan-of-care"
    assert [(d["channel"], d["status"]) for d in certification["deliveries"]] == [("Direct", "awaiting"),
                                                                                   ("fax", "dead")]
    page = client.get("/dashboard/referrals")
    assert page.status_code == 200, page.text
    assert "plan-of-care" in page.text and "Direct" in page.text and "s-dead" in page.text
    assert "s-awaiting" in page.text
