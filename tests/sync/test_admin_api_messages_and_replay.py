"""The admin API (``/admin/api``) of the sync engine: messages, jobs, dead letters, retry and replay.
Deliveries are attempted in process (``deliver``) against the real sandbox receiver; no worker runs."""

from __future__ import annotations

from datetime import timedelta

from hub.kit import utcnow
from hub.settings import Settings
from hub.sync.delivery import deliver
from sandboxes.webhook import SandboxReceiver
from tests.sync.admin_api_support import (
    ADMIN,
    Recorder,
    create,
    dead_job,
    jobs,
    messages,
    post_route,
    problem,
    put_webhook,
)
from tests.sync.admin_api_support import api as api  # noqa: F401  (fixture)
from tests.sync.admin_api_support import emr as emr  # noqa: F401  (fixture)
from tests.sync.conftest import queued_tasks

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
