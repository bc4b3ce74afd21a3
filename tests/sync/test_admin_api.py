"""The admin API (``/admin/api``) of the sync engine: messages, jobs, dead letters, retry and replay,
connectors with health, routes. Deliveries are attempted in process (``deliver``) against the real
sandbox receiver; no worker runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from hub.kit import utcnow
from hub.settings import Settings
from hub.sync.delivery import deliver
from sandboxes.webhook import SandboxReceiver
from tests.sync.conftest import SECRET, queued_tasks

ADMIN = "/admin/api"


class Recorder:
    """Every admin response of a test, to check that no secret ever leaves the hub."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.bodies: list[str] = []

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.client, method)

        def record(*args: Any, **kwargs: Any) -> httpx.Response:
            response = call(*args, **kwargs)
            self.bodies.append(response.text)
            return response

        return record


@pytest.fixture
def api(client: TestClient) -> Iterator[Recorder]:
    recorder = Recorder(client)
    yield recorder
    leaks = [body[:200] for body in recorder.bodies if SECRET in body]
    assert not leaks, f"a connector secret left the hub: {leaks}"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an error is a JSON problem document carrying its status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["issues"]
    return body


def put_webhook(api: Recorder, name: str, url: str, **options: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "kind": "webhook",
        "config": {"url": url, "secret": SECRET},
        "max_attempts": 3,
        "timeout_seconds": 2.0,
        "backoff_base_seconds": 1.0,
        "backoff_max_seconds": 60.0,
        **options,
    }
    response = api.put(f"{ADMIN}/connectors/{name}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def post_route(
    api: Recorder, name: str, resource_type: str, connector: str, **options: Any
) -> dict[str, Any]:
    response = api.post(
        f"{ADMIN}/routes",
        json={"name": name, "resource_type": resource_type, "connector": connector, **options},
    )
    assert response.status_code == 201, response.text
    return response.json()


def create(
    api: Recorder,
    resource_type: str = "ServiceRequest",
    patient: str = "p1",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    resource = {
        "resourceType": resource_type,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }
    if resource_type == "Observation":
        resource = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "ROM"},
            "subject": {"reference": f"Patient/{patient}"},
        }
    response = api.post(
        f"/fhir/{resource_type}",
        content=json.dumps(resource),
        headers={"Content-Type": "application/fhir+json", **(headers or {})},
    )
    assert response.status_code == 201, response.text
    return response.json()


def jobs(api: Recorder, **params: Any) -> list[dict[str, Any]]:
    response = api.get(f"{ADMIN}/jobs", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def messages(api: Recorder, **params: Any) -> dict[str, Any]:
    response = api.get(f"{ADMIN}/messages", params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def emr(api: Recorder, receiver: SandboxReceiver) -> str:
    put_webhook(api, "emr", receiver.url + "/webhook")
    post_route(api, "referrals", "ServiceRequest", "emr")
    return "emr"


def dead_job(
    api: Recorder, settings: Settings, receiver: SandboxReceiver, patient: str = "p1", status: int = 422
) -> dict[str, Any]:
    create(api, patient=patient)
    job = jobs(api)[0]
    receiver.configure(fail_keys={**receiver.controls.fail_keys, job["idempotency_key"]: status})
    assert deliver(settings, job["id"]) is None
    return next(j for j in jobs(api) if j["id"] == job["id"])


# ---------------------------------------------------------------- messages


def test_message_list_filters(api: Recorder, settings: Settings, receiver: SandboxReceiver, emr: str) -> None:
    put_webhook(api, "archive", receiver.url + "/archive")
    post_route(api, "observations", "Observation", "archive")
    create(api, patient="p1", headers={"X-Correlation-ID": "corr-one"})
    create(api, patient="p2")
    create(api, "Observation", patient="p3")
    delivered = next(j for j in jobs(api, connector="emr"))
    assert deliver(settings, delivered["id"]) is None

    assert messages(api)["total"] == 3
    [one] = messages(api, correlation_id="corr-one")["items"]
    assert one["correlation_id"] == "corr-one" and one["resource"].startswith("ServiceRequest/")
    assert messages(api, correlation_id="nobody")["total"] == 0
    assert [m["id"] for m in messages(api, status="delivered")["items"]] == [delivered["message_id"]]
    assert messages(api, status="queued")["total"] == 2
    assert messages(api, connector="emr")["total"] == 2
    [observation] = messages(api, connector="archive")["items"]
    assert observation["resource"].startswith("Observation/")
    assert messages(api, resource_type="Observation")["items"] == [observation]
    assert messages(api, resource_type="ServiceRequest")["total"] == 2

    now = utcnow()
    assert messages(api, since=(now - timedelta(minutes=5)).isoformat() + "Z")["total"] == 3
    assert messages(api, since=(now + timedelta(minutes=5)).isoformat() + "Z")["total"] == 0
    assert messages(api, until=(now - timedelta(minutes=5)).isoformat() + "Z")["total"] == 0
    assert messages(api, until=(now + timedelta(minutes=5)).isoformat() + "+00:00")["total"] == 3
    page = messages(api, limit=2, offset=0)
    assert page["total"] == 3 and len(page["items"]) == 2
    assert len(messages(api, limit=2, offset=2)["items"]) == 1

    problem(api.get(f"{ADMIN}/messages", params={"status": "bogus"}), 400)
    problem(api.get(f"{ADMIN}/messages", params={"connector": "nope"}), 404)
    problem(api.get(f"{ADMIN}/messages", params={"since": "yesterday"}), 400)
    problem(api.get(f"{ADMIN}/messages", params={"limit": 0}), 400)


def test_message_detail_explains_why_a_job_is_queued(
    api: Recorder, settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    created = create(api)
    [message] = messages(api)["items"]
    detail = api.get(f"{ADMIN}/messages/{message['id']}").json()
    assert detail["resource"] == f"ServiceRequest/{created['id']}" and detail["has_payload"] is True
    assert [e["event"] for e in detail["events"]] == ["received", "translated", "routed", "queued"]
    [job] = detail["jobs"]
    assert job["status"] == "pending" and job["connector"] == "emr"
    assert job["queued_because"] == "waiting for its first attempt" and job["next_attempt_at"].endswith("Z")

    receiver.configure(status_override=503)
    deliver(settings, job["id"])
    detail = api.get(f"{ADMIN}/messages/{message['id']}").json()
    [job] = detail["jobs"]
    assert detail["status"] == "retrying" and job["status"] == "retrying" and job["attempts"] == 1
    assert job["queued_because"].startswith("retry after:") and "503" in job["queued_because"]
    assert job["next_attempt_at"] > utcnow().isoformat()
    failed = detail["events"][-1]
    assert failed["event"] == "failed" and failed["attempt"] == 1 and failed["job_id"] == job["id"]
    assert api.get(f"{ADMIN}/jobs/{job['id']}").json()["queued_because"] == job["queued_because"]

    receiver.configure(status_override=None)
    api.post(f"{ADMIN}/jobs/{job['id']}/retry")
    assert deliver(settings, job["id"]) is None
    detail = api.get(f"{ADMIN}/messages/{message['id']}").json()
    assert detail["status"] == "delivered"
    assert "queued_because" not in detail["jobs"][0] and "next_attempt_at" not in detail["jobs"][0]
    assert [e["event"] for e in detail["events"]][-2:] == ["sent", "acknowledged"]

    problem(api.get(f"{ADMIN}/messages/no-such-message"), 404)
    problem(api.get(f"{ADMIN}/jobs/424242"), 404)


def test_jobs_and_dead_letters(
    api: Recorder, settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    dead = dead_job(api, settings, receiver, "p1")
    create(api, patient="p2")
    assert [j["status"] for j in jobs(api)] == ["pending", "dead"]  # newest first
    assert [j["id"] for j in jobs(api, status="dead")] == [dead["id"]]
    assert jobs(api, status="succeeded") == []
    assert len(jobs(api, connector="emr")) == 2
    letters = api.get(f"{ADMIN}/dead-letters").json()
    assert letters["total"] == 1 and letters["items"][0]["id"] == dead["id"]
    assert "422" in letters["items"][0]["last_error"] and letters["items"][0]["finished_at"]
    assert api.get(f"{ADMIN}/dead-letters", params={"connector": "emr"}).json()["total"] == 1
    problem(api.get(f"{ADMIN}/jobs", params={"status": "bogus"}), 400)
    problem(api.get(f"{ADMIN}/dead-letters", params={"connector": "nope"}), 404)


# ---------------------------------------------------------------- retry and replay


def test_retry_endpoint(api: Recorder, settings: Settings, receiver: SandboxReceiver, emr: str) -> None:
    dead = dead_job(api, settings, receiver)
    receiver.configure(fail_keys={})
    published = len(queued_tasks(settings))
    response = api.post(f"{ADMIN}/jobs/{dead['id']}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending" and response.json()["id"] == dead["id"]
    assert [t["job_id"] for t in queued_tasks(settings)[published:]] == [dead["id"]]  # published after commit
    assert deliver(settings, dead["id"]) is None
    assert receiver.deliveries[-1].idempotency_key == dead["idempotency_key"]
    body = problem(api.post(f"{ADMIN}/jobs/{dead['id']}/retry"), 409)
    assert "succeeded" in body["title"]
    problem(api.post(f"{ADMIN}/jobs/999999/retry"), 404)


def test_replay_endpoints(api: Recorder, settings: Settings, receiver: SandboxReceiver) -> None:
    put_webhook(api, "emr", receiver.url + "/emr")
    put_webhook(api, "hep", receiver.url + "/hep")
    post_route(api, "to-emr", "ServiceRequest", "emr")
    post_route(api, "to-hep", "ServiceRequest", "hep")
    for patient in ("p1", "p2", "p3"):
        create(api, patient=patient)
    all_jobs = sorted(jobs(api), key=lambda j: j["id"])
    # p1: emr dead; p2: hep dead; p3: both delivered
    doomed = {all_jobs[0]["idempotency_key"]: 400, all_jobs[3]["idempotency_key"]: 400}
    receiver.configure(fail_keys=doomed)
    for job in all_jobs:
        deliver(settings, job["id"])
    statuses = {(j["message_id"], j["connector"]): j["status"] for j in jobs(api)}
    m1, m2, m3 = (all_jobs[i]["message_id"] for i in (0, 2, 4))
    assert statuses[(m1, "emr")] == statuses[(m2, "hep")] == "dead"
    receiver.configure(fail_keys={})

    response = api.post(f"{ADMIN}/messages/{m3}/replay")  # a single message: to all its connectors
    assert response.status_code == 201, response.text
    replay = response.json()
    assert replay["replay_of"] == m3 and replay["status"] == "queued"
    assert sorted(j["connector"] for j in replay["jobs"]) == ["emr", "hep"]
    assert all(j["replay_of"] is not None for j in replay["jobs"])
    assert {t["job_id"] for t in queued_tasks(settings)} >= {j["id"] for j in replay["jobs"]}
    original = api.get(f"{ADMIN}/messages/{m3}").json()
    assert original["status"] == "delivered" and original["events"][-1]["event"] == "replayed"

    response = api.post(f"{ADMIN}/replay", json={"dead_letters_of": "hep"})
    assert response.status_code == 200, response.text
    [pair] = response.json()["replayed"]
    assert pair["replay_of"] == m2
    assert [j["connector"] for j in api.get(f"{ADMIN}/messages/{pair['id']}").json()["jobs"]] == ["hep"]

    response = api.post(f"{ADMIN}/replay", json={"all_dead_letters": True})
    assert [p["replay_of"] for p in response.json()["replayed"]] == [m1]  # hep's was replayed already
    assert api.post(f"{ADMIN}/replay", json={"all_dead_letters": True}).json()["replayed"] == []

    response = api.post(f"{ADMIN}/replay", json={"message_ids": [m1, m3]})
    assert [p["replay_of"] for p in response.json()["replayed"]] == [m1, m3]
    replayed = [m for m in messages(api, limit=500)["items"] if m["replay_of"]]
    assert len(replayed) == 5
    dead = api.get(f"{ADMIN}/messages/{m1}").json()
    assert dead["status"] == "dead" and "400" in dead["error"]  # the original keeps its error

    problem(api.post(f"{ADMIN}/replay", json={}), 400)
    problem(api.post(f"{ADMIN}/replay", json={"dead_letters_of": "nope"}), 404)
    problem(api.post(f"{ADMIN}/replay", json={"message_ids": ["nope"]}), 404)
    problem(api.post(f"{ADMIN}/messages/nope/replay"), 404)


# ---------------------------------------------------------------- connectors


def test_connectors_health_and_secrets(
    api: Recorder, settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    [fresh] = api.get(f"{ADMIN}/connectors").json()
    assert fresh["name"] == "emr" and fresh["kind"] == "webhook" and fresh["enabled"] is True
    assert fresh["health"]["backlog"] == 0 and fresh["health"]["dead_letters"] == 0
    assert fresh["health"]["last_success"] is None and fresh["health"]["error_rate_1h"] is None
    assert "config" not in fresh

    create(api, patient="p1")
    ok = jobs(api)[0]
    assert deliver(settings, ok["id"]) is None
    dead_job(api, settings, receiver, "p2", status=400)
    create(api, patient="p3")  # waiting
    health = api.get(f"{ADMIN}/connectors/emr").json()["health"]
    assert health["backlog"] == 1 and health["dead_letters"] == 1
    assert health["last_success"] is not None and health["last_success"].endswith("Z")
    assert "400" in health["last_error"] and health["last_error_at"] >= health["last_success"]
    assert health["attempts_1h"] == 2 and health["error_rate_1h"] == 0.5  # one success, one failure
    assert health["error_rate_24h"] == 0.5

    for body in api.bodies:
        assert SECRET not in body
    problem(api.get(f"{ADMIN}/connectors/nope"), 404)


def test_put_connector_validates_and_never_echoes_secrets(api: Recorder, receiver: SandboxReceiver) -> None:
    created = put_webhook(api, "emr", receiver.url + "/webhook", max_attempts=4)
    assert created["max_attempts"] == 4 and created["health"]["backlog"] == 0
    replaced = put_webhook(api, "emr", receiver.url + "/other", max_attempts=6, enabled=False)
    assert replaced["max_attempts"] == 6 and replaced["enabled"] is False
    assert [c["name"] for c in api.get(f"{ADMIN}/connectors").json()] == ["emr"]

    short_secret = "tiny-secret"
    response = api.put(
        f"{ADMIN}/connectors/emr",
        json={"name": "emr", "kind": "webhook", "config": {"url": receiver.url, "secret": short_secret}},
    )
    body = problem(response, 400)
    assert "secret" in json.dumps(body) and short_secret not in response.text
    problem(api.put(f"{ADMIN}/connectors/emr", json={"name": "other", "kind": "webhook", "config": {}}), 400)
    problem(
        api.put(f"{ADMIN}/connectors/emr", json={"name": "emr", "kind": "no-such-kind", "config": {}}), 400
    )
    problem(
        api.put(
            f"{ADMIN}/connectors/emr",
            json={
                "name": "emr",
                "kind": "webhook",
                "max_attempts": 0,
                "config": {"url": receiver.url, "secret": SECRET},
            },
        ),
        400,
    )
    for text in api.bodies:
        assert SECRET not in text


def test_connector_test_endpoint(api: Recorder, receiver: SandboxReceiver) -> None:
    put_webhook(api, "live", receiver.url + "/webhook")
    with SandboxReceiver(secret=SECRET) as gone:
        dead_url = gone.url + "/webhook"
    put_webhook(api, "dead", dead_url, timeout_seconds=1.0)

    live = api.post(f"{ADMIN}/connectors/live/test")
    assert live.status_code == 200 and live.json()["ok"] is True and live.json()["name"] == "live"
    assert live.json()["detail"].endswith("-> 200") and live.json()["duration_ms"] > 0
    receiver.configure(status_override=503)
    failing = api.post(f"{ADMIN}/connectors/live/test").json()
    assert failing["ok"] is False and failing["detail"].endswith("-> 503")
    dead = api.post(f"{ADMIN}/connectors/dead/test")
    assert dead.status_code == 200 and dead.json()["ok"] is False and dead.json()["detail"]
    problem(api.post(f"{ADMIN}/connectors/nope/test"), 404)
    for text in api.bodies:
        assert SECRET not in text


# ---------------------------------------------------------------- routes


def test_routes_crud(api: Recorder, receiver: SandboxReceiver) -> None:
    put_webhook(api, "emr", receiver.url + "/emr")
    put_webhook(api, "fax", receiver.url + "/fax")
    route = post_route(
        api, "referrals", "ServiceRequest", "emr", interactions=["create"], filter="status = 'active'"
    )
    assert route["interactions"] == ["create"] and route["connector"] == "emr" and route["enabled"] is True
    other = post_route(api, "plans", "CarePlan", "fax")

    problem(
        api.post(
            f"{ADMIN}/routes", json={"name": "referrals", "resource_type": "Patient", "connector": "emr"}
        ),
        409,
    )
    problem(
        api.post(f"{ADMIN}/routes", json={"name": "x", "resource_type": "Patient", "connector": "nope"}), 404
    )
    problem(
        api.post(
            f"{ADMIN}/routes",
            json={"name": "x", "resource_type": "Patient", "connector": "emr", "interactions": ["read"]},
        ),
        400,
    )
    problem(
        api.post(
            f"{ADMIN}/routes",
            json={
                "name": "x",
                "resource_type": "Patient",
                "connector": "emr",
                "filter": "status = = 'active'",
            },
        ),
        400,
    )
    problem(api.post(f"{ADMIN}/routes", json={"resource_type": "Patient", "connector": "emr"}), 400)

    assert api.get(f"{ADMIN}/routes/{route['id']}").json() == route
    assert [r["name"] for r in api.get(f"{ADMIN}/routes").json()] == ["plans", "referrals"]

    response = api.put(
        f"{ADMIN}/routes/{route['id']}",
        json={
            "name": "referrals",
            "resource_type": "ServiceRequest",
            "connector": "fax",
            "interactions": ["*"],
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {**route, "connector": "fax", "interactions": ["*"], "filter": None}
    response = api.put(
        f"{ADMIN}/routes/{route['id']}",
        json={"name": "all-referrals", "resource_type": "ServiceRequest", "connector": "fax"},
    )
    assert response.status_code == 200, response.text
    renamed = response.json()
    assert renamed["name"] == "all-referrals" and renamed["id"] == route["id"]  # same route, new name
    problem(
        api.put(
            f"{ADMIN}/routes/{route['id']}",
            json={  # the name of another route
                "name": "plans",
                "resource_type": "ServiceRequest",
                "connector": "fax",
            },
        ),
        409,
    )
    assert api.get(f"{ADMIN}/routes/{other['id']}").json() == other
    problem(
        api.put(
            f"{ADMIN}/routes/999999",
            json={"name": "x", "resource_type": "ServiceRequest", "connector": "fax"},
        ),
        404,
    )

    response = api.delete(f"{ADMIN}/routes/{route['id']}")
    assert response.status_code == 204 and response.content == b""
    problem(api.get(f"{ADMIN}/routes/{route['id']}"), 404)
    problem(api.delete(f"{ADMIN}/routes/{route['id']}"), 404)
    assert [r["name"] for r in api.get(f"{ADMIN}/routes").json()] == ["plans"]


ROUTES_YAML = f"""
connectors:
  - name: emr
    kind: webhook
    max_attempts: 5
    config:
      url: URL
      secret: {SECRET}
routes:
  - name: referrals
    resource_type: ServiceRequest
    connector: emr
    interactions: [create, update]
    filter: "status = 'active'"
  - name: patients
    resource_type: Patient
    connector: emr
"""


def test_routes_import_from_yaml(api: Recorder, settings: Settings, receiver: SandboxReceiver) -> None:
    document = ROUTES_YAML.replace("URL", receiver.url + "/webhook")
    response = api.post(
        f"{ADMIN}/routes/import", content=document, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"connectors": 1, "routes": 2}
    again = api.post(f"{ADMIN}/routes/import", content=document, headers={"Content-Type": "application/yaml"})
    assert again.json() == {"connectors": 1, "routes": 2}  # an upsert by name
    routes = {r["name"]: r for r in api.get(f"{ADMIN}/routes").json()}
    assert set(routes) == {"referrals", "patients"} and routes["referrals"]["filter"] == "status = 'active'"
    assert api.get(f"{ADMIN}/connectors/emr").json()["max_attempts"] == 5

    create(api)  # the imported route works
    [job] = jobs(api)
    assert deliver(settings, job["id"]) is None and len(receiver.deliveries) == 1

    def post(body: str) -> httpx.Response:
        return api.post(f"{ADMIN}/routes/import", content=body, headers={"Content-Type": "application/yaml"})

    problem(post("routes: [unclosed"), 400)
    problem(post("- just\n- a list\n"), 400)
    problem(post("routes:\n  - name: incomplete\n"), 400)
    problem(post("routes:\n  - {name: r, resource_type: Patient, connector: nope}\n"), 404)
    problem(post("routes:\n  - {name: r, resource_type: Patient, connector: emr, filter: 'a = = b'}\n"), 400)
    assert set(r["name"] for r in api.get(f"{ADMIN}/routes").json()) == {"referrals", "patients"}
    for text in api.bodies:
        assert SECRET not in text
