"""The sync engine end to end, with real workers, on the embedded broker and on Redis."""

from __future__ import annotations

import json
import time

import pytest

from connectors.webhook.signing import verify_signature
from sandboxes.webhook import SandboxReceiver
from tests.brokers import private_redis
from tests.sync.conftest import SECRET, Stack, _build, wait_until


def test_referral_reaches_the_receiver_once_with_every_event(stack: Stack, receiver: SandboxReceiver) -> None:
    stack.add_webhook("clinic-emr", receiver.url + "/webhook")
    stack.add_route("referrals-to-emr", "ServiceRequest", "clinic-emr")
    created = stack.create_referral()
    stack.start_worker()
    wait_until(lambda: receiver.deliveries, 30, "the delivery")
    wait_until(stack.all_jobs_finished, 15, "the job to finish")

    deliveries = receiver.deliveries
    assert len(deliveries) == 1 and receiver.duplicates == 0
    delivery = deliveries[0]
    assert delivery.signature_valid
    assert verify_signature(SECRET, delivery.headers["x-hub-timestamp"], delivery.body,
                            delivery.headers["x-hub-signature-256"],
                            idempotency_key=delivery.headers["idempotency-key"])
    assert json.loads(delivery.body)["id"] == created["id"]
    assert delivery.event == "ServiceRequest.create"

    [message] = stack.client.get("/admin/api/messages").json()["items"]
    assert message["status"] == "delivered"
    detail = stack.client.get(f"/admin/api/messages/{message['id']}").json()
    events = [e["event"] for e in detail["events"]]
    assert events == ["received", "translated", "routed", "queued", "sent", "acknowledged"]
    assert detail["jobs"][0]["idempotency_key"] == delivery.idempotency_key
    assert detail["correlation_id"] == delivery.correlation_id
    sent = next(e for e in detail["events"] if e["event"] == "sent")
    assert sent["duration_ms"] is not None and sent["attempt"] == 1


def test_kill_9_of_the_worker_loses_nothing_and_duplicates_nothing(stack: Stack, receiver: SandboxReceiver) -> None:
    receiver.configure(hang_rate=0.3, hang_seconds=0.8, seed=7)
    stack.add_webhook("clinic-emr", receiver.url + "/webhook", timeout_seconds=2.0)
    stack.add_route("referrals-to-emr", "ServiceRequest", "clinic-emr")
    total = 40
    for i in range(total):
        stack.create_referral(patient=f"p{i % 7}")
    worker = stack.start_worker(concurrency=4)
    wait_until(lambda: len(receiver.deliveries) >= 5, 60, "the first deliveries")
    stack.kill_worker(worker)  # SIGKILL to the whole process group: in-flight tasks die with it
    in_flight = [j for j in stack.jobs() if j["status"] in ("running", "pending", "retrying")]
    assert in_flight, "the kill should leave work behind"
    receiver.configure(hang_rate=0.0)
    stack.start_worker(concurrency=4)
    wait_until(lambda: len(receiver.deliveries) >= total, 90, "every delivery after the restart")
    wait_until(stack.all_jobs_finished, 30, "every job to finish")

    keys = [d.idempotency_key for d in receiver.deliveries]
    assert len(keys) == total and len(set(keys)) == total  # each message accepted exactly once
    assert all(j["status"] == "succeeded" for j in stack.jobs())


def test_flushall_of_redis_mid_run_is_recovered_by_the_sweeper(
    tmp_path, receiver: SandboxReceiver, postgres_admin_url: str
) -> None:
    from tests.pg import fresh_database

    with private_redis() as redis_url, fresh_database(postgres_admin_url) as db:
        for stack in _build("redis-private", db, redis_url, tmp_path):
            import redis

            stack.add_webhook("clinic-emr", receiver.url + "/webhook")
            stack.add_route("referrals-to-emr", "ServiceRequest", "clinic-emr")
            total = 30
            for i in range(total):
                stack.create_referral(patient=f"p{i}")
            assert redis.Redis.from_url(redis_url).flushall()  # every queued task is gone
            stack.start_worker()
            wait_until(lambda: len(receiver.deliveries) >= 30, 60, "the sweeper to recover every job")
            wait_until(stack.all_jobs_finished, 30, "every job to finish")
            assert len({d.idempotency_key for d in receiver.deliveries}) == total
            assert receiver.duplicates == 0 or all(j["status"] == "succeeded" for j in stack.jobs())


def test_flaky_receiver_everything_arrives_and_a_dead_letter_is_replayed(
    stack: Stack, receiver: SandboxReceiver
) -> None:
    # 20 attempts: a healthy message fails them all with probability 0.55**20 (about 1e-5)
    stack.add_webhook("clinic-emr", receiver.url + "/webhook", max_attempts=20, timeout_seconds=0.5,
                      backoff_base_seconds=0.05, backoff_max_seconds=0.3)
    stack.add_route("referrals-to-emr", "ServiceRequest", "clinic-emr")
    total = 20
    for i in range(total):
        stack.create_referral(patient=f"p{i}")
    doomed = stack.jobs()[0]  # newest job: its key always fails, transiently, until we fix the receiver
    receiver.configure(fail_rate=0.5, hang_rate=0.05, hang_seconds=1.0, seed=3,
                       fail_keys={doomed["idempotency_key"]: 503})
    stack.start_worker(concurrency=4)
    wait_until(stack.all_jobs_finished, 120, "every job to succeed or die")

    jobs = {j["id"]: j for j in stack.jobs()}
    dead = [j for j in jobs.values() if j["status"] == "dead"]
    assert [j["id"] for j in dead] == [doomed["id"]]
    assert dead[0]["attempts"] == 20 and "503" in dead[0]["last_error"]
    assert len({d.idempotency_key for d in receiver.deliveries}) == total - 1
    retried = [j for j in jobs.values() if j["status"] == "succeeded" and j["attempts"] > 1]
    assert retried, "with half the requests failing, some jobs needed several attempts"
    detail = stack.client.get(f"/admin/api/messages/{retried[0]['message_id']}").json()
    failures = [e for e in detail["events"] if e["event"] == "failed"]
    assert failures and all("retry" in e["detail"] for e in failures)
    dead_detail = stack.client.get(f"/admin/api/messages/{doomed['message_id']}").json()
    assert dead_detail["status"] == "dead"
    assert [e["event"] for e in dead_detail["events"]][-1] == "dead-lettered"
    assert stack.client.get("/admin/api/dead-letters").json()["total"] == 1

    receiver.configure(fail_rate=0.0, hang_rate=0.0, fail_keys={})
    result = stack.cli("replay", doomed["message_id"])
    assert result.returncode == 0, result.stderr
    assert "1 message(s) queued" in result.stdout
    wait_until(lambda: len({d.idempotency_key for d in receiver.deliveries}) == total, 30, "the replay")
    replays = [m for m in stack.client.get("/admin/api/messages").json()["items"] if m["replay_of"]]
    assert len(replays) == 1 and replays[0]["replay_of"] == doomed["message_id"]
    wait_until(lambda: stack.client.get(f"/admin/api/messages/{replays[0]['id']}").json()["status"] == "delivered",
               15, "the replay to be delivered")
    original = stack.client.get(f"/admin/api/messages/{doomed['message_id']}").json()
    assert original["status"] == "dead" and "503" in original["error"]  # the original keeps its errors


def test_malformed_payload_is_kept_and_does_not_block_the_rest(stack: Stack, receiver: SandboxReceiver) -> None:
    stack.add_webhook("clinic-emr", receiver.url + "/webhook")
    stack.add_route("referrals-to-emr", "ServiceRequest", "clinic-emr")
    stack.create_referral(patient="p1")
    bad = stack.client.post("/fhir/ServiceRequest", content=b'{"resourceType": "ServiceRequest", "status": "bogus"}',
                            headers={"Content-Type": "application/fhir+json"})
    assert bad.status_code == 400
    broken = stack.client.post("/fhir/ServiceRequest", content=b'{"resourceType": "ServiceReq',
                               headers={"Content-Type": "application/fhir+json"})
    assert broken.status_code == 400
    stack.create_referral(patient="p2")
    stack.start_worker()
    wait_until(lambda: len(receiver.deliveries) >= 2, 30, "the valid messages")

    rejected = stack.client.get("/admin/api/messages", params={"status": "rejected"}).json()["items"]
    assert len(rejected) == 2
    reasons = " ".join(m["error"] for m in rejected)
    assert "ServiceRequest.status" in reasons and "JSON" in reasons
    assert all(m["has_payload"] for m in rejected)
    time.sleep(0.5)
    assert len(receiver.deliveries) == 2


@pytest.mark.parametrize("n", [6])
def test_order_is_kept_per_patient_without_blocking_other_patients(stack: Stack, receiver: SandboxReceiver,
                                                                   n: int) -> None:
    stack.add_webhook("clinic-emr", receiver.url + "/webhook", backoff_base_seconds=0.3)
    stack.add_route("referrals-to-emr", "ServiceRequest", "clinic-emr")
    first = stack.create_referral(patient="slow")
    for _ in range(n - 1):
        stack.create_referral(patient="slow")
    others = [stack.create_referral(patient=f"other{i}") for i in range(3)]
    first_job = max(stack.jobs(), key=lambda j: -j["id"])  # the oldest job is the first referral
    receiver.configure(fail_keys={first_job["idempotency_key"]: 503})
    stack.start_worker(concurrency=4)
    # the other patients' messages go through while "slow"'s first message keeps failing
    wait_until(lambda: len(receiver.deliveries) >= len(others), 30, "other patients' messages")
    assert all(json.loads(d.body)["subject"]["reference"] != "Patient/slow" for d in receiver.deliveries)
    receiver.configure(fail_keys={})
    wait_until(lambda: len(receiver.deliveries) >= n + len(others), 60, "the slow patient's messages")
    slow = [json.loads(d.body)["id"] for d in receiver.deliveries
            if json.loads(d.body)["subject"]["reference"] == "Patient/slow"]
    assert slow[0] == first["id"]
    created_order = [j["message_id"] for j in sorted(stack.jobs(), key=lambda j: j["id"])]
    assert len(created_order) == n + len(others)
    delivered_jobs = {d.idempotency_key for d in receiver.deliveries}
    assert len(delivered_jobs) == n + len(others)
    keys_in_order = [d.idempotency_key for d in receiver.deliveries
                     if json.loads(d.body)["subject"]["reference"] == "Patient/slow"]
    job_of_key = {j["idempotency_key"]: j["id"] for j in stack.jobs()}
    assert keys_in_order == sorted(keys_in_order, key=lambda k: job_of_key[k])
