"""Delivery guarantees across dead letters and replays, and what an operator sees of them.

In process (``deliver`` called directly, no worker) with the API client, a real store on both
backends and the real sandbox receiver, which dedupes on ``Idempotency-Key`` like a partner should.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.settings import Settings
from hub.sync.delivery import HELD_WAIT_SECONDS, ORDER_WAIT_SECONDS, deliver
from sandboxes.webhook import SandboxReceiver
from tests.sync.admin_api_support import Recorder, create, jobs, messages, problem, put_webhook
from tests.sync.admin_api_support import api as api  # noqa: F401  (fixture)
from tests.sync.admin_api_support import emr as emr  # noqa: F401  (fixture)
from tests.sync.service.conftest import make_due
from tests.sync.test_cli import hub as hub  # noqa: F401  (fixture)

ADMIN = "/admin/api"


def update(api: Recorder, resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {**resource, **changes}
    response = api.put(f"/fhir/ServiceRequest/{resource['id']}", content=json.dumps(body),
                       headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    return response.json()


def job(api: Recorder, job_id: int) -> dict[str, Any]:
    response = api.get(f"{ADMIN}/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def accepted_versions(receiver: SandboxReceiver) -> list[str]:
    return [json.loads(d.body)["meta"]["versionId"] for d in receiver.deliveries]


def test_a_replayed_dead_letter_that_the_partner_had_accepted_is_a_duplicate_there(
    api: Recorder, settings: Settings, receiver: SandboxReceiver
) -> None:
    put_webhook(api, "emr", receiver.url + "/webhook", timeout_seconds=0.5)
    api.post(f"{ADMIN}/routes", json={"name": "referrals", "resource_type": "ServiceRequest", "connector": "emr"})
    create(api)
    [first] = jobs(api)
    assert first["idempotency_key"] == f"{first['message_id']}.c1.v1"  # message, connector, version
    # the partner takes the delivery but answers after the hub's timeout; then it fails for good
    receiver.configure(accept_then_hang_keys=[first["idempotency_key"]], hang_seconds=1.5)
    assert deliver(settings, first["id"]) is not None
    assert len(receiver.deliveries) == 1 and job(api, first["id"])["status"] == "retrying"
    receiver.configure(accept_then_hang_keys=[], fail_keys={first["idempotency_key"]: 422})
    make_due(settings, first["id"])
    assert deliver(settings, first["id"]) is None
    assert job(api, first["id"])["status"] == "dead"

    receiver.configure(fail_keys={})
    response = api.post(f"{ADMIN}/replay", json={"all_dead_letters": True})
    assert response.status_code == 200, response.text
    replay = jobs(api)[0]
    assert replay["replay_of"] == first["id"] and replay["idempotency_key"] == first["idempotency_key"]
    assert deliver(settings, replay["id"]) is None
    assert job(api, replay["id"])["status"] == "succeeded"
    assert len(receiver.deliveries) == 1  # one acceptance: the partner saw the replay as a duplicate
    assert receiver.duplicate_keys == {first["idempotency_key"]: 1}
    dead = job(api, first["id"])
    assert dead["resolved_by"] == replay["id"] and dead["resolved_at"]

    # a resend is a deliberate new delivery: a new key, accepted again
    response = api.post(f"{ADMIN}/messages/{first['message_id']}/resend")
    assert response.status_code == 201, response.text
    [resent] = response.json()["jobs"]
    assert resent["idempotency_key"] != first["idempotency_key"] and resent["replay_of"] == first["id"]
    assert deliver(settings, resent["id"]) is None
    assert len(receiver.deliveries) == 2
    problem(api.post(f"{ADMIN}/messages/no-such-message/resend"), 404)


def test_later_versions_wait_behind_a_dead_letter_and_its_replay_goes_first(
    api: Recorder, settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    v1 = create(api)
    [first] = jobs(api)
    update(api, v1, status="on-hold")  # v2 of the same referral, same patient
    update(api, v1, status="revoked")  # v3
    create(api, patient="other")
    other, third, second = jobs(api)[:3]
    receiver.configure(fail_keys={first["idempotency_key"]: 422})
    assert deliver(settings, first["id"]) is None
    assert job(api, first["id"])["status"] == "dead"

    assert deliver(settings, second["id"]) == HELD_WAIT_SECONDS
    assert deliver(settings, third["id"]) == HELD_WAIT_SECONDS
    held = job(api, second["id"])
    assert held["held_by"] == first["id"] and f"held behind dead letter {first['id']}" in held["queued_because"]
    assert (held["resource"], held["resource_version"]) == (f"ServiceRequest/{v1['id']}", 2)
    assert deliver(settings, other["id"]) is None  # another patient is not held up
    assert accepted_versions(receiver) == ["1"]  # the other patient's referral
    dead_letters = api.get(f"{ADMIN}/dead-letters").json()
    assert [(d["id"], d["holding"]) for d in dead_letters["items"]] == [(first["id"], 2)]
    detail = api.get(f"{ADMIN}/messages/{first['message_id']}").json()
    assert detail["jobs"][0]["holding"] == 2

    receiver.configure(fail_keys={})
    response = api.post(f"{ADMIN}/replay", json={"dead_letters_of": "emr"})
    assert response.status_code == 200, response.text
    replay = jobs(api)[0]
    assert replay["replay_of"] == first["id"] and replay["idempotency_key"] == first["idempotency_key"]
    assert job(api, second["id"])["held_by"] is None  # woken: now behind the replay, which is open
    assert deliver(settings, third["id"]) == ORDER_WAIT_SECONDS
    assert deliver(settings, second["id"]) == ORDER_WAIT_SECONDS
    assert deliver(settings, replay["id"]) is None
    for later in (third, second):  # a duplicate task of the later one first: still in order
        make_due(settings, later["id"])
        deliver(settings, later["id"])
    make_due(settings, third["id"])
    assert deliver(settings, third["id"]) is None
    assert {job(api, j["id"])["status"] for j in (replay, second, third)} == {"succeeded"}
    ours = [json.loads(d.body) for d in receiver.deliveries if json.loads(d.body)["id"] == v1["id"]]
    assert [r["meta"]["versionId"] for r in ours] == ["1", "2", "3"]  # in order, the partner ends on v3
    assert len({d.idempotency_key for d in receiver.deliveries}) == len(receiver.deliveries) == 4

    # the dead letter is resolved: outstanding lists and counts leave it out
    assert api.get(f"{ADMIN}/dead-letters").json()["total"] == 0
    resolved = api.get(f"{ADMIN}/dead-letters", params={"state": "resolved"}).json()["items"]
    assert [(d["id"], d["resolved_by"]) for d in resolved] == [(first["id"], replay["id"])]
    assert api.get(f"{ADMIN}/dead-letters", params={"state": "all"}).json()["total"] == 1
    health = api.get(f"{ADMIN}/connectors/emr").json()["health"]
    assert (health["dead_letters"], health["dead_letters_resolved"]) == (0, 1)
    problem(api.get(f"{ADMIN}/dead-letters", params={"state": "gone"}), 400)


def test_a_dead_letter_holds_back_the_same_resource_even_without_a_patient(
    api: Recorder, settings: Settings, receiver: SandboxReceiver
) -> None:
    put_webhook(api, "registry", receiver.url + "/orgs")
    api.post(f"{ADMIN}/routes", json={"name": "orgs", "resource_type": "Organization", "connector": "registry"})
    response = api.post("/fhir/Organization", content=json.dumps({"resourceType": "Organization", "name": "A"}),
                        headers={"Content-Type": "application/fhir+json"})
    org = response.json()
    api.put(f"/fhir/Organization/{org['id']}", content=json.dumps({**org, "name": "B"}),
            headers={"Content-Type": "application/fhir+json"})
    second, first = jobs(api)
    receiver.configure(fail_keys={first["idempotency_key"]: 422})
    deliver(settings, first["id"])
    assert deliver(settings, second["id"]) == HELD_WAIT_SECONDS
    assert receiver.deliveries == []


def test_operator_filters_follow_one_write(
    api: Recorder, settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    v1 = create(api)
    update(api, v1, status="on-hold")
    create(api, patient="p2")
    resource = f"ServiceRequest/{v1['id']}"
    found = messages(api, resource=resource)
    assert found["total"] == 2 and {m["resource_version"] for m in found["items"]} == {1, 2}
    [v2] = messages(api, resource=resource, version=2)["items"]
    assert (v2["resource"], v2["resource_version"]) == (resource, 2)
    assert messages(api, resource=resource, version=3)["total"] == 0
    problem(api.get(f"{ADMIN}/messages", params={"resource": "ServiceRequest"}), 400)
    problem(api.get(f"{ADMIN}/messages", params={"version": 2}), 400)
    problem(api.get(f"{ADMIN}/messages", params={"resource": resource, "resource_type": "Patient"}), 400)
    problem(api.get(f"{ADMIN}/messages", params={"resource": resource, "version": "x"}), 400)

    [job_v2] = jobs(api, message=v2["id"])
    assert (job_v2["resource"], job_v2["resource_version"], job_v2["message_id"]) == (resource, 2, v2["id"])
    assert [j["id"] for j in jobs(api, idempotency_key=job_v2["idempotency_key"])] == [job_v2["id"]]
    assert jobs(api, idempotency_key="nothing-has-this-key") == []
    assert jobs(api, message="00000000-0000-0000-0000-000000000000") == []


def test_replay_resend_mints_new_keys_and_refuses_bulk_dead_letters(
    hub: TestClient, settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    create(Recorder(hub))
    [first] = jobs(Recorder(hub))
    deliver(settings, first["id"])
    runner = CliRunner()
    same = runner.invoke(cli, ["replay", first["message_id"]])
    assert same.exit_code == 0, same.output
    resent = runner.invoke(cli, ["replay", first["message_id"], "--resend"])
    assert resent.exit_code == 0, resent.output
    resend_job, replay_job = jobs(Recorder(hub))[:2]
    assert replay_job["idempotency_key"] == first["idempotency_key"]
    assert resend_job["idempotency_key"] not in (first["idempotency_key"], replay_job["idempotency_key"])
    refused = runner.invoke(cli, ["replay", "--dead", "--resend"])
    assert refused.exit_code == 2 and "--resend" in refused.output


def test_clients_add_json_prints_one_object(hub: TestClient) -> None:
    result = CliRunner().invoke(cli, ["clients", "add", "Riverside EMR", "--role", "system", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)  # stdout is the JSON object and nothing else
    assert set(body) == {"client_id", "secret", "role", "scopes", "tenant"}
    assert body["role"] == "system" and body["secret"] and body["client_id"] and body["tenant"] == "default"
    token = hub.post("/auth/token", data={"grant_type": "client_credentials", "client_id": body["client_id"],
                                         "client_secret": body["secret"]})
    assert token.status_code == 200, token.text


@pytest.mark.parametrize("extra, shown", [
    ({"job_id": 7, "attempt": 2, "outcome": "retrying", "retry_in": 1.5}, "job_id=7 attempt=2 outcome=retrying"),
    ({"jobs": 3}, "jobs=3"),
    ({"patient_name": "Quetzalcoatl", "job_id": 1}, "job_id=1"),
])
def test_worker_log_lines_show_ids_and_counts_only(extra: dict[str, Any], shown: str) -> None:
    from workers.app import ExtrasFormatter

    record = logging.LogRecord("hub.sync.delivery", logging.INFO, __file__, 1, "hub.delivery.attempt", None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    line = ExtrasFormatter(logging.Formatter("%(levelname)s %(message)s")).format(record)
    assert line.startswith("INFO hub.delivery.attempt ") and shown in line
    assert "Quetzalcoatl" not in line and "patient_name" not in line
