"""HEP vendor webhooks into the hub, end to end: plans pushed to the sandbox vendor, two weeks of its
scripted webhooks (duplicates, out of order, late) sent to the hub on a real port, and what the hub
made of them: Observations (each once), Goal statuses, the engagement summary; bad signatures store
nothing; an event for an unknown patient is refused and kept as rejected."""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from connectors.hep import ACCESS_LINK_REL, HepConnector
from hub.app import create_app
from hub.settings import Settings
from hub.store.models import DeliveryJob
from hub.sync.delivery import deliver
from hub.sync.engine import DeliveryEngine
from hub.unit_of_work import unit_of_work
from mappings.hep.adherence import Prescription, weekly_adherence
from mappings.hep.events import HepEvent, SessionCompleted, parse_event
from mappings.hep.observations import replay_observations
from sandboxes.hep import SandboxHepVendor
from sandboxes.hep_script import event_body
from tests.connectors.hep.support import PATIENT, SR_EXERCISE, SR_SERVICE, bridge, bundle, care_plan, delivery

WEBHOOK_SECRET = "hep-webhook-secret-0123456789"
API_KEY = "hep-api-key-0123"
PATH = "/inbound/default/hep/vendor"
DAYS = 14
#: patient -> (CarePlan, Goal, scripted profile, LEFS target)
PATIENTS = {"pat-a": ("cp-a", "goal-a", "adherent", 55), "pat-b": ("cp-b", "goal-b", "improving", 60)}


@pytest.fixture
def hub_url(settings: Settings) -> Iterator[str]:
    """The hub on a real port: the sandbox vendor calls it over HTTP."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None,
                                           log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="hub-hep-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the hub did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def vendor() -> Iterator[SandboxHepVendor]:
    with SandboxHepVendor(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET) as server:
        yield server


def put(client: TestClient, resource: dict[str, Any]) -> None:
    response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in (200, 201), response.text


def setup(client: TestClient, vendor: SandboxHepVendor, start: str) -> None:
    """The hep connector, the patients' plans and goals in the hub, the plans pushed to the vendor."""
    config = {"base_url": vendor.url, "api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET}
    response = client.put("/admin/api/connectors/vendor", json={"name": "vendor", "kind": "hep", "config": config})
    assert response.status_code == 200, response.text
    put(client, SR_SERVICE)
    put(client, SR_EXERCISE)
    with HepConnector(config) as connector:
        for patient_id, (plan_id, goal_id, _, target) in PATIENTS.items():
            patient = {**copy.deepcopy(PATIENT), "id": patient_id}
            goal = {"resourceType": "Goal", "id": goal_id, "lifecycleStatus": "active",
                    "description": {"text": "Walk without a limp"}, "subject": {"reference": f"Patient/{patient_id}"},
                    "target": [{"measure": {"text": "LEFS"}, "detailInteger": target,
                                "dueDate": (datetime.now(UTC) + timedelta(days=60)).date().isoformat()}]}
            activities = care_plan(bridge(), {"reference": {"reference": "ServiceRequest/sr-hamstring"}})
            plan = {**activities, "id": plan_id, "subject": {"reference": f"Patient/{patient_id}"},
                    "period": {"start": start}, "goal": [{"reference": f"Goal/{goal_id}"}]}
            put(client, patient)
            put(client, goal)
            put(client, plan)
            result = connector.send(delivery(bundle(plan, patient, SR_SERVICE, SR_EXERCISE), key=f"job-{plan_id}"))
            assert any(link.rel == ACCESS_LINK_REL for link in result.links)


def unique_events(vendor: SandboxHepVendor, now: datetime) -> list[HepEvent]:
    script = vendor.script(days=DAYS, now=now, profiles={cp: profile for cp, _, profile, _ in PATIENTS.values()})
    seen: dict[str, HepEvent] = {}
    for copy_ in script:
        seen.setdefault(copy_.id, parse_event(event_body(dict(copy_.event))))
    return list(seen.values())


def all_of(client: TestClient, resource_type: str) -> list[dict[str, Any]]:
    found = client.get(f"/fhir/{resource_type}", params={"_count": "500"}).json()
    return [e["resource"] for e in found.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]


def test_two_weeks_of_webhooks_become_observations_goals_and_engagement(
        client: TestClient, hub_url: str, vendor: SandboxHepVendor) -> None:
    now = datetime.now(UTC)
    start = (now - timedelta(days=DAYS + 1)).date()
    setup(client, vendor, start.isoformat())
    sent = vendor.run_script(hub_url + PATH, days=DAYS, now=now,
                             profiles={cp: profile for cp, _, profile, _ in PATIENTS.values()})
    assert any(s.duplicate for s in sent)  # the script holds duplicates (and late, shuffled events)
    assert {s.status for s in sent} == {200}, [s for s in sent if s.status != 200][:3]

    events = unique_events(vendor, now)
    expected = replay_observations(events)
    stored = {o["id"]: o for o in all_of(client, "Observation")}
    assert set(stored) == set(expected)  # each Observation once, whatever the order and the repeats
    sessions = {e.session_id for e in events if isinstance(e, SessionCompleted)}
    session_obs = [o for o in stored.values() if o.get("hasMember")]
    assert len(session_obs) == len(sessions)
    messages = client.get("/admin/api/messages", params={"limit": 500}).json()
    assert messages["total"] == len(events)  # duplicates are not stored again

    goals = {g["id"]: g["achievementStatus"]["coding"][0]["code"] for g in all_of(client, "Goal")}
    assert goals == {"goal-a": "achieved", "goal-b": "improving"}
    history = client.get("/fhir/Goal/goal-b/_history").json()
    assert history["total"] >= 2  # each status the goal went through is a version

    for patient_id, (plan_id, _, _, _) in PATIENTS.items():
        summary = client.get(f"/patients/{patient_id}/engagement")
        assert summary.status_code == 200, summary.text
        body = summary.json()
        assert body["care_plan"] == f"CarePlan/{plan_id}"
        mine = [e for e in events if e.patient.external_id == patient_id]
        weeks = weekly_adherence(mine, Prescription(7, start), until=now.date() - timedelta(days=1))
        assert [w["percent"] for w in body["adherence"]] == [w.percent for w in weeks]
        assert body["last_activity"] is not None
        assert [g["goal"] for g in body["goals"]] == [f"Goal/{PATIENTS[patient_id][1]}"]
    adherent = client.get("/patients/pat-a/engagement").json()
    assert adherent["goals"][0]["status"] == "achieved"
    assert sum(w["percent"] for w in adherent["adherence"]) > 0


def test_a_bad_signature_is_refused_and_stores_nothing(client: TestClient, hub_url: str,
                                                        vendor: SandboxHepVendor) -> None:
    now = datetime.now(UTC)
    setup(client, vendor, (now - timedelta(days=DAYS + 1)).date().isoformat())
    event = dict(vendor.script(days=DAYS, now=now)[0].event)
    forged = SandboxHepVendor(api_key=API_KEY, webhook_secret="not-the-vendor-secret-000")
    assert forged.send_event(hub_url + PATH, event) == 401
    assert vendor.send_event(hub_url + "/inbound/default/hep/nobody", event) == 401
    assert vendor.send_event(hub_url + PATH, event, timestamp=int(time.time()) - 3600) == 401  # stale
    with httpx.Client(trust_env=False) as http:
        assert http.post(hub_url + PATH, content=event_body(event),
                         headers={"Content-Type": "application/json"}).status_code == 401
    assert client.get("/admin/api/messages").json()["total"] == 0
    assert all_of(client, "Observation") == []


def test_an_event_for_an_unknown_patient_is_refused_and_kept(client: TestClient, hub_url: str,
                                                              vendor: SandboxHepVendor) -> None:
    now = datetime.now(UTC)
    setup(client, vendor, (now - timedelta(days=DAYS + 1)).date().isoformat())
    event = next(dict(c.event) for c in vendor.script(days=DAYS, now=now) if c.type == "session.completed")
    event["patient"] = {**event["patient"], "external_id": "pat-nobody"}
    assert vendor.send_event(hub_url + PATH, event) == 422
    assert vendor.send_event(hub_url + PATH, event) == 200  # the same event again: already kept
    rejected = client.get("/admin/api/messages", params={"status": "rejected"}).json()
    assert rejected["total"] == 1
    assert "no Patient" in rejected["items"][0]["error"] and "pat-nobody" not in rejected["items"][0]["error"]
    assert all_of(client, "Observation") == []


def test_the_patient_access_link_of_a_pushed_plan_is_kept_encrypted_on_its_job(
        client: TestClient, settings: Settings, vendor: SandboxHepVendor) -> None:
    config = {"base_url": vendor.url, "api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET}
    response = client.put("/admin/api/connectors/vendor", json={"name": "vendor", "kind": "hep", "config": config})
    assert response.status_code == 200, response.text
    response = client.post("/admin/api/routes", json={"name": "hep-plans", "resource_type": "CarePlan",
                                                      "connector": "vendor"})
    assert response.status_code == 201, response.text
    for resource in (SR_SERVICE, SR_EXERCISE, {**copy.deepcopy(PATIENT)}):
        put(client, resource)
    put(client, care_plan(bridge(), {"reference": {"reference": "ServiceRequest/sr-hamstring"}}))
    jobs = client.get("/admin/api/jobs").json()["items"]
    assert len(jobs) == 1
    deliver(settings, int(jobs[0]["id"]))
    assert client.get(f"/admin/api/jobs/{jobs[0]['id']}").json()["status"] == "succeeded"
    with unit_of_work(settings) as session:
        job = session.get(DeliveryJob, int(jobs[0]["id"]))
        assert job is not None and job.issued_links
        links = DeliveryEngine(session, settings=settings).issued_links(job)
        raw = job.issued_links
    assert [link["rel"] for link in links] == [ACCESS_LINK_REL]
    url = str(links[0]["url"])
    assert "/sso/" in url and url not in raw  # kept encrypted
    shown = client.get(f"/admin/api/jobs/{jobs[0]['id']}").text + client.get(
        f"/admin/api/messages/{jobs[0]['message_id']}").text
    assert url not in shown  # not in the job's view nor in its events
