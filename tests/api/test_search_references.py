"""FHIR search through /fhir: reference parameters and the search parameters of the therapy resources."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.search_support import BASE, SCT, concept, create, found, service_request

# ------------------------------------------------------------------ references


def test_patient_and_subject_reference_forms(client: TestClient) -> None:
    to_p1 = create(client, service_request(subject={"reference": "Patient/p1"}))["id"]
    absolute = create(client, service_request(subject={"reference": f"{BASE}/Patient/p1"}))["id"]
    versioned = create(client, service_request(subject={"reference": "Patient/p1/_history/3"}))["id"]
    to_p2 = create(client, service_request(subject={"reference": "Patient/p2"}))["id"]
    group = create(client, service_request(subject={"reference": "Group/p1"}))["id"]
    p1_all = {to_p1, absolute, versioned}

    def sr(params) -> set[str]:  # type: ignore[no-untyped-def]
        return found(client, "ServiceRequest", params)

    assert sr({"patient": "Patient/p1"}) == p1_all
    assert sr({"patient": "p1"}) == p1_all
    assert sr({"patient": f"{BASE}/Patient/p1"}) == p1_all
    assert sr({"subject": "Patient/p1"}) == p1_all
    assert sr({"subject": f"{BASE}/Patient/p1"}) == p1_all
    assert sr({"subject:Patient": "p1"}) == p1_all
    assert sr({"subject:Group": "p1"}) == {group}
    assert sr({"subject": "p1"}) == p1_all | {group}  # bare id, any target type
    assert sr({"subject": "Group/p1"}) == {group}
    assert sr({"patient": "Group/p1"}) == set()
    assert sr({"patient": "p1,p2"}) == p1_all | {to_p2}
    assert sr({"patient": "Patient/p3"}) == set()


def test_service_request_requester_performer_authored_category(client: TestClient) -> None:
    sr1 = create(
        client,
        service_request(
            requester={"reference": "Practitioner/dr1"},
            performer=[{"reference": "Organization/clinic"}, {"reference": "Practitioner/pt1"}],
            authoredOn="2024-03-15T10:00:00+01:00",
            category=[concept("91251008")],
        ),
    )["id"]
    sr2 = create(
        client,
        service_request(
            requester={"reference": "PractitionerRole/role1"},
            performer=[{"reference": "Practitioner/pt2"}],
            authoredOn="2024-03-16",
            category=[concept("386053000"), concept("OT", "urn:local")],
        ),
    )["id"]
    sr3 = create(client, service_request(requester={"reference": "Practitioner/dr1"}, authoredOn="2024-04"))[
        "id"
    ]
    sr4 = create(client, service_request())["id"]

    def sr(params) -> set[str]:  # type: ignore[no-untyped-def]
        return found(client, "ServiceRequest", params)

    assert sr({"requester": "Practitioner/dr1"}) == {sr1, sr3}
    assert sr({"requester": "role1"}) == {sr2}
    assert sr({"requester:PractitionerRole": "role1"}) == {sr2}
    assert sr({"requester:Practitioner": "role1"}) == set()
    assert sr({"performer": "Practitioner/pt1"}) == {sr1}
    assert sr({"performer": "Organization/clinic,Practitioner/pt2"}) == {sr1, sr2}
    assert sr({"performer:missing": "true"}) == {sr3, sr4}

    assert sr({"category": f"{SCT}|91251008"}) == {sr1}
    assert sr({"category": "386053000"}) == {sr2}
    assert sr({"category": "urn:local|OT"}) == {sr2}
    assert sr({"category": f"{SCT}|OT"}) == set()
    assert sr({"category": f"{SCT}|"}) == {sr1, sr2}

    # authoredOn 2024-03-15T10:00:00+01:00 is 09:00Z; 2024-03-16 is a whole day; 2024-04 a month
    assert sr({"authored": "2024-03-15"}) == {sr1}
    assert sr({"authored": "2024-03"}) == {sr1, sr2}
    assert sr({"authored": "2024"}) == {sr1, sr2, sr3}
    assert sr({"authored": "gt2024-03-15"}) == {sr2, sr3}
    assert sr({"authored": "ge2024-03-16"}) == {sr2, sr3}
    assert sr({"authored": "lt2024-03-16"}) == {sr1}
    assert sr({"authored": "le2024-03-16"}) == {sr1, sr2}
    assert sr({"authored": "le2024-03-15T09:00:00Z"}) == {sr1}
    assert sr({"authored": "lt2024-03-15T09:00:00Z"}) == set()
    assert sr({"authored": "eq2024-03-15T10:00:00+01:00"}) == {sr1}
    assert sr({"authored": "2024-03-15T09:00:00Z"}) == {sr1}
    assert sr({"authored": "2024-03-15T10:00:00Z"}) == set()
    assert sr({"authored": "sa2024-03-15"}) == {sr2, sr3}
    assert sr({"authored": "eb2024-04-01"}) == {sr1, sr2}
    assert sr({"authored": "ne2024-03"}) == {sr3}
    assert sr({"authored:missing": "true"}) == {sr4}
    assert sr([("authored", "ge2024-03-16"), ("authored", "lt2024-04")]) == {sr2}
    assert sr({"authored": "2024-03-15,2024-04"}) == {sr1, sr3}


def test_task_focus_owner_code_status(client: TestClient) -> None:
    code = "http://hl7.org/fhir/CodeSystem/task-code"

    def task(**extra) -> dict:  # type: ignore[no-untyped-def]
        return {"resourceType": "Task", "intent": "order", **extra}

    t1 = create(
        client,
        task(
            status="ready",
            focus={"reference": "ServiceRequest/sr1"},
            owner={"reference": "Practitioner/pt1"},
            code=concept("fulfill", code),
            **{"for": {"reference": "Patient/p1"}},
        ),
    )["id"]
    t2 = create(
        client,
        task(
            status="in-progress",
            focus={"reference": "CarePlan/sr1"},
            owner={"reference": "Organization/o1"},
            code=concept("approve", code),
        ),
    )["id"]
    t3 = create(client, task(status="completed", focus={"reference": "ServiceRequest/sr2"}))["id"]

    def tk(params) -> set[str]:  # type: ignore[no-untyped-def]
        return found(client, "Task", params)

    assert tk({"focus": "ServiceRequest/sr1"}) == {t1}
    assert tk({"focus": "sr1"}) == {t1, t2}
    assert tk({"focus:ServiceRequest": "sr1,sr2"}) == {t1, t3}
    assert tk({"owner": "Practitioner/pt1"}) == {t1}
    assert tk({"owner:Organization": "o1"}) == {t2}
    assert tk({"owner:missing": "true"}) == {t3}
    assert tk({"code": f"{code}|fulfill"}) == {t1}
    assert tk({"code": "approve,fulfill"}) == {t1, t2}
    assert tk({"status": "ready,in-progress"}) == {t1, t2}
    assert tk({"status:not": "completed"}) == {t1, t2}
    assert tk({"patient": "p1"}) == {t1}
    assert tk({"subject": "Patient/p1"}) == {t1}
    assert tk([("status", "ready,completed"), ("focus:ServiceRequest", "sr2")]) == {t3}


def test_care_plan_status_and_period_date(client: TestClient) -> None:
    def plan(status: str = "active", **period: str) -> str:
        resource = {
            "resourceType": "CarePlan",
            "status": status,
            "intent": "plan",
            "subject": {"reference": "Patient/p1"},
        }
        if period:
            resource["period"] = period
        return create(client, resource)["id"]

    a = plan(start="2024-01-01", end="2024-03-31")
    b = plan("completed", start="2024-03-01", end="2024-06-30")
    c = plan(start="2024-05-01")  # open end
    d = plan("revoked", end="2023-12-31")  # open start
    f = plan("draft", start="2024-03-10", end="2024-03-20")
    e = plan()  # no period

    def cp(*values: str) -> set[str]:
        return found(client, "CarePlan", [("date", v) for v in values])

    assert cp("2024-03") == {f}  # eq: the period lies within March
    assert cp("2024") == {a, b, f}
    assert cp("2023") == set()  # open start is not within 2023
    assert cp("gt2024-04-30") == {b, c}  # some part after
    assert cp("lt2024-01-15") == {a, d}  # some part before
    assert cp("ge2024-07-01") == {c}
    assert cp("le2023-12-31") == {d}
    assert cp("sa2024-02-29") == {b, c, f}  # starts after
    assert cp("eb2024-03-01") == {d}  # ends before
    assert cp("ne2024-03") == {a, b, c, d}
    assert cp("gt2024-04-30", "lt2024-05-15") == {b, c}  # overlaps the first half of May
    assert cp("2024-03,eb2024-01") == {f, d}
    assert found(client, "CarePlan", {"date:missing": "true"}) == {e}
    assert found(client, "CarePlan", {"status": "active"}) == {a, c, e}
    assert found(client, "CarePlan", {"status": "completed,revoked"}) == {b, d}
    assert found(client, "CarePlan", [("status", "active"), ("date", "gt2024-04-30")]) == {c}


def test_goal_lifecycle_and_achievement_status(client: TestClient) -> None:
    achievement = "http://terminology.hl7.org/CodeSystem/goal-achievement"

    def goal(lifecycle: str, achieved: str | None = None) -> str:
        resource = {
            "resourceType": "Goal",
            "lifecycleStatus": lifecycle,
            "description": {"text": "Walk 500 m without a cane"},
            "subject": {"reference": "Patient/p1"},
        }
        if achieved:
            resource["achievementStatus"] = concept(achieved, achievement)
        return create(client, resource)["id"]

    g1 = goal("active", "in-progress")
    g2 = goal("completed", "achieved")
    g3 = goal("cancelled", "not-achieved")
    g4 = goal("active")
    assert found(client, "Goal", {"lifecycle-status": "active"}) == {g1, g4}
    assert found(client, "Goal", {"lifecycle-status": "completed,cancelled"}) == {g2, g3}
    assert found(client, "Goal", {"lifecycle-status:not": "active"}) == {g2, g3}
    assert found(client, "Goal", {"achievement-status": "achieved"}) == {g2}
    assert found(client, "Goal", {"achievement-status": f"{achievement}|in-progress"}) == {g1}
    assert found(client, "Goal", {"achievement-status": "urn:other|achieved"}) == set()
    assert found(client, "Goal", {"achievement-status:missing": "true"}) == {g4}
    assert found(client, "Goal", [("lifecycle-status", "active"), ("achievement-status", "in-progress")]) == {
        g1
    }
    assert found(client, "Goal", {"patient": "p1"}) == {g1, g2, g3, g4}
