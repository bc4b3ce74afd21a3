"""The whole referral loop through the API, with time injected (never slept):
intake -> accepted -> plan of care -> certification due -> signed -> visits -> progress report
due at visit 10 -> overdue certification of a revised plan -> discharge with feedback."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.deps import get_clock
from hub.settings import Settings
from mappings.fhir.validation import validate_resource
from tests.referrals.test_intake_and_task import referral

FHIR = {"Content-Type": "application/fhir+json"}


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 2, 9, 0, 0))


@pytest.fixture
def app_client(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    app = create_app(settings)
    app.dependency_overrides[get_clock] = lambda: clock
    with TestClient(app, base_url="http://testserver") as client:
        yield client


PLAN = {
    "author": "PractitionerRole/therapist-1",
    "period_start": "2026-03-03",
    "period_end": "2026-04-13",
    "frequency_per_week": 2,
    "duration_weeks": 6,
    "activities": [
        {"code": "97161", "display": "PT evaluation, low complexity", "count": 1},
        {"code": "97110", "display": "Therapeutic exercise"},
        {"code": "97140", "display": "Manual therapy"},
    ],
    "goals": [
        {"term": "short", "description": "Walk 300 m without pain", "due_date": "2026-03-24",
         "measure": {"system": "http://loinc.org", "code": "72514-3", "display": "Pain severity"},
         "detail_quantity": {"value": "2", "unit": "score"}},
        {"term": "long", "description": "Return to gardening", "due_date": "2026-04-13",
         "achievement_status": "in-progress"},
    ],
}


def _encounter(client: TestClient, sr_ref: str, patient_ref: str, day: datetime) -> None:
    encounter = {"resourceType": "Encounter", "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                 "subject": {"reference": patient_ref}, "basedOn": [{"reference": sr_ref}],
                 "period": {"start": day.date().isoformat() + "T10:00:00Z",
                            "end": day.date().isoformat() + "T10:45:00Z"}}
    assert client.post("/fhir/Encounter", content=json.dumps(encounter), headers=FHIR).status_code == 201


def _all_references_resolve(client: TestClient, resource: dict) -> None:
    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str) and "/" in value and not value.startswith("#"):
                    target = value.split("/_history/")[0]
                    if target.startswith(("PractitionerRole/therapist-1",)):
                        continue
                    assert client.get(f"/fhir/{target}").status_code == 200, value
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(resource)


def test_the_whole_referral_loop(app_client: TestClient, clock: Clock) -> None:
    client = app_client
    view = client.post("/referrals", json=referral()).json()
    task_id = view["task"].split("/")[1]
    assert client.post(f"/referrals/{task_id}/plan-of-care", json=PLAN).status_code == 409  # not accepted yet
    assert client.post(f"/referrals/{task_id}/status", json={"status": "accepted"}).status_code == 200

    clock.advance(days=1)  # 2026-03-03, evaluation day
    plan = client.post(f"/referrals/{task_id}/plan-of-care", json=PLAN)
    assert plan.status_code == 201, plan.text
    plan = plan.json()
    care_plan = client.get(f"/fhir/{plan['care_plan']}").json()
    assert care_plan["status"] == "active" and care_plan["intent"] == "plan"
    assert validate_resource(care_plan) == []
    _all_references_resolve(client, care_plan)
    document = client.get(f"/fhir/{plan['document']}").json()
    pdf = base64.b64decode(document["content"][0]["attachment"]["data"])
    assert pdf.startswith(b"%PDF")
    assert document["content"][0]["attachment"]["hash"] == base64.b64encode(hashlib.sha1(pdf).digest()).decode()
    assert client.get("/referrals").json()[0]["status"] == "in-progress"

    obligations = {o["kind"]: o for o in plan["obligations"]}
    certification = obligations["certification"]
    assert certification["due"] == "2026-04-02"  # 30 days after the initial treatment (2026-03-03)
    assert certification["owner"] == view["requester"]  # the referring physician signs
    due = client.get("/certifications", params={"due_before": "2026-04-02", "owner": view["requester"]}).json()
    assert [d["task"] for d in due] == [certification["task"]]
    assert client.get("/certifications", params={"due_before": "2026-04-01"}).json() == [] or all(
        d["kind"] != "certification" for d in client.get("/certifications", params={"due_before": "2026-04-01"}).json())

    # the physician signs on day 10, through the friendly endpoint
    clock.advance(days=9)
    signed = client.post(f"/certifications/{certification['task'].split('/')[1]}/sign",
                         json={"signature": base64.b64encode(b"sig").decode()})
    assert signed.status_code == 200 and signed.json()["status"] == "completed"
    provenance = client.get("/fhir/Provenance", params={"target": plan["care_plan"]}).json()
    assert provenance["total"] == 1
    signature = provenance["entry"][0]["resource"]["signature"][0]
    assert signature["who"]["reference"] == view["requester"]
    assert validate_resource(provenance["entry"][0]["resource"]) == []
    certified = client.get(f"/fhir/{plan['care_plan']}").json()
    assert any(e["url"].endswith("plan-certified") for e in certified["extension"])
    assert client.post(f"/certifications/{certification['task'].split('/')[1]}/sign", json={}).status_code == 409

    # visits: nine treatment days -> no progress report yet; the tenth -> due
    sr_ref, patient_ref = view["service_request"], view["patient"]
    day = datetime(2026, 3, 12, 11, 0)
    for _ in range(9):
        clock.now = day
        _encounter(client, sr_ref, patient_ref, day)
        day += timedelta(days=1)
    progress = [o for o in client.get("/certifications").json() if o["kind"] == "progress-report"]
    assert not progress or all(o["business_status"] != "due" for o in progress)
    clock.now = day
    _encounter(client, sr_ref, patient_ref, day)
    progress = [o for o in client.get("/certifications").json() if o["kind"] == "progress-report"]
    assert len(progress) == 1 and progress[0]["business_status"] == "due"
    assert progress[0]["owner"] == view["owner"]  # the clinic writes progress reports

    # the plan is revised after certification: a new certification is needed, and goes overdue
    revised = dict(PLAN, frequency_per_week=3)
    clock.now = datetime(2026, 3, 23, 9, 0)
    again = client.post(f"/referrals/{task_id}/plan-of-care", json=revised).json()
    assert again["revision"] == 2 and again["care_plan"] == plan["care_plan"]
    recert = [o for o in again["obligations"] if o["kind"] == "recertification" and o["status"] == "requested"]
    assert recert, again["obligations"]
    clock.now = datetime.fromisoformat(recert[0]["due"]) + timedelta(days=1, hours=9)
    refreshed = client.post(f"/care-plans/{plan['care_plan'].split('/')[1]}/clocks").json()
    overdue = [o for o in refreshed if o["kind"] == "recertification" and o["status"] == "requested"]
    assert overdue and overdue[0]["overdue"] and overdue[0]["business_status"] == "overdue"

    # discharge: feedback Composition in Task.output, Task completed, referrer told
    done = client.post(f"/referrals/{task_id}/discharge",
                       json={"summary": "12 visits; independent with home program", "outcome": "Goals met"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    task = client.get(f"/fhir/{view['task']}").json()
    assert task["output"][-1]["valueReference"]["reference"] == done.json()["feedback"]
    composition = client.get(f"/fhir/{done.json()['feedback']}").json()
    assert validate_resource(composition) == []
    _all_references_resolve(client, composition)
    told = client.get("/fhir/Communication", params={"recipient": view["requester"]}).json()
    texts = [e["resource"]["payload"][0]["contentString"] for e in told["entry"]]
    assert any("signature" in t for t in texts) and any("completed" in t for t in texts)
    for resource_type in ("Task", "CarePlan", "Goal", "ServiceRequest", "DocumentReference", "Provenance",
                          "Communication", "Composition", "Encounter"):
        for entry in client.get(f"/fhir/{resource_type}", params={"_count": 100}).json().get("entry", []):
            if entry["search"]["mode"] == "match":
                assert validate_resource(entry["resource"]) == [], (resource_type, entry["resource"]["id"])


def test_certification_rules_follow_the_payer(settings: Settings, clock: Clock) -> None:
    custom = settings.model_copy(update={"certification_rules": {
        "PAYER-77": {"initial_certification_days": 14, "progress_report_visits": None}}})
    app = create_app(custom)
    app.dependency_overrides[get_clock] = lambda: clock
    with TestClient(app, base_url="http://testserver") as client:
        body = referral(coverage={"payer": "Acme Health", "member_id": "A-1", "payer_id": "PAYER-77"})
        view = client.post("/referrals", json=body).json()
        task_id = view["task"].split("/")[1]
        client.post(f"/referrals/{task_id}/status", json={"status": "accepted"})
        plan = client.post(f"/referrals/{task_id}/plan-of-care", json=PLAN).json()
        kinds = {o["kind"]: o for o in plan["obligations"]}
        assert kinds["certification"]["due"] == "2026-03-17"  # 14 days, not Medicare's 30
        assert "progress-report" not in kinds

        medicare = client.post("/referrals", json=referral("R-2")).json()
        client.post(f"/referrals/{medicare['task'].split('/')[1]}/status", json={"status": "accepted"})
        other = client.post(f"/referrals/{medicare['task'].split('/')[1]}/plan-of-care", json=PLAN).json()
        assert {o["kind"]: o for o in other["obligations"]}["certification"]["due"] == "2026-04-02"


def test_the_scheduled_clock_task_flags_overdue_certifications(
    settings: Settings, clock: Clock, monkeypatch
) -> None:
    from workers.tasks import certification_clocks

    app = create_app(settings)
    app.dependency_overrides[get_clock] = lambda: clock
    with TestClient(app, base_url="http://testserver") as client:
        view = client.post("/referrals", json=referral()).json()
        task_id = view["task"].split("/")[1]
        client.post(f"/referrals/{task_id}/status", json={"status": "accepted"})
        plan = client.post(f"/referrals/{task_id}/plan-of-care", json=PLAN).json()
        certification = next(o for o in plan["obligations"] if o["kind"] == "certification")
        assert not certification["overdue"]

        # the task function itself, called directly with the test's settings, as of the day after the due date
        monkeypatch.setattr("workers.tasks.get_settings", lambda: settings)
        assert certification_clocks(now="2026-04-03T08:00:00") == 1
        after = [o for o in client.get("/certifications").json() if o["task"] == certification["task"]]
        assert after[0]["business_status"] == "overdue"


def test_the_scheduled_clock_task_reaches_every_plan_past_the_first_page(
    settings: Settings, clock: Clock, monkeypatch
) -> None:
    """A clinic with more active plans than one search page holds: every plan is recomputed (the
    page is made tiny here; the store's page is 500)."""
    from hub.referrals.service import ReferralService
    from workers.tasks import certification_clocks

    app = create_app(settings)
    app.dependency_overrides[get_clock] = lambda: clock
    with TestClient(app, base_url="http://testserver") as client:
        for number in ("R-P1", "R-P2", "R-P3"):
            task_id = client.post("/referrals", json=referral(number)).json()["task"].split("/")[1]
            client.post(f"/referrals/{task_id}/status", json={"status": "accepted"})
            assert client.post(f"/referrals/{task_id}/plan-of-care", json=PLAN).status_code == 201
        monkeypatch.setattr(ReferralService, "search_page", 2)
        monkeypatch.setattr("workers.tasks.get_settings", lambda: settings)
        assert certification_clocks(now="2026-04-03T08:00:00") == 3
        overdue = [o for o in client.get("/certifications").json()
                   if o["kind"] == "certification" and o["business_status"] == "overdue"]
        assert len(overdue) == 3
