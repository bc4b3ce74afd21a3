"""GET /metrics: Prometheus text from the store, for administrators (own tenant) or the scraper's
token (every tenant, plus this process's HTTP series); never patient data."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from hub.app import create_app
from hub.settings import Settings
from hub.sync.config import SyncConfig
from hub.sync.delivery import deliver
from hub.unit_of_work import unit_of_work
from sandboxes.webhook import SandboxReceiver
from tests.security.conftest import FHIR, add_client, bearer, get_token, secured

SCRAPER = "scraper-token-0123456789"
NAME = "Quetzalcoatl"  # a patient name no metric may carry


@pytest.fixture
def scraped(settings: Settings) -> Iterator[tuple[Settings, TestClient]]:
    configured = secured(settings, metrics_token=SecretStr(SCRAPER))
    with TestClient(create_app(configured), base_url="http://testserver") as api:
        yield configured, api


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return found[(name, tuple(sorted(labels.items())))]


def test_deliveries_backlog_and_dead_letters_per_connector(scraped: tuple[Settings, TestClient]) -> None:
    settings, api = scraped
    admin = add_client(settings, "default", "admin")
    other_admin = add_client(settings, "other-clinic", "admin")
    with SandboxReceiver(secret="s" * 32) as receiver:
        with unit_of_work(settings) as session:
            sync = SyncConfig(session, tenant="default", settings=settings)
            sync.add_connector(name="emr", kind="webhook", max_attempts=1,
                               config={"url": receiver.url + "/in", "secret": "s" * 32})
            sync.add_route(name="patients", resource_type="Patient", connector="emr")
        token = get_token(api, admin)
        for family in ("Ok", NAME):
            patient = {"resourceType": "Patient", "name": [{"family": family}]}
            assert api.post("/fhir/Patient", content=json.dumps(patient),
                            headers={**FHIR, **bearer(token)}).status_code == 201
        jobs = api.get("/admin/api/jobs", headers=bearer(token)).json()["items"]
        receiver.configure(fail_keys={jobs[0]["idempotency_key"]: 422})
        for job in jobs:
            deliver(settings, job["id"])

    scraper = api.get("/metrics", headers=bearer(SCRAPER))
    assert scraper.status_code == 200 and scraper.headers["content-type"].startswith("text/plain")
    assert NAME not in scraper.text
    found = samples(scraper.text)
    assert value(found, "therapy_hub_delivery_jobs", tenant="default", connector="emr", status="dead") == 1
    assert value(found, "therapy_hub_delivery_jobs", tenant="default", connector="emr", status="succeeded") == 1
    assert value(found, "therapy_hub_delivery_jobs", tenant="default", connector="emr", status="pending") == 0
    assert value(found, "therapy_hub_backlog_oldest_seconds", tenant="default", connector="emr") == 0
    assert value(found, "therapy_hub_connector_enabled", tenant="default", connector="emr", kind="webhook") == 1
    assert value(found, "therapy_hub_last_delivery_timestamp", tenant="default", connector="emr") > 0
    assert value(found, "therapy_hub_messages_24h", tenant="default", direction="inbound", status="dead") == 1
    assert value(found, "therapy_hub_http_requests_total", method="POST", route="/fhir/{resource_type}",
                 status="201") >= 2  # route templates, never ids

    # an administrator sees their own tenant only, and not the process-wide HTTP series
    own = api.get("/metrics", headers=bearer(token))
    assert own.status_code == 200 and "therapy_hub_delivery_jobs{" in own.text
    assert "therapy_hub_http_requests_total" not in own.text
    elsewhere = api.get("/metrics", headers=bearer(get_token(api, other_admin))).text
    assert 'connector="emr"' not in elsewhere


def test_only_the_scraper_token_or_an_administrator_may_read(scraped: tuple[Settings, TestClient]) -> None:
    settings, api = scraped
    clinic = add_client(settings, "default", "clinic")
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics", headers=bearer("not-the-token")).status_code == 401
    assert api.get("/metrics", headers=bearer(get_token(api, clinic))).status_code == 403


def test_dead_letters_outstanding_and_resolved_are_separate_series(scraped: tuple[Settings, TestClient]) -> None:
    settings, api = scraped
    admin = add_client(settings, "default", "admin")
    with SandboxReceiver(secret="s" * 32) as receiver:
        with unit_of_work(settings) as session:
            sync = SyncConfig(session, tenant="default", settings=settings)
            sync.add_connector(name="emr", kind="webhook", max_attempts=1,
                               config={"url": receiver.url + "/in", "secret": "s" * 32})
            sync.add_connector(name="idle", kind="webhook", config={"url": receiver.url + "/idle", "secret": "s" * 32})
            sync.add_route(name="patients", resource_type="Patient", connector="emr")
        token = get_token(api, admin)
        ids = []
        for family in ("Replayed", "Discarded", NAME):
            patient = {"resourceType": "Patient", "name": [{"family": family}],
                       "identifier": [{"system": "urn:mrn", "value": f"MRN-{family}"}]}
            created = api.post("/fhir/Patient", content=json.dumps(patient), headers={**FHIR, **bearer(token)})
            ids.append(created.json()["id"])
        replayed, discarded, outstanding = sorted(
            api.get("/admin/api/jobs", headers=bearer(token)).json()["items"], key=lambda j: j["id"])
        receiver.configure(status_override=422)
        for job in (replayed, discarded, outstanding):
            deliver(settings, job["id"])
        receiver.configure(status_override=None)
        replay = api.post(f"/admin/api/messages/{replayed['message_id']}/replay", headers=bearer(token)).json()
        assert deliver(settings, replay["jobs"][0]["id"]) is None
        assert api.post(f"/admin/api/jobs/{discarded['id']}/discard", json={"reason": "partner retired"},
                        headers=bearer(token)).status_code == 200

    text = api.get("/metrics", headers=bearer(SCRAPER)).text
    found = samples(text)
    assert value(found, "therapy_hub_dead_letters", tenant="default", connector="emr", state="outstanding") == 1
    assert value(found, "therapy_hub_dead_letters", tenant="default", connector="emr", state="resolved") == 2
    assert value(found, "therapy_hub_dead_letters", tenant="default", connector="idle", state="outstanding") == 0
    assert value(found, "therapy_hub_dead_letters", tenant="default", connector="idle", state="resolved") == 0
    assert value(found, "therapy_hub_delivery_jobs", tenant="default", connector="emr", status="dead") == 3
    labels = {v for (name, pairs) in found if name == "therapy_hub_dead_letters" for _, v in pairs}
    assert labels == {"default", "emr", "idle", "outstanding", "resolved"}  # no patient data in any label
    for secret in (NAME, "MRN-", *ids, *(j["message_id"] for j in (replayed, discarded, outstanding))):
        assert secret not in text
