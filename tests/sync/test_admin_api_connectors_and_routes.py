"""The admin API (``/admin/api``) of the sync engine: connectors with health and tests, and routes
(CRUD and YAML import) against the real sandbox receiver; no worker runs."""

from __future__ import annotations

import json

import httpx

from hub.settings import Settings
from hub.sync.delivery import deliver
from sandboxes.webhook import SandboxReceiver
from tests.sync.admin_api_support import ADMIN, Recorder, create, dead_job, jobs, post_route, problem, put_webhook
from tests.sync.admin_api_support import api as api  # noqa: F401  (fixture)
from tests.sync.admin_api_support import emr as emr  # noqa: F401  (fixture)
from tests.sync.conftest import SECRET

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
