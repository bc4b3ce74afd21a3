"""Fallback chain routes (ADR 0011): "plan of care ready -> the referrer's Direct address, else fax",
against the sandbox HISP and the sandbox fax vendor; the chain's validation in the admin API and the
routes file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.settings import Settings
from hub.sync.delivery import deliver
from sandboxes.fax import SandboxFaxServer
from sandboxes.hisp import PHYSICIAN_ADDRESS, SandboxHisp
from tests.connectors.fax.support import CLINIC_FAX, REFERRER_FAX, plan_pdf, resources

FAX_WEBHOOKS = "/inbound/default/fax/vendor"


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


@pytest.fixture
def fax() -> Iterator[SandboxFaxServer]:
    with SandboxFaxServer(profile="phaxio", api_key="key-1234", api_secret="secret-5678",
                          webhook_secret="vendor-webhook-token-0123") as server:
        yield server


def connectors(client: TestClient, hisp: SandboxHisp, fax: SandboxFaxServer, fax_secret: str = "secret-5678",
               **direct: Any) -> None:
    fax_config = {"profile": "phaxio", "base_url": fax.url, "api_key": "key-1234", "api_secret": fax_secret,
                  "webhook_secret": "vendor-webhook-token-0123", "sender_fax": CLINIC_FAX,
                  "clinic_name": "Riverside Rehab"}
    for name, kind, config in (("hisp", "direct", hisp.connector_config(**direct)), ("vendor", "fax", fax_config)):
        response = client.put(f"/admin/api/connectors/{name}", json={
            "name": name, "kind": kind, "config": config, "max_attempts": 1, "backoff_base_seconds": 0.05,
            "backoff_max_seconds": 0.1})
        assert response.status_code == 200, response.text


def route(client: TestClient) -> dict[str, Any]:
    response = client.post("/admin/api/routes", json={"name": "plans-to-referrer", "resource_type": "Task",
                                                      "connector": "hisp", "fallback": ["vendor"]})
    assert response.status_code == 201, response.text
    return dict(response.json())


def store(client: TestClient, *, email: bool, fax_number: bool) -> list[dict[str, Any]]:
    """The plan's resources, then its certification Task: the delivery jobs."""
    items = resources(plan_pdf(), fax=REFERRER_FAX if fax_number else None)
    role = next(r for r in items if r["resourceType"] == "PractitionerRole")
    if email:
        role["telecom"] = [*role.get("telecom", []), {"system": "email", "value": PHYSICIAN_ADDRESS}]
    patient = next(r for r in items if r["resourceType"] == "Patient")
    patient["identifier"] = [{"system": "urn:oid:2.25.99", "value": "MRN-7"}]
    for resource in [*items[1:], items[0]]:
        response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text
    return list(client.get("/admin/api/jobs").json()["items"])


def fax_delivered(client: TestClient, fax: SandboxFaxServer, fax_id: str) -> None:
    """The vendor's status webhook: the fax went through (what the accepted fax job awaits)."""
    webhook = fax.status_webhook(fax_id, "delivered", url="http://testserver" + FAX_WEBHOOKS)
    answer = client.post(FAX_WEBHOOKS, content=webhook.body,
                         headers={"Content-Type": webhook.content_type, **webhook.headers})
    assert answer.status_code == 202, answer.text


def test_a_referrer_with_a_direct_address_gets_the_plan_by_direct(client: TestClient, settings: Settings,
                                                                  hisp: SandboxHisp, fax: SandboxFaxServer) -> None:
    connectors(client, hisp, fax)
    assert route(client)["fallback"] == ["vendor"]
    [job] = store(client, email=True, fax_number=True)
    assert job["connector"] == "hisp"
    deliver(settings, int(job["id"]))
    [received] = hisp.wait_for(1)
    assert received.rcpt_tos == (PHYSICIAN_ADDRESS,)
    assert client.get(f"/admin/api/jobs/{job['id']}").json()["status"] == "awaiting"  # the referrer's MDN
    assert fax.sent == []


def test_a_referrer_without_one_gets_it_by_fax(client: TestClient, settings: Settings, hisp: SandboxHisp,
                                               fax: SandboxFaxServer) -> None:
    connectors(client, hisp, fax)
    route(client)
    [job] = store(client, email=False, fax_number=True)
    assert job["connector"] == "vendor"
    deliver(settings, int(job["id"]))
    assert fax.wait_for_sends(1) and fax.sent[0].to == REFERRER_FAX
    assert hisp.received == []


def test_a_referrer_with_neither_is_dead_lettered_with_the_reason(client: TestClient, settings: Settings,
                                                                  hisp: SandboxHisp, fax: SandboxFaxServer) -> None:
    connectors(client, hisp, fax)
    route(client)
    [job] = store(client, email=False, fax_number=False)
    assert job["status"] == "dead"
    assert "no connector of the route's fallback chain can address" in job["last_error"]
    assert "hisp, vendor" in job["last_error"]
    message = client.get(f"/admin/api/messages/{job['message_id']}").json()
    assert message["status"] == "dead"
    assert [e["event"] for e in message["events"]][-1] == "dead-lettered"


def test_a_dead_letter_moves_on_to_the_next_connector(client: TestClient, settings: Settings, hisp: SandboxHisp,
                                                      fax: SandboxFaxServer) -> None:
    connectors(client, hisp, fax, password="not-the-password")  # the HISP refuses us: permanent
    route(client)
    [first] = store(client, email=True, fax_number=True)
    assert first["connector"] == "hisp"
    deliver(settings, int(first["id"]))
    jobs = {j["connector"]: j for j in client.get("/admin/api/jobs").json()["items"]}
    assert jobs["hisp"]["status"] == "dead" and jobs["vendor"]["status"] == "pending"
    assert jobs["vendor"]["replay_of"] == first["id"]
    deliver(settings, int(jobs["vendor"]["id"]))
    assert fax.wait_for_sends(1)
    assert client.get(f"/admin/api/jobs/{jobs['vendor']['id']}").json()["status"] == "awaiting"
    assert len(client.get("/admin/api/dead-letters").json()["items"]) == 1  # until the fax is confirmed
    bulk = client.post("/admin/api/replay", json={"all_dead_letters": True})  # its fax is under way: left out
    assert bulk.status_code == 200 and bulk.json()["replayed"] == [], bulk.text
    fax_delivered(client, fax, fax.sent[0].fax_id)
    assert client.get(f"/admin/api/jobs/{jobs['vendor']['id']}").json()["status"] == "succeeded"
    assert client.get("/admin/api/dead-letters").json()["items"] == []  # resolved by its fallback


def test_chains_are_validated_with_clear_errors(client: TestClient, hisp: SandboxHisp,
                                                fax: SandboxFaxServer) -> None:
    connectors(client, hisp, fax)
    client.put("/admin/api/connectors/emr", json={"name": "emr", "kind": "webhook", "config": {
        "url": "https://emr.example.org/hook", "secret": "a-shared-secret-of-16-chars"}})
    body = {"name": "r", "resource_type": "Task"}
    twice = client.post("/admin/api/routes", json={**body, "connector": "hisp", "fallback": ["vendor", "hisp"]})
    assert twice.status_code == 400 and "twice: hisp" in twice.text
    unknown = client.post("/admin/api/routes", json={**body, "connector": "hisp", "fallback": ["nope"]})
    assert unknown.status_code == 404 and "nope" in unknown.text
    blind = client.post("/admin/api/routes", json={**body, "connector": "emr", "fallback": ["vendor"]})
    assert blind.status_code == 400 and "'emr' (webhook) cannot say" in blind.text
    last = client.post("/admin/api/routes", json={**body, "connector": "hisp", "fallback": ["vendor", "emr"]})
    assert last.status_code == 201 and last.json()["fallback"] == ["vendor", "emr"]
    document = "routes:\n  - name: chain\n    resource_type: Task\n    connector: [hisp, vendor]\n"
    loaded = client.post("/admin/api/routes/import", content=document, headers={"Content-Type": "application/yaml"})
    assert loaded.status_code == 200, loaded.text
    chain = next(r for r in client.get("/admin/api/routes").json() if r["name"] == "chain")
    assert (chain["connector"], chain["fallback"]) == ("hisp", ["vendor"])
    bad = "routes:\n  - name: chain\n    resource_type: Task\n    connector: [emr, hisp]\n"
    refused = client.post("/admin/api/routes/import", content=bad, headers={"Content-Type": "application/yaml"})
    assert refused.status_code == 400 and "routes[0]:" in refused.text


def test_a_dead_letter_that_fell_back_is_not_sent_again_by_its_own_channel(
        client: TestClient, settings: Settings, hisp: SandboxHisp, fax: SandboxFaxServer) -> None:
    connectors(client, hisp, fax, password="not-the-password")
    route(client)
    [first] = store(client, email=True, fax_number=True)
    deliver(settings, int(first["id"]))
    fallback = next(j for j in client.get("/admin/api/jobs").json()["items"] if j["connector"] == "vendor")
    refused = client.post(f"/admin/api/jobs/{first['id']}/retry")
    assert refused.status_code == 409, refused.text
    assert f"fallback job {fallback['id']}" in refused.text
    deliver(settings, int(fallback["id"]))
    assert fax.wait_for_sends(1)
    assert client.post(f"/admin/api/jobs/{first['id']}/retry").status_code == 409  # faxed, awaiting its status
    refused = client.post(f"/admin/api/messages/{first['message_id']}/replay")
    assert refused.status_code == 409 and f"fallback job {fallback['id']} (awaiting)" in refused.text
    fax_delivered(client, fax, fax.sent[0].fax_id)
    assert client.post(f"/admin/api/jobs/{first['id']}/retry").status_code == 409  # delivered by fax
    replay = client.post(f"/admin/api/messages/{first['message_id']}/replay")
    assert replay.status_code == 201, replay.text
    assert [j["connector"] for j in replay.json()["jobs"]] == ["vendor"]  # by fax again only, not by Direct too
    assert client.get(f"/admin/api/jobs/{first['id']}").json()["status"] == "dead"


def test_a_dead_letter_whose_fallback_died_too_may_be_retried(
        client: TestClient, settings: Settings, hisp: SandboxHisp, fax: SandboxFaxServer) -> None:
    connectors(client, hisp, fax, fax_secret="not-the-secret", password="not-the-password")
    route(client)
    [first] = store(client, email=True, fax_number=True)
    deliver(settings, int(first["id"]))
    fallback = next(j for j in client.get("/admin/api/jobs").json()["items"] if j["connector"] == "vendor")
    deliver(settings, int(fallback["id"]))
    assert client.get(f"/admin/api/jobs/{fallback['id']}").json()["status"] == "dead"
    retried = client.post(f"/admin/api/jobs/{first['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
