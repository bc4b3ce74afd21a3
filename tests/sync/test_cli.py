"""The sync engine's commands: ``hub jobs``, ``hub replay``, ``hub connectors``, ``hub routes``.

Run in process with ``typer.testing.CliRunner`` and the settings in HUB_* variables, as in
production; deliveries are attempted in process against the real sandbox receiver (no worker)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub.cli import app
from hub.settings import Settings
from hub.sync.delivery import deliver
from sandboxes.webhook import SandboxReceiver
from tests.cli_env import cli_environment
from tests.sync.conftest import SECRET, queued_tasks

ADMIN = "/admin/api"


@pytest.fixture
def hub(settings: Settings, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The store behind the API ``client`` is also the CLI's, through the HUB_* environment."""
    with cli_environment(settings, monkeypatch):
        yield client


def cli(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result


def table_rows(output: str) -> dict[str, list[str]]:
    """The rows of a rich table by their first cell (continuation lines of wrapped cells skipped)."""
    cells = [
        [c.strip() for c in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")
    ]
    return {row[0]: row for row in cells if row[0]}


def put_webhook(client: TestClient, name: str, url: str, **options: Any) -> None:
    body = {
        "name": name,
        "kind": "webhook",
        "config": {"url": url, "secret": SECRET},
        "max_attempts": 3,
        "timeout_seconds": 1.0,
        **options,
    }
    assert client.put(f"{ADMIN}/connectors/{name}", json=body).status_code == 200


def route(client: TestClient, name: str, resource_type: str, connector: str) -> None:
    response = client.post(
        f"{ADMIN}/routes", json={"name": name, "resource_type": resource_type, "connector": connector}
    )
    assert response.status_code == 201, response.text


def referral(client: TestClient, patient: str) -> None:
    resource = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
    }
    response = client.post(
        "/fhir/ServiceRequest",
        content=json.dumps(resource),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 201, response.text


def jobs(client: TestClient) -> list[dict[str, Any]]:
    return sorted(client.get(f"{ADMIN}/jobs", params={"limit": 500}).json()["items"], key=lambda j: j["id"])


@pytest.fixture
def two_dead(hub: TestClient, settings: Settings, receiver: SandboxReceiver) -> dict[str, dict[str, Any]]:
    """Connectors emr and hep; p1 dead at emr, p2 dead at hep, everything else delivered."""
    put_webhook(hub, "emr", receiver.url + "/emr")
    put_webhook(hub, "hep", receiver.url + "/hep")
    route(hub, "to-emr", "ServiceRequest", "emr")
    route(hub, "to-hep", "ServiceRequest", "hep")
    referral(hub, "p1")
    referral(hub, "p2")
    emr1, hep1, emr2, hep2 = jobs(hub)
    receiver.configure(fail_keys={emr1["idempotency_key"]: 400, hep2["idempotency_key"]: 400})
    for job in (emr1, hep1, emr2, hep2):
        deliver(settings, job["id"])
    receiver.configure(fail_keys={})
    return {"emr": emr1, "hep": hep2, "ok": hep1}


# ---------------------------------------------------------------- jobs


def test_jobs_lists_by_status(hub: TestClient, two_dead: dict[str, dict[str, Any]]) -> None:
    result = cli("jobs", "--status", "dead")
    assert result.exit_code == 0, result.output
    assert "Delivery jobs (2 of 2)" in result.stdout
    rows = table_rows(result.stdout)
    assert set(rows) == {str(two_dead["emr"]["id"]), str(two_dead["hep"]["id"])}
    for name in ("emr", "hep"):
        _, message, connector, status, attempts, finished, last_error = rows[str(two_dead[name]["id"])]
        assert (message, connector, status, attempts) == (two_dead[name]["message_id"], name, "dead", "1/3")
        assert finished.startswith("20") and "400" in last_error

    result = cli("jobs", "--status", "succeeded", "--connector", "hep")
    assert result.exit_code == 0 and "(1 of 1)" in result.stdout
    assert str(two_dead["ok"]["id"]) in result.stdout
    assert "(4 of 4)" in cli("jobs").stdout
    assert "(2 of 4)" in cli("jobs", "--limit", "2").stdout

    bad = cli("jobs", "--status", "bogus")
    assert bad.exit_code == 2 and "status must be one of" in bad.stderr
    unknown = cli("jobs", "--connector", "nope")
    assert unknown.exit_code == 2 and "No connector named 'nope'" in unknown.stderr


# ---------------------------------------------------------------- replay


def test_replay_a_message(hub: TestClient, settings: Settings, two_dead: dict[str, dict[str, Any]]) -> None:
    original = two_dead["emr"]["message_id"]
    published = len(queued_tasks(settings))
    result = cli("replay", original)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"replayed {original} as ")
    assert "1 message(s) queued for delivery" in result.stdout
    replay_id = result.stdout.split()[3]
    replay = hub.get(f"{ADMIN}/messages/{replay_id}").json()
    assert replay["replay_of"] == original
    assert sorted(j["connector"] for j in replay["jobs"]) == ["emr", "hep"]  # every delivery of the message
    assert {t["job_id"] for t in queued_tasks(settings)[published:]} == {j["id"] for j in replay["jobs"]}

    missing = cli("replay", "no-such-message")
    assert missing.exit_code == 2 and "No message no-such-message" in missing.stderr


def test_replay_dead_letters_of_one_connector(
    hub: TestClient, settings: Settings, receiver: SandboxReceiver, two_dead: dict[str, dict[str, Any]]
) -> None:
    result = cli("replay", "--dead", "--connector", "hep")
    assert result.exit_code == 0, result.output
    assert f"replayed {two_dead['hep']['message_id']} as " in result.stdout
    assert "1 message(s) queued" in result.stdout
    replay_id = result.stdout.split()[3]
    [job] = hub.get(f"{ADMIN}/messages/{replay_id}").json()["jobs"]
    assert job["connector"] == "hep" and job["replay_of"] == two_dead["hep"]["id"]
    assert deliver(settings, job["id"]) is None
    assert receiver.deliveries[-1].path == "/hep"

    everything = cli("replay", "--dead")  # what is left: emr's dead letter
    assert everything.exit_code == 0 and "1 message(s) queued" in everything.stdout
    assert f"replayed {two_dead['emr']['message_id']} as " in everything.stdout
    assert "0 message(s) queued" in cli("replay", "--dead").stdout

    unknown = cli("replay", "--dead", "--connector", "nope")
    assert unknown.exit_code == 2 and "No connector named 'nope'" in unknown.stderr


def test_replay_needs_something_to_replay(hub: TestClient) -> None:
    result = cli("replay")
    assert result.exit_code == 2
    assert "give message ids, or --dead" in result.stderr


# ---------------------------------------------------------------- connectors


def test_connectors_table(hub: TestClient, two_dead: dict[str, dict[str, Any]]) -> None:
    referral(hub, "p3")  # one job waiting at each connector
    result = cli("connectors")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert set(rows) == {"emr", "hep"}
    name, kind, enabled, backlog, dead, last_success, error_rate, last_error = rows["emr"]
    assert (kind, enabled, backlog, dead) == ("webhook", "yes", "1", "1")
    assert last_success.startswith("20") and error_rate == "0.5" and "400" in last_error
    assert SECRET not in result.stdout


def test_connectors_test_exit_status(hub: TestClient, receiver: SandboxReceiver) -> None:
    put_webhook(hub, "live", receiver.url + "/webhook")
    with SandboxReceiver(secret=SECRET) as gone:
        dead_url = gone.url + "/webhook"
    put_webhook(hub, "dead", dead_url)

    ok = cli("connectors", "test", "live")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("live: ok (") and "-> 200" in ok.stdout
    failed = cli("connectors", "test", "dead")
    assert failed.exit_code == 1 and failed.stdout.startswith("dead: FAILED (")
    unknown = cli("connectors", "test", "nope")
    assert unknown.exit_code == 2 and "No connector named 'nope'" in unknown.stderr


# ---------------------------------------------------------------- routes


def test_routes_load_and_list(hub: TestClient, receiver: SandboxReceiver, tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(f"""
connectors:
  - name: emr
    kind: webhook
    config: {{url: "{receiver.url}/webhook", secret: {SECRET}}}
routes:
  - name: referrals
    resource_type: ServiceRequest
    connector: emr
    interactions: [create]
    filter: "status = 'active'"
  - {{name: everything, resource_type: "*", connector: emr, enabled: false}}
""")
    result = cli("routes", "load", str(path))
    assert result.exit_code == 0, result.output
    assert "loaded 1 connector(s) and 2 route(s)" in result.stdout
    assert cli("routes", "load", str(path)).exit_code == 0  # again: updated by name, not duplicated

    listing = cli("routes", "list")
    assert listing.exit_code == 0, listing.output
    rows = {row[1]: row for row in table_rows(listing.stdout).values()}
    assert set(rows) == {"referrals", "everything"}
    assert rows["referrals"][2:] == ["ServiceRequest", "create", "status = 'active'", "emr", "yes"]
    assert rows["everything"][2] == "*" and rows["everything"][-1] == "no"
    assert [r["name"] for r in hub.get(f"{ADMIN}/routes").json()] == ["everything", "referrals"]

    broken = tmp_path / "broken.yaml"
    broken.write_text("routes: [unclosed")
    result = cli("routes", "load", str(broken))
    assert result.exit_code == 2 and "not valid YAML" in result.stderr
    broken.write_text("routes:\n  - {name: r, resource_type: Patient, connector: nope}\n")
    result = cli("routes", "load", str(broken))
    assert result.exit_code == 2 and "No connector named 'nope'" in result.stderr
    assert cli("routes", "load", str(tmp_path / "missing.yaml")).exit_code == 2
    assert len(hub.get(f"{ADMIN}/routes").json()) == 2


def test_the_documented_example_loads(hub: TestClient) -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "routes.example.yaml"
    result = cli("routes", "load", str(example))
    assert result.exit_code == 0, result.output
    assert "loaded 1 connector(s) and 2 route(s)" in result.stdout
    assert [r["name"] for r in hub.get(f"{ADMIN}/routes").json()] == ["new-referrals-to-emr", "tasks-to-emr"]


# ---------------------------------------------------------------- help


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["jobs"], ["--status", "--connector", "--limit", "--tenant", "dead"]),
        (["replay"], ["message_ids", "--dead", "--connector", "--tenant"]),
        (["connectors"], ["test", "kinds", "--tenant", "backlog", "health"]),
        (["connectors", "test"], ["name", "--tenant", "exit 1"]),
        (["routes"], ["load", "list"]),
        (["routes", "load"], ["path", "YAML", "--tenant"]),
        (["routes", "list"], ["--tenant"]),
    ],
)
def test_help_mentions_the_options(args: list[str], mentions: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for word in mentions:
        assert word in result.stdout, (word, result.stdout)
