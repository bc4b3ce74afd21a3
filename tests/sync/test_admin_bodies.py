"""The admin API answers exactly the read models of :mod:`hub.sync.admin`: every field, in their
order, with the same values (the response models name them for the OpenAPI document, nothing more).
A delivered, a dead and a pending job cover the fields that depend on a job's status."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from hub.settings import Settings
from hub.store.db import transaction
from hub.sync.admin import AdminViews
from hub.sync.delivery import deliver
from sandboxes.webhook import SandboxReceiver
from tests.sync.admin_api_support import ADMIN, Recorder, create, dead_job, jobs, post_route, put_webhook


def _pairs(value: Any) -> Any:
    """JSON with its objects as lists of pairs: equal only with the same keys in the same order."""
    return json.loads(json.dumps(value), object_pairs_hook=list)


def test_admin_bodies_are_the_views(client: TestClient, settings: Settings, receiver: SandboxReceiver) -> None:
    api = Recorder(client)
    put_webhook(api, "emr", receiver.url + "/webhook")
    post_route(api, "referrals", "ServiceRequest", "emr")
    dead = dead_job(api, settings, receiver)
    create(api, patient="p2")
    delivered = jobs(api)[0]
    assert deliver(settings, delivered["id"]) is None
    create(api, patient="p3")  # stays pending: no worker runs
    answers = {path: api.get(f"{ADMIN}{path}") for path in (
        "/messages", f"/messages/{dead['message_id']}", "/jobs", "/dead-letters", f"/jobs/{dead['id']}",
        "/connectors", "/connectors/emr", "/routes")}
    assert all(r.status_code == 200 for r in answers.values()), {p: r.text for p, r in answers.items()}

    with transaction(settings.database_url) as session:
        views = AdminViews(session, tenant=settings.default_tenant)
        route = views.routes()[0]
        expected = {
            "/messages": views.messages(),
            f"/messages/{dead['message_id']}": views.message(dead["message_id"]),
            "/jobs": views.jobs(),
            "/dead-letters": views.jobs(dead="outstanding"),
            f"/jobs/{dead['id']}": views.job(dead["id"]),
            "/connectors": views.connectors(),
            "/connectors/emr": views.connector("emr"),
            "/routes": views.routes(),
        }
        assert {j["status"] for j in expected["/jobs"]["items"]} == {"dead", "succeeded", "pending"}
    for path, view in expected.items():
        assert _pairs(answers[path].json()) == _pairs(view), path
    assert _pairs(api.get(f"{ADMIN}/routes/{route['id']}").json()) == _pairs(route)
