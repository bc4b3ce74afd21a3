"""A fault run with real workers: the partner accepts a delivery, the worker is killed before it
records that, the job dead-letters, and the bulk replay must neither deliver it twice at a partner
that dedupes on ``Idempotency-Key`` nor let a later version be overtaken."""

from __future__ import annotations

import json

from sandboxes.webhook import SandboxReceiver
from tests.sync.conftest import Stack, wait_until


def test_kill_after_acceptance_then_dead_letter_and_bulk_replay_delivers_each_version_once_in_order(
    stack: Stack, receiver: SandboxReceiver
) -> None:
    stack.add_webhook("clinic-emr", receiver.url + "/webhook", max_attempts=2, timeout_seconds=3.0,
                      backoff_base_seconds=0.2, backoff_max_seconds=0.5)
    stack.add_route("referrals-to-emr", "ServiceRequest", "clinic-emr")
    v1 = stack.create_referral(patient="p1")
    [first] = stack.jobs()
    # the partner takes v1 but holds its answer: the worker is killed while it waits for it
    receiver.configure(accept_then_hang_keys=[first["idempotency_key"]], hang_seconds=30)
    response = stack.client.put(f"/fhir/ServiceRequest/{v1['id']}", content=json.dumps({**v1, "status": "on-hold"}),
                                headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    second = stack.jobs()[0]
    worker = stack.start_worker(concurrency=2, loglevel="INFO")
    wait_until(lambda: receiver.deliveries, 30, "the partner to accept v1")
    receiver.configure(accept_then_hang_keys=[], fail_keys={first["idempotency_key"]: 503})  # from now on v1 fails
    stack.kill_worker(worker)
    assert stack.client.get(f"/admin/api/jobs/{first['id']}").json()["status"] == "running"  # never recorded

    stack.start_worker(concurrency=2, loglevel="INFO")  # its sweeper finds the lost attempt after the lease
    wait_until(lambda: stack.client.get(f"/admin/api/jobs/{first['id']}").json()["status"] == "dead", 40,
               "v1 to be dead-lettered")
    wait_until(lambda: stack.client.get(f"/admin/api/jobs/{second['id']}").json().get("held_by") == first["id"], 20,
               "v2 to be held behind the dead letter")
    assert [d.idempotency_key for d in receiver.deliveries] == [first["idempotency_key"]]  # v2 did not overtake

    receiver.configure(fail_keys={})
    response = stack.client.post("/admin/api/replay", json={"all_dead_letters": True})
    assert response.status_code == 200 and len(response.json()["replayed"]) == 1, response.text
    wait_until(lambda: len(stack.jobs()) == 3 and stack.all_jobs_finished(), 30, "the replay and v2")

    accepted = [(d.idempotency_key, json.loads(d.body)["meta"]["versionId"]) for d in receiver.deliveries]
    assert accepted == [(first["idempotency_key"], "1"), (second["idempotency_key"], "2")]  # once each, in order
    assert receiver.duplicate_keys == {first["idempotency_key"]: 1}  # the replay, deduped by the partner
    assert json.loads(receiver.deliveries[-1].body)["status"] == "on-hold"  # the partner ends on the latest
    replay = stack.jobs()[0]
    assert (replay["replay_of"], replay["status"]) == (first["id"], "succeeded")
    assert stack.client.get("/admin/api/dead-letters").json()["total"] == 0
    [resolved] = stack.client.get("/admin/api/dead-letters", params={"state": "resolved"}).json()["items"]
    assert (resolved["id"], resolved["resolved_by"]) == (first["id"], replay["id"])
    health = stack.client.get("/admin/api/connectors/clinic-emr").json()["health"]
    assert (health["dead_letters"], health["dead_letters_resolved"]) == (0, 1)

    log = (stack.workdir / "worker-1.log").read_text(errors="replace")
    assert f"hub.delivery.attempt job_id={first['id']}" in log and "attempt=2 outcome=dead" in log
    assert f"job_id={second['id']}" in log and "outcome=succeeded" in log
    assert "hub.sweep.requeued" in log and "jobs=" in log
