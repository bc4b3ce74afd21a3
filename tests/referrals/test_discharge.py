"""The end of the episode of care: a discharge (or a cancelled referral) closes what the hub opened for the
plan of care -- its open obligations, the CarePlan, its Goals and ServiceRequests -- in the same transaction,
and nothing reopens them afterwards: not the clock endpoint, not the scheduled clock job, not a late visit,
and no reminder is routed for them. Time is injected, never slept."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.deps import get_clock
from hub.settings import Settings
from hub.unit_of_work import using_enqueuer
from mappings.fhir.validation import validate_resource
from mappings.referral.certification import OBLIGATION_CODE_SYSTEM
from tests.enqueuers import RecordingEnqueuer
from tests.referrals.test_full_loop import PLAN, Clock, _encounter
from tests.referrals.test_intake_and_task import referral

FHIR = {"Content-Type": "application/fhir+json"}
SECRET = "reminder-secret-0123456789abcdef"
#: a partner that follows every obligation Task, and a reminder service that only hears of overdue ones
OBLIGATIONS = f"code.coding.where(system='{OBLIGATION_CODE_SYSTEM}').exists()"
OVERDUE = "businessStatus.coding.where(code='overdue').exists()"
GOALS = [
    *PLAN["goals"],  # an active goal with no achievement status, and one "in-progress"
    {"term": "long", "description": "Lift 10 kg from the floor", "lifecycle_status": "proposed"},
    {"term": "short", "description": "Sit to stand without hands", "achievement_status": "achieved",
     "lifecycle_status": "active"},
]


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 2, 9, 0, 0))


@pytest.fixture
def recorder() -> Iterator[RecordingEnqueuer]:
    """Injected into the app and into the units of work of this test (worker tasks called directly)."""
    recording = RecordingEnqueuer()
    with using_enqueuer(recording):
        yield recording


@pytest.fixture
def enqueued(recorder: RecordingEnqueuer) -> list[int]:
    """The delivery jobs enqueued after each commit (recorded instead of sent to a broker)."""
    return recorder.sent


@pytest.fixture
def app_client(settings: Settings, clock: Clock, recorder: RecordingEnqueuer) -> Iterator[TestClient]:
    app = create_app(settings, enqueuer=recorder)
    app.dependency_overrides[get_clock] = lambda: clock
    with TestClient(app, base_url="http://testserver") as client:
        response = client.put("/admin/api/connectors/reminders", json={
            "name": "reminders", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook", "secret": SECRET}})
        assert response.status_code == 200, response.text
        for name, expression in (("obligations", OBLIGATIONS), ("overdue", OVERDUE)):
            response = client.post("/admin/api/routes", json={
                "name": name, "resource_type": "Task", "connector": "reminders", "filter": expression})
            assert response.status_code == 201, response.text
        yield client


def _start(client: TestClient, clock: Clock, number: str = "R-1001", **plan: Any) -> tuple[dict, str, dict]:
    """A referral accepted on 2026-03-02 and its plan of care established on 2026-03-03."""
    view = client.post("/referrals", json=referral(number)).json()
    task_id = view["task"].split("/")[1]
    assert client.post(f"/referrals/{task_id}/status", json={"status": "accepted"}).status_code == 200
    clock.now = datetime(2026, 3, 3, 9, 0)
    created = client.post(f"/referrals/{task_id}/plan-of-care", json={**PLAN, "goals": GOALS, **plan})
    assert created.status_code == 201, created.text
    return view, task_id, created.json()


def _obligations(client: TestClient, care_plan: str) -> dict[str, dict]:
    """Every obligation Task of the plan (include_done), by Task reference."""
    listed = client.get("/certifications", params={"include_done": "true"}).json()
    return {o["task"]: o for o in listed if o["care_plan"] == care_plan}


def _versions(client: TestClient, references: list[str]) -> dict[str, str]:
    return {ref: client.get(f"/fhir/{ref}").json()["meta"]["versionId"] for ref in references}


def _routed(client: TestClient, route: str) -> list[tuple[str, int]]:
    """(resource, version) of every message a route queued a job for."""
    routes = {r["name"]: r["id"] for r in client.get("/admin/api/routes").json()}
    messages = {m["id"]: m for m in client.get("/admin/api/messages", params={"limit": 500}).json()["items"]}
    jobs = client.get("/admin/api/jobs", params={"limit": 500}).json()["items"]
    return sorted((messages[j["message_id"]]["resource"], messages[j["message_id"]]["resource_version"])
                  for j in jobs if j["route_id"] == routes[route])


def _discharge(client: TestClient, task_id: str) -> Any:
    return client.post(f"/referrals/{task_id}/discharge",
                       json={"summary": "11 visits; independent with the home program", "outcome": "Goals met"})


def test_discharge_closes_the_open_obligations_and_the_plan(
    app_client: TestClient, clock: Clock, settings: Settings, enqueued: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.tasks import certification_clocks

    client = app_client
    view, task_id, plan = _start(client, clock)
    care_plan_ref = plan["care_plan"]
    certification = next(o for o in plan["obligations"] if o["kind"] == "certification")

    # signed on 2026-03-12: that obligation is met; a recertification opens
    clock.now = datetime(2026, 3, 12, 9, 0)
    signed = client.post(f"/certifications/{certification['task'].split('/')[1]}/sign",
                         json={"signature": base64.b64encode(b"sig").decode()})
    assert signed.status_code == 200 and signed.json()["status"] == "completed"
    # eleven treatment days: the progress report due at the tenth is overdue
    for day in range(12, 23):
        clock.now = datetime(2026, 3, day, 11, 0)
        _encounter(client, view["service_request"], view["patient"], clock.now)
    before = _obligations(client, care_plan_ref)
    open_before = {ref for ref, o in before.items() if o["status"] == "requested"}
    kinds = {before[ref]["kind"]: before[ref] for ref in open_before}
    assert kinds["progress-report"]["business_status"] == "overdue" and kinds["progress-report"]["overdue"]
    assert "recertification" in kinds and certification["task"] not in open_before
    assert {o["task"] for o in client.get("/certifications").json()} == open_before
    assert _routed(client, "overdue")  # the reminder service heard of the overdue report
    versions = _versions(client, list(before))

    # a discharge that fails half way changes nothing: it is one transaction
    import mappings.plan_of_care.ending as plan_ending

    clock.now = datetime(2026, 3, 25, 10, 0)
    with monkeypatch.context() as patch:
        patch.setattr(plan_ending, "end_care_plan", _boom)
        try:
            failed = _discharge(client, task_id)
        except RuntimeError:  # the test client re-raises what the server did not handle
            failed = None
        assert failed is None or failed.status_code == 500
    assert client.get(f"/fhir/{view['task']}").json()["status"] == "in-progress"
    assert _versions(client, list(before)) == versions
    assert client.get(f"/fhir/{care_plan_ref}").json()["status"] == "active"

    routed_before = {route: _routed(client, route) for route in ("obligations", "overdue")}
    done = _discharge(client, task_id)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"

    # every open obligation is cancelled, "patient discharged"; those met stay as they were
    after = _obligations(client, care_plan_ref)
    assert set(after) == set(before)
    for ref, obligation in after.items():
        if ref in open_before:
            assert obligation["status"] == "cancelled", obligation
            assert obligation["status_reason"] == "patient discharged"
            assert obligation["business_status"] == "not-required" and not obligation["overdue"]
            assert int(_versions(client, [ref])[ref]) == int(versions[ref]) + 1
            task = client.get(f"/fhir/{ref}").json()
            assert task["lastModified"] == "2026-03-25T10:00:00Z" and validate_resource(task) == []
        else:
            assert obligation == before[ref]
            assert _versions(client, [ref]) == {ref: versions[ref]}
    assert after[certification["task"]]["status"] == "completed"
    assert after[certification["task"]]["status_reason"] is None
    assert client.get("/certifications").json() == []
    assert client.get("/certifications", params={"owner": view["requester"]}).json() == []

    # the CarePlan is completed, ending on the discharge date (before its planned end)
    care_plan = client.get(f"/fhir/{care_plan_ref}").json()
    assert care_plan["status"] == "completed"
    assert care_plan["period"] == {"start": PLAN["period_start"], "end": "2026-03-25"}
    assert care_plan["activity"][0]["detail"]["status"] == "completed"
    assert "revision 1 (completed)" in care_plan["text"]["div"] and "to 2026-03-25" in care_plan["text"]["div"]
    assert "M54.50" in care_plan["text"]["div"]  # the diagnosis line is kept
    assert any(e["url"].endswith("plan-certified") for e in care_plan["extension"])
    assert validate_resource(care_plan) == []

    # goals no longer sought: completed (achievement untouched), the one never taken up cancelled
    goals = {g["description"]["text"]: g for g in
             (client.get(f"/fhir/{ref['reference']}").json() for ref in care_plan["goal"])}
    assert {text: g["lifecycleStatus"] for text, g in goals.items()} == {
        "Walk 300 m without pain": "completed", "Return to gardening": "completed",
        "Lift 10 kg from the floor": "cancelled", "Sit to stand without hands": "completed"}
    assert "achievementStatus" not in goals["Walk 300 m without pain"]
    assert goals["Return to gardening"]["achievementStatus"]["coding"][0]["code"] == "in-progress"
    assert goals["Sit to stand without hands"]["achievementStatus"]["coding"][0]["code"] == "achieved"
    for goal in goals.values():
        assert goal["statusDate"] == "2026-03-25" and goal["statusReason"] == "patient discharged"
        assert validate_resource(goal) == []

    # the plan's services are completed; the referrer's order is the referrer's
    for activity in care_plan["activity"][1:]:
        service = client.get(f"/fhir/{activity['reference']['reference']}").json()
        assert service["status"] == "completed" and validate_resource(service) == []
    assert client.get(f"/fhir/{view['service_request']}").json()["status"] == "active"

    # the partner following obligations heard of each closing, the reminder service of none
    routed = {route: _routed(client, route) for route in ("obligations", "overdue")}
    closings = sorted((ref, int(versions[ref]) + 1) for ref in open_before)
    assert sorted(set(routed["obligations"]) - set(routed_before["obligations"])) == closings
    assert routed["overdue"] == routed_before["overdue"]
    jobs_after_discharge = list(enqueued)
    everything = [*before, care_plan_ref, *(g["reference"] for g in care_plan["goal"])]
    frozen = _versions(client, everything)

    # nothing reopens them: the clock endpoint, a late visit, a signature, the scheduled job weeks later
    recomputed = client.post(f"/care-plans/{care_plan_ref.split('/')[1]}/clocks")
    assert recomputed.status_code == 200
    assert {o["task"]: o["status"] for o in recomputed.json()} == {r: o["status"] for r, o in after.items()}
    clock.now = datetime(2026, 3, 26, 11, 0)
    _encounter(client, view["service_request"], view["patient"], clock.now)
    recertification = kinds["recertification"]["task"].split("/")[1]
    refused = client.post(f"/certifications/{recertification}/sign", json={})
    assert refused.status_code == 409 and "cancelled" in refused.json()["title"]
    # nor does a plain FHIR PUT that "completes" the cancelled obligation (it would record a signature)
    closed = client.get(f"/fhir/Task/{recertification}").json()
    signatures = client.get("/fhir/Provenance", params={"_summary": "count"}).json()["total"]
    forced = client.put(f"/fhir/Task/{recertification}", content=json.dumps({**closed, "status": "completed"}),
                        headers={"Content-Type": "application/fhir+json"})
    assert forced.status_code == 409 and "cancelled" in forced.text
    assert client.get("/fhir/Provenance", params={"_summary": "count"}).json()["total"] == signatures
    monkeypatch.setattr("workers.tasks.get_settings", lambda: settings)
    assert certification_clocks(now="2026-05-01T08:00:00") == 0  # no active plan left to recompute
    assert _versions(client, everything) == frozen
    assert client.get("/certifications").json() == []
    assert {route: _routed(client, route) for route in ("obligations", "overdue")} == routed
    assert enqueued == jobs_after_discharge


def _boom(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("fails after the obligations were written")


def test_a_second_discharge_is_a_409_that_changes_nothing(app_client: TestClient, clock: Clock) -> None:
    client = app_client
    view, task_id, plan = _start(client, clock)
    clock.now = datetime(2026, 3, 20, 9, 0)
    first = _discharge(client, task_id)
    assert first.status_code == 200, first.text
    everything = [view["task"], plan["care_plan"], first.json()["feedback"],
                  *(o["task"] for o in plan["obligations"])]
    versions = _versions(client, everything)

    clock.now = datetime(2026, 3, 21, 9, 0)
    again = _discharge(client, task_id)
    assert again.status_code == 409
    assert again.json()["title"] == "This referral is discharged already (Task.status completed)"
    assert _versions(client, everything) == versions
    referrer_told = client.get("/fhir/Communication", params={"based-on": view["task"]}).json()["total"]
    assert _discharge(client, task_id).status_code == 409
    assert client.get("/fhir/Communication", params={"based-on": view["task"]}).json()["total"] == referrer_told


def test_a_discharge_after_the_planned_end_keeps_the_certified_period(
    app_client: TestClient, clock: Clock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.tasks import certification_clocks

    client = app_client
    view, task_id, plan = _start(client, clock)
    certification = next(o for o in plan["obligations"] if o["kind"] == "certification")
    monkeypatch.setattr("workers.tasks.get_settings", lambda: settings)
    assert certification_clocks(now="2026-04-20T08:00:00") == 1  # never signed: overdue
    clock.now = datetime(2026, 4, 20, 9, 0)
    overdue = _obligations(client, plan["care_plan"])[certification["task"]]
    assert overdue["status"] == "requested" and overdue["business_status"] == "overdue" and overdue["overdue"]

    assert _discharge(client, task_id).status_code == 200
    closed = _obligations(client, plan["care_plan"])[certification["task"]]
    assert (closed["status"], closed["status_reason"], closed["business_status"], closed["overdue"]) == (
        "cancelled", "patient discharged", "not-required", False)
    care_plan = client.get(f"/fhir/{plan['care_plan']}").json()
    assert care_plan["status"] == "completed"
    assert care_plan["period"] == {"start": PLAN["period_start"], "end": PLAN["period_end"]}  # not stretched
    assert client.get("/certifications").json() == []


def test_a_cancelled_referral_revokes_its_plan(app_client: TestClient, clock: Clock) -> None:
    client = app_client
    view, task_id, plan = _start(client, clock)
    clock.now = datetime(2026, 3, 10, 9, 0)
    cancelled = client.post(f"/referrals/{task_id}/status",
                            json={"status": "cancelled", "reason": "Patient moved away"})
    assert cancelled.status_code == 200, cancelled.text
    obligations = _obligations(client, plan["care_plan"])
    assert obligations and all(o["status"] == "cancelled" and o["status_reason"] == "referral cancelled"
                               for o in obligations.values())
    care_plan = client.get(f"/fhir/{plan['care_plan']}").json()
    assert care_plan["status"] == "revoked" and care_plan["period"]["end"] == "2026-03-10"
    assert care_plan["activity"][0]["detail"]["status"] == "stopped"
    for activity in care_plan["activity"][1:]:
        assert client.get(f"/fhir/{activity['reference']['reference']}").json()["status"] == "revoked"
    goal = client.get(f"/fhir/{care_plan['goal'][0]['reference']}").json()
    assert goal["lifecycleStatus"] == "completed" and goal["statusReason"] == "referral cancelled"
    assert validate_resource(care_plan) == [] and validate_resource(goal) == []
    assert client.get("/certifications").json() == []


def test_a_referral_completed_through_fhir_ends_its_plan_too(app_client: TestClient, clock: Clock) -> None:
    client = app_client
    view, task_id, plan = _start(client, clock)
    clock.now = datetime(2026, 3, 18, 9, 0)
    task = client.get(f"/fhir/{view['task']}").json()
    task["status"] = "completed"
    task["businessStatus"] = {"coding": [{"system": "http://hl7.org/fhir/us/bser/CodeSystem/TaskBusinessStatusCS",
                                          "code": "7.0"}]}
    assert client.put(f"/fhir/{view['task']}", content=json.dumps(task), headers=FHIR).status_code == 200
    assert client.get("/certifications").json() == []
    assert {o["status_reason"] for o in _obligations(client, plan["care_plan"]).values()} == {"patient discharged"}
    care_plan = client.get(f"/fhir/{plan['care_plan']}").json()
    assert care_plan["status"] == "completed" and care_plan["period"]["end"] == "2026-03-18"


def test_the_clock_job_closes_plans_of_referrals_that_ended_before(
    app_client: TestClient, clock: Clock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plans whose referral was discharged before the hub closed them at discharge are closed by the next
    clock run, as of the day the referral ended, instead of being recomputed."""
    from hub.referrals.plans import PlanService
    from workers.tasks import certification_clocks

    client = app_client
    view, task_id, plan = _start(client, clock)
    other_view, other_id, other_plan = _start(client, clock, "R-2002")
    clock.now = datetime(2026, 3, 16, 9, 0)
    with monkeypatch.context() as patch:  # the hub as it was: the discharge left the plan open
        patch.setattr(PlanService, "end_episode", lambda self, task, ended: None)
        assert _discharge(client, task_id).status_code == 200
    assert client.get(f"/fhir/{plan['care_plan']}").json()["status"] == "active"
    assert any(o["care_plan"] == plan["care_plan"] for o in client.get("/certifications").json())

    monkeypatch.setattr("workers.tasks.get_settings", lambda: settings)
    assert certification_clocks(now="2026-04-03T08:00:00") == 1  # only the other referral's plan
    care_plan = client.get(f"/fhir/{plan['care_plan']}").json()
    assert care_plan["status"] == "completed" and care_plan["period"]["end"] == "2026-03-16"
    assert {o["care_plan"] for o in client.get("/certifications").json()} == {other_plan["care_plan"]}
    closed = _obligations(client, plan["care_plan"])
    assert closed and all(o["status"] == "cancelled" and o["status_reason"] == "patient discharged"
                          for o in closed.values())
    assert certification_clocks(now="2026-04-04T08:00:00") == 1
