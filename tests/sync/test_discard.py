"""Discarding a dead letter that must never be delivered (a message for a retired partner): from the
admin API and the CLI; it is resolved, no longer holds the later jobs of its patient, is left out of
bulk replays, and the message's events say who discarded it and why. In process against the real
sandbox receiver, on both store backends."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.settings import Settings
from hub.sync.delivery import HELD_WAIT_SECONDS, deliver
from sandboxes.webhook import SandboxReceiver
from tests.sync.admin_api_support import Recorder, create, jobs, problem
from tests.sync.admin_api_support import api as api  # noqa: F401  (fixture)
from tests.sync.admin_api_support import emr as emr  # noqa: F401  (fixture)
from tests.sync.service.conftest import make_due
from tests.sync.test_cli import hub as hub  # noqa: F401  (fixture)
from tests.sync.test_cli import two_dead as two_dead  # noqa: F401  (fixture)
from tests.sync.test_delivery_guarantees import accepted_versions, job, update

ADMIN = "/admin/api"
REASON = "partner emr retired on 1 March"


def discard(api: Recorder, job_id: int, reason: object = REASON):  # type: ignore[no-untyped-def]
    return api.post(f"{ADMIN}/jobs/{job_id}/discard", json={} if reason is None else {"reason": reason})


def test_a_discarded_dead_letter_is_resolved_and_releases_what_it_held(
    api: Recorder, settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    v1 = create(api)
    [first] = jobs(api)
    update(api, v1, status="on-hold")  # v2 and v3 of the same referral: the same patient's order
    update(api, v1, status="revoked")
    third, second = jobs(api)[:2]
    receiver.configure(fail_keys={first["idempotency_key"]: 422})
    assert deliver(settings, first["id"]) is None and job(api, first["id"])["status"] == "dead"
    assert deliver(settings, second["id"]) == HELD_WAIT_SECONDS
    assert deliver(settings, third["id"]) == HELD_WAIT_SECONDS
    assert job(api, second["id"])["held_by"] == first["id"]
    receiver.configure(fail_keys={})

    # refused: no reason, a blank one, a job that is not dead, a job that does not exist
    assert problem(discard(api, first["id"], None), 400)["issues"][0]["expression"] == ["body.reason"]
    assert problem(discard(api, first["id"], "   "), 400)["issues"][0]["expression"] == ["reason"]
    assert "only dead letters can be discarded" in problem(discard(api, second["id"]), 409)["title"]
    problem(discard(api, 999_999), 404)
    assert job(api, first["id"])["resolution"] is None and job(api, second["id"])["held_by"] == first["id"]

    response = discard(api, first["id"])
    assert response.status_code == 200, response.text
    view = response.json()
    assert (view["status"], view["resolution"], view["resolved_by"]) == ("dead", "discarded", None)
    assert view["resolved_at"] and view["holding"] == 0
    assert "already" in problem(discard(api, first["id"]), 409)["title"]

    # what it held back goes, in order, and never the discarded v1
    assert job(api, second["id"])["held_by"] is None and job(api, third["id"])["held_by"] is None
    assert deliver(settings, second["id"]) is None
    make_due(settings, third["id"])
    assert deliver(settings, third["id"]) is None
    assert accepted_versions(receiver) == ["2", "3"]

    # it counts as resolved, bulk replays leave it alone, and its message says who and why
    assert api.get(f"{ADMIN}/dead-letters").json()["total"] == 0
    resolved = api.get(f"{ADMIN}/dead-letters", params={"state": "resolved"}).json()["items"]
    assert [(d["id"], d["resolution"]) for d in resolved] == [(first["id"], "discarded")]
    health = api.get(f"{ADMIN}/connectors/emr").json()["health"]
    assert (health["dead_letters"], health["dead_letters_resolved"]) == (0, 1)
    assert api.post(f"{ADMIN}/replay", json={"all_dead_letters": True}).json() == {"replayed": []}
    events = api.get(f"{ADMIN}/messages/{first['message_id']}").json()["events"]
    [discarded] = [e for e in events if e["event"] == "discarded"]
    assert discarded["job_id"] == first["id"]
    assert discarded["detail"] == f"discarded by development: {REASON}"  # the API client, and the reason
    assert len(receiver.deliveries) == 2


def test_discarding_a_dead_replay_resolves_the_dead_letter_it_replays(
    api: Recorder, settings: Settings, receiver: SandboxReceiver, emr: str
) -> None:
    create(api)
    [first] = jobs(api)
    receiver.configure(fail_keys={first["idempotency_key"]: 422})
    deliver(settings, first["id"])
    assert api.post(f"{ADMIN}/replay", json={"all_dead_letters": True}).status_code == 200
    replay = jobs(api)[0]
    assert "being replayed by job" in problem(discard(api, first["id"]), 409)["title"]  # its replay is open
    deliver(settings, replay["id"])  # same key: dead again
    assert job(api, replay["id"])["status"] == "dead"
    assert api.get(f"{ADMIN}/dead-letters").json()["total"] == 2

    assert discard(api, replay["id"]).status_code == 200
    assert api.get(f"{ADMIN}/dead-letters").json()["total"] == 0  # one delivery, given up once
    assert {job(api, j)["resolution"] for j in (first["id"], replay["id"])} == {"discarded"}

    # a retry takes a discard back: should it die again, it is outstanding again
    assert api.post(f"{ADMIN}/jobs/{replay['id']}/retry").status_code == 200
    assert job(api, replay["id"])["status"] == "pending"
    deliver(settings, replay["id"])
    assert [d["id"] for d in api.get(f"{ADMIN}/dead-letters").json()["items"]] == [replay["id"]]
    assert receiver.deliveries == []


def test_cli_discard(hub: TestClient, settings: Settings, receiver: SandboxReceiver,
                     two_dead: dict[str, dict]) -> None:  # type: ignore[type-arg]
    runner = CliRunner()
    missing = runner.invoke(cli, ["discard", str(two_dead["emr"]["id"])])
    assert missing.exit_code == 2 and "--reason" in missing.output
    refused = runner.invoke(cli, ["discard", str(two_dead["ok"]["id"]), "--reason", "no"])
    assert refused.exit_code == 2 and "only dead letters can be discarded" in refused.output

    done = runner.invoke(cli, ["discard", str(two_dead["emr"]["id"]), "--reason", REASON])
    assert done.exit_code == 0, done.output
    assert f"discarded dead letter {two_dead['emr']['id']}" in done.output
    detail = hub.get(f"{ADMIN}/messages/{two_dead['emr']['message_id']}").json()
    [event] = [e for e in detail["events"] if e["event"] == "discarded"]
    assert event["detail"].startswith("discarded by cli:") and event["detail"].endswith(REASON)

    replayed = runner.invoke(cli, ["replay", "--dead"])  # only hep's dead letter is left to replay
    assert replayed.exit_code == 0, replayed.output
    assert f"replayed {two_dead['hep']['message_id']} as" in replayed.output
    assert two_dead["emr"]["message_id"] not in replayed.output
    again = runner.invoke(cli, ["discard", str(two_dead["emr"]["id"]), "--reason", REASON])
    assert again.exit_code == 2 and "discarded already" in again.output
    assert json.loads(hub.get(f"{ADMIN}/dead-letters").text)["total"] == 1
