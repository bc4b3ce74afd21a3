"""FHIR search through /fhir: parameters of every type, modifiers, prefixes, paging, _include, errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}
STRICT = {"Prefer": "handling=strict"}
BASE = "http://testserver/fhir"
SCT = "http://snomed.info/sct"
ID_SYS = "urn:oid:2.16.840.1.113883.3.1"


# ------------------------------------------------------------------ helpers


def create(client: TestClient, resource: dict) -> dict:
    response = client.post(f"/fhir/{resource['resourceType']}", content=json.dumps(resource), headers=FHIR)
    assert response.status_code == 201, response.text
    return response.json()


def put(client: TestClient, resource: dict) -> dict:
    response = client.put(
        f"/fhir/{resource['resourceType']}/{resource['id']}", content=json.dumps(resource), headers=FHIR
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def delete(client: TestClient, resource_type: str, resource_id: str) -> None:
    assert client.delete(f"/fhir/{resource_type}/{resource_id}").status_code == 204


def search(client: TestClient, path: str, params=None, headers=None, status: int = 200) -> dict:  # type: ignore[no-untyped-def]
    response = client.get(f"/fhir/{path}", params=params, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    return response.json()


def matches(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def found(client: TestClient, path: str, params=None) -> set[str]:  # type: ignore[no-untyped-def]
    """The ids matched by a search (all on one page), checking Bundle.total agrees."""
    bundle = search(client, path, params)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    ids = matches(bundle)
    assert len(ids) == len(set(ids)), "a resource was returned twice"
    assert bundle["total"] == len(ids)
    return set(ids)


def link(bundle: dict, relation: str) -> str | None:
    return next((li["url"] for li in bundle.get("link", []) if li["relation"] == relation), None)


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def service_request(**extra) -> dict:  # type: ignore[no-untyped-def]
    resource = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
    }
    resource.update(extra)
    return resource


def concept(code: str, system: str = SCT) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def shift(instant: str, hours: int) -> str:
    """``instant`` (UTC, ...Z) written in the zone UTC+hours, e.g. ``...T12:00:00.123456+02:00``."""
    value = datetime.fromisoformat(instant.replace("Z", "+00:00")) + timedelta(hours=hours)
    return (
        value.replace(tzinfo=None).isoformat(timespec="microseconds")
        + f"{'+' if hours >= 0 else '-'}{abs(hours):02d}:00"
    )


# ------------------------------------------------------------------ _id and _lastUpdated


def test_id_single_and_comma_list(client: TestClient) -> None:
    a, b, c = (create(client, service_request())["id"] for _ in range(3))
    assert found(client, "ServiceRequest", {"_id": a}) == {a}
    assert found(client, "ServiceRequest", {"_id": f"{a},{c}"}) == {a, c}
    assert found(client, "ServiceRequest", {"_id": "unknown"}) == set()
    assert found(client, "ServiceRequest", {"_id:not": b}) == {a, c}
    # an id of another type is not found through this type
    patient = create(client, {"resourceType": "Patient"})["id"]
    assert found(client, "ServiceRequest", {"_id": patient}) == set()
    assert found(client, "Patient", {"_id": patient}) == {patient}


def test_last_updated_prefixes(client: TestClient) -> None:
    created = [create(client, service_request()) for _ in range(4)]
    r1, r2, r3, r4 = (c["id"] for c in created)
    t1, t2, t3, t4 = (c["meta"]["lastUpdated"] for c in created)
    assert t1 < t2 < t3 < t4

    def lu(*values: str) -> set[str]:
        return found(client, "ServiceRequest", [("_lastUpdated", v) for v in values])

    assert lu(t2) == {r2}
    assert lu(f"eq{t2}") == {r2}
    assert lu(f"gt{t2}") == {r3, r4}
    assert lu(f"ge{t2}") == {r2, r3, r4}
    assert lu(f"lt{t3}") == {r1, r2}
    assert lu(f"le{t3}") == {r1, r2, r3}
    assert lu(f"ne{t2}") == {r1, r3, r4}
    assert lu(f"sa{t2}") == {r3, r4}
    assert lu(f"eb{t3}") == {r1, r2}
    # repeated parameter = AND (a range), comma = OR
    assert lu(f"ge{t2}", f"le{t3}") == {r2, r3}
    assert lu(f"gt{t3}", f"lt{t2}") == set()
    assert lu(f"{t1},{t4}") == {r1, r4}
    # a whole day, and a year, at lower precision
    day = t1[:10]
    assert lu(f"eq{day}") == {c["id"] for c in created if c["meta"]["lastUpdated"][:10] == day}
    assert lu(t1[:4]) == {c["id"] for c in created if c["meta"]["lastUpdated"][:4] == t1[:4]}
    assert lu("lt2000-01-01") == set()
    assert lu("gt2000") == {r1, r2, r3, r4}


def test_last_updated_with_time_zone_offsets(client: TestClient) -> None:
    first = create(client, service_request())
    second = create(client, service_request())
    t2 = second["meta"]["lastUpdated"]
    assert found(client, "ServiceRequest", {"_lastUpdated": shift(t2, 2)}) == {second["id"]}
    assert found(client, "ServiceRequest", {"_lastUpdated": f"lt{shift(t2, -5)}"}) == {first["id"]}
    # '+' not percent-encoded in the URL arrives as a space: still understood as the offset
    raw = search(client, f"ServiceRequest?_lastUpdated=eq{shift(t2, 3)}")
    assert matches(raw) == [second["id"]]


# ------------------------------------------------------------------ tokens


def test_identifier_forms(client: TestClient) -> None:
    with_system = create(client, service_request(identifier=[{"system": ID_SYS, "value": "REF-1"}]))["id"]
    other_system = create(client, service_request(identifier=[{"system": "urn:other", "value": "REF-1"}]))[
        "id"
    ]
    no_system = create(client, service_request(identifier=[{"value": "REF-1"}]))["id"]
    second = create(client, service_request(identifier=[{"system": ID_SYS, "value": "REF-2"}]))["id"]
    none = create(client, service_request())["id"]

    def ident(value: str) -> set[str]:
        return found(client, "ServiceRequest", {"identifier": value})

    assert ident(f"{ID_SYS}|REF-1") == {with_system}
    assert ident("|REF-1") == {no_system}
    assert ident("REF-1") == {with_system, other_system, no_system}
    assert ident(f"{ID_SYS}|") == {with_system, second}
    assert ident("ref-1") == set()  # token codes are case-sensitive
    assert ident(f"{ID_SYS}|REF-1,urn:other|REF-1") == {with_system, other_system}
    assert found(client, "ServiceRequest", {"identifier:missing": "true"}) == {none}


def test_long_identifiers_are_stored_and_found(client: TestClient) -> None:
    system, value = "urn:x:" + "s" * 300, "v" * 300
    rid = create(client, service_request(identifier=[{"system": system, "value": value}]))["id"]
    # (values longer than the 255 characters the index keeps are compared on those 255 characters)
    other = create(client, service_request(identifier=[{"system": system, "value": "w" * 300}]))["id"]
    assert found(client, "ServiceRequest", {"identifier": f"{system}|{value}"}) == {rid}
    assert found(client, "ServiceRequest", {"identifier": value}) == {rid}
    assert found(client, "ServiceRequest", {"identifier": f"{system}|"}) == {rid, other}


def test_status_and_not(client: TestClient) -> None:
    active = create(client, service_request(status="active"))["id"]
    done = create(client, service_request(status="completed"))["id"]
    revoked = create(client, service_request(status="revoked"))["id"]
    assert found(client, "ServiceRequest", {"status": "active"}) == {active}
    assert found(client, "ServiceRequest", {"status": "active,completed"}) == {active, done}
    assert found(client, "ServiceRequest", {"status:not": "active"}) == {done, revoked}
    assert found(client, "ServiceRequest", {"status:not": "active,revoked"}) == {done}
    assert found(client, "ServiceRequest", [("status:not", "active"), ("status:not", "completed")]) == {
        revoked
    }
    assert found(client, "ServiceRequest", {"status": "draft"}) == set()


def test_missing_true_and_false(client: TestClient) -> None:
    full = create(
        client,
        service_request(
            authoredOn="2024-01-01",
            performer=[{"reference": "Practitioner/pr1"}],
            category=[concept("91251008")],
        ),
    )["id"]
    bare = create(client, service_request())["id"]
    for param in ("authored", "performer", "category"):
        assert found(client, "ServiceRequest", {f"{param}:missing": "true"}) == {bare}, param
        assert found(client, "ServiceRequest", {f"{param}:missing": "false"}) == {full}, param
    assert found(client, "ServiceRequest", {"subject:missing": "true"}) == set()


def test_empty_parameter_values_are_ignored(client: TestClient) -> None:
    a = create(client, service_request(status="active"))["id"]
    b = create(client, service_request(status="completed", authoredOn="2024-01-01"))["id"]
    for name in ("status", "_id", "identifier", "subject", "authored", "_lastUpdated"):
        bundle = search(client, "ServiceRequest", {name: ""})
        assert set(matches(bundle)) == {a, b}, name
        assert name not in dict(query_of(link(bundle, "self") or ""))


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


# ------------------------------------------------------------------ Patient strings, dates, gender


@pytest.fixture
def patients(client: TestClient) -> dict[str, str]:
    def patient(family: str | None, given: list[str], birth: str | None, gender: str | None) -> str:
        resource: dict = {"resourceType": "Patient"}
        if family or given:
            resource["name"] = [{k: v for k, v in (("family", family), ("given", given)) if v}]
        if birth:
            resource["birthDate"] = birth
        if gender:
            resource["gender"] = gender
        return create(client, resource)["id"]

    return {
        "muller": patient("Müller", ["Anna"], "1980-05-01", "female"),
        "mueller": patient("Mueller", ["Jonas"], "1990-12-31", "male"),
        "mullerson": patient("Müllerson", ["Érik"], "2001", "other"),
        "schmidt": patient("Schmidt", ["Anna-Lena"], None, None),
    }


def test_patient_name_and_family(client: TestClient, patients: dict[str, str]) -> None:
    p = patients

    def pt(params) -> set[str]:  # type: ignore[no-untyped-def]
        return found(client, "Patient", params)

    assert pt({"name": "mul"}) == {p["muller"], p["mullerson"]}  # prefix, accent-insensitive
    assert pt({"name": "MÜL"}) == {p["muller"], p["mullerson"]}  # case-insensitive
    assert pt({"name": "müller"}) == {p["muller"], p["mullerson"]}
    assert pt({"family": "mue"}) == {p["mueller"]}
    assert pt({"family": "muller"}) == {p["muller"], p["mullerson"]}
    assert pt({"family": "anna"}) == set()  # family only looks at family names
    assert pt({"name": "anna"}) == {p["muller"], p["schmidt"]}
    assert pt({"name": "ERIK"}) == {p["mullerson"]}
    assert pt({"given": "ann"}) == {p["muller"], p["schmidt"]}
    assert pt({"name": "ller"}) == set()  # starts-with, not contains
    assert pt({"name": "schmidt,jonas"}) == {p["schmidt"], p["mueller"]}
    assert pt([("name", "anna"), ("family", "schm")]) == {p["schmidt"]}
    # :exact is the whole string, with case and accents
    assert pt({"family:exact": "Müller"}) == {p["muller"]}
    assert pt({"name:exact": "Müller"}) == {p["muller"]}
    assert pt({"family:exact": "müller"}) == set()
    assert pt({"family:exact": "Muller"}) == set()
    assert pt({"family:exact": "Mül"}) == set()
    assert pt({"given:exact": "Érik"}) == {p["mullerson"]}
    assert pt({"family:exact": "Mueller,Schmidt"}) == {p["mueller"], p["schmidt"]}


def test_patient_birthdate_and_gender(client: TestClient, patients: dict[str, str]) -> None:
    p = patients

    def pt(params) -> set[str]:  # type: ignore[no-untyped-def]
        return found(client, "Patient", params)

    assert pt({"birthdate": "1980-05-01"}) == {p["muller"]}
    assert pt({"birthdate": "1980"}) == {p["muller"]}
    assert pt({"birthdate": "lt1985"}) == {p["muller"]}
    assert pt({"birthdate": "le1980-05-01"}) == {p["muller"]}
    assert pt({"birthdate": "ge1990-12-31"}) == {p["mueller"], p["mullerson"]}
    assert pt({"birthdate": "gt1990-12-31"}) == {p["mullerson"]}
    # a birthDate of only "2001" is the whole year: within 2001, not within one day of it
    assert pt({"birthdate": "2001"}) == {p["mullerson"]}
    assert pt({"birthdate": "2001-06-01"}) == set()
    assert pt({"birthdate": "gt2001-06-01"}) == {p["mullerson"]}
    assert pt({"birthdate": "sa2000-12-31"}) == {p["mullerson"]}
    assert pt({"birthdate:missing": "true"}) == {p["schmidt"]}
    assert pt({"gender": "female"}) == {p["muller"]}
    assert pt({"gender": "female,other"}) == {p["muller"], p["mullerson"]}
    assert pt({"gender:not": "male"}) == {p["muller"], p["mullerson"], p["schmidt"]}
    assert pt({"gender:missing": "true"}) == {p["schmidt"]}
    assert pt([("gender", "female,male"), ("birthdate", "ge1985")]) == {p["mueller"]}


def test_repeated_parameter_is_and_comma_is_or(client: TestClient) -> None:
    both = create(client, service_request(category=[concept("A"), concept("B")]))["id"]
    only_a = create(client, service_request(category=[concept("A")]))["id"]
    only_b = create(client, service_request(category=[concept("B")], status="completed"))["id"]
    create(client, service_request(category=[concept("C")]))
    assert found(client, "ServiceRequest", [("category", "A"), ("category", "B")]) == {both}
    assert found(client, "ServiceRequest", {"category": "A,B"}) == {both, only_a, only_b}
    assert found(client, "ServiceRequest", [("category", "A,B"), ("status", "completed")]) == {only_b}
    assert found(client, "ServiceRequest", [("category", "A,B"), ("category", "B,C")]) == {both, only_b}
    # an escaped comma is part of the value, not an OR
    odd = create(client, service_request(identifier=[{"system": ID_SYS, "value": "a,b"}]))["id"]
    assert found(client, "ServiceRequest", {"identifier": "a\\,b"}) == {odd}


# ------------------------------------------------------------------ paging, sorting, _include, _summary


def test_paging_follows_next_links_through_every_resource_once(client: TestClient) -> None:
    created = [create(client, service_request())["id"] for _ in range(7)]
    create(client, service_request(status="completed"))  # not part of the search
    bundle = search(client, "ServiceRequest", {"status": "active", "_count": "3"})
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        assert bundle["total"] == 7
        page = matches(bundle)
        assert len(page) == (3 if pages < 3 else 1)
        seen.extend(page)
        self_query = dict(query_of(link(bundle, "self")))
        assert self_query["status"] == "active" and self_query["_count"] == "3"
        assert link(bundle, "first") is not None
        assert query_of(link(bundle, "first")) == [("status", "active"), ("_count", "3")]
        if pages > 1:
            previous = link(bundle, "previous")
            assert previous is not None
            assert (
                matches(search(client, previous.removeprefix(f"{BASE}/")))[:3]
                == seen[(pages - 2) * 3 : (pages - 1) * 3]
            )
        else:
            assert link(bundle, "previous") is None
        next_url = link(bundle, "next")
        if next_url is None:
            break
        assert next_url.startswith(f"{BASE}/ServiceRequest?")
        assert pages < 10, "next links never end"
        bundle = search(client, next_url.removeprefix(f"{BASE}/"))
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert seen == created  # default order: oldest first
    # a page of exactly the remaining resources has no next link
    assert link(search(client, "ServiceRequest", {"status": "active", "_count": "7"}), "next") is None


def test_count_zero_gives_only_the_total(client: TestClient) -> None:
    for _ in range(3):
        create(client, service_request())
    bundle = search(client, "ServiceRequest", {"_count": "0"})
    assert bundle["total"] == 3
    assert "entry" not in bundle
    assert link(bundle, "next") is None


def test_count_is_capped_and_defaulted(client: TestClient, settings) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        create(client, service_request())
    bundle = search(client, "ServiceRequest", {"_count": "100000"})
    assert len(matches(bundle)) == 3
    assert dict(query_of(link(bundle, "self")))["_count"] == str(settings.max_page_size)
    assert link(bundle, "next") is None


def test_sort_by_last_updated(client: TestClient) -> None:
    created = [create(client, service_request())["id"] for _ in range(4)]
    assert matches(search(client, "ServiceRequest", {"_sort": "_lastUpdated"})) == created
    assert matches(search(client, "ServiceRequest", {"_sort": "-_lastUpdated"})) == created[::-1]
    descending = search(client, "ServiceRequest", {"_sort": "-_lastUpdated", "_count": "3"})
    assert matches(descending) == created[::-1][:3]
    assert dict(query_of(link(descending, "self")))["_sort"] == "-_lastUpdated"
    assert matches(search(client, link(descending, "next").removeprefix(f"{BASE}/"))) == [created[0]]
    # an update moves a resource to the end
    put(client, service_request(id=created[0], status="completed"))
    assert matches(search(client, "ServiceRequest", {"_sort": "_lastUpdated"})) == created[1:] + created[:1]


def test_include_service_request_patient(client: TestClient) -> None:
    p1 = put(client, {"resourceType": "Patient", "id": "p1"})["id"]
    p2 = put(client, {"resourceType": "Patient", "id": "p2"})["id"]
    put(client, {"resourceType": "Patient", "id": "gone"})
    delete(client, "Patient", "gone")
    requests = {
        create(client, service_request(subject={"reference": "Patient/p1"}))["id"],
        create(client, service_request(subject={"reference": "Patient/p1"}))["id"],
        create(client, service_request(subject={"reference": f"{BASE}/Patient/p2"}))["id"],
        create(client, service_request(subject={"reference": "Patient/ghost"}))["id"],
        create(client, service_request(subject={"reference": "Patient/gone"}))["id"],
    }
    bundle = search(client, "ServiceRequest", {"_include": "ServiceRequest:patient"})
    assert bundle["total"] == 5  # includes are not counted
    assert set(matches(bundle)) == requests
    included = [e for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert sorted(e["resource"]["id"] for e in included) == sorted([p1, p2])
    for entry in included:
        assert entry["resource"]["resourceType"] == "Patient"
        assert entry["fullUrl"] == f"{BASE}/Patient/{entry['resource']['id']}"
    assert dict(query_of(link(bundle, "self")))["_include"] == "ServiceRequest:patient"
    # only the targets of the current page are included
    page = search(client, "ServiceRequest", {"_include": "ServiceRequest:patient", "_count": "1"})
    assert [e["resource"]["id"] for e in page["entry"] if e["search"]["mode"] == "include"] == [p1]
    # with a search on the same page: subject with a type
    subject = search(
        client, "ServiceRequest", {"_include": "ServiceRequest:subject:Patient", "patient": "p2"}
    )
    assert [(e["search"]["mode"], e["resource"]["id"]) for e in subject["entry"]][1:] == [("include", p2)]


def test_summary_count_and_searchset_entries(client: TestClient) -> None:
    ids = {create(client, service_request())["id"] for _ in range(3)}
    summary = search(client, "ServiceRequest", {"_summary": "count"})
    assert summary["type"] == "searchset"
    assert summary["total"] == 3
    assert "entry" not in summary
    assert dict(query_of(link(summary, "self")))["_summary"] == "count"
    bundle = search(client, "ServiceRequest")
    assert bundle["total"] == 3
    assert {e["resource"]["id"] for e in bundle["entry"]} == ids
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"{BASE}/ServiceRequest/{entry['resource']['id']}"
        assert entry["search"] == {"mode": "match"}
    assert link(bundle, "self") == f"{BASE}/ServiceRequest"
    empty = search(client, "Goal")
    assert empty["total"] == 0 and "entry" not in empty
    assert search(client, "ServiceRequest", {"_total": "none"}).get("total") is None


# ------------------------------------------------------------------ lenient and strict handling, errors


def test_strict_handling_rejects_unknown_parameters(client: TestClient) -> None:
    create(client, service_request())
    outcome = search(client, "ServiceRequest", {"status": "active", "foo": "bar"}, STRICT, status=400)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["expression"] == ["foo"]
    modifier = search(client, "ServiceRequest", {"status:fuzzy": "active"}, STRICT, status=400)
    assert modifier["issue"][0]["expression"] == ["status:fuzzy"]


def test_lenient_handling_ignores_and_reports_unknown_parameters(client: TestClient) -> None:
    active = create(client, service_request())["id"]
    create(client, service_request(status="completed"))
    for headers in (None, {"Prefer": "handling=lenient"}):
        bundle = search(
            client, "ServiceRequest", [("status", "active"), ("foo", "bar"), ("_elements", "id")], headers
        )
        assert matches(bundle) == [active]
        assert bundle["total"] == 1
        outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
        assert len(outcomes) == 1
        issues = outcomes[0]["resource"]["issue"]
        assert outcomes[0]["resource"]["resourceType"] == "OperationOutcome"
        assert {tuple(i["expression"]) for i in issues} == {("foo",), ("_elements",)}
        assert all(i["severity"] == "warning" for i in issues)
        assert query_of(link(bundle, "self")) == [("status", "active")]
    # an unsupported modifier is ignored too (the parameter is not applied at all)
    bundle = search(client, "ServiceRequest", {"status:fuzzy": "active"})
    assert bundle["total"] == 2
    assert link(bundle, "self") == f"{BASE}/ServiceRequest"


BAD_VALUES = [
    ("ServiceRequest", "authored", "notadate"),
    ("ServiceRequest", "authored", "ge2024-13-01"),
    ("ServiceRequest", "authored", "2024-02-30"),
    ("ServiceRequest", "_lastUpdated", "yesterday"),
    ("ServiceRequest", "_lastUpdated", "gt0001-01-01T00:00:00+01:00"),
    ("Patient", "birthdate", "1980-5-1"),
    ("CarePlan", "date", "xx2024"),
    ("ServiceRequest", "_count", "-1"),
    ("ServiceRequest", "_count", "ten"),
    ("ServiceRequest", "_offset", "x"),
    ("ServiceRequest", "identifier:missing", "maybe"),
    ("ServiceRequest", "subject", "not/a/reference"),
    ("ServiceRequest", "_total", "sometimes"),
    ("ServiceRequest", "status:fuzzy", "active"),
    ("ServiceRequest", "authored:exact", "2024"),
    ("ServiceRequest", "subject:identifier", "urn:x|1"),
    ("ServiceRequest", "_id:fuzzy", "x"),
    ("ServiceRequest", "_lastUpdated:missing", "true"),
    ("ServiceRequest", "_sort", "status"),
    ("ServiceRequest", "_include", "Patient:organization"),
    ("ServiceRequest", "_include", "ServiceRequest:status"),
    ("ServiceRequest", "_summary", "true"),
    ("ServiceRequest", "unknown-param", "x"),
]


def test_bad_values_are_400_operation_outcomes(client: TestClient) -> None:
    create(client, service_request(authoredOn="2024-01-01"))
    for resource_type, name, value in BAD_VALUES:
        response = client.get(f"/fhir/{resource_type}", params={name: value}, headers=STRICT)
        assert response.status_code == 400, (name, value, response.text)
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        issue = outcome["issue"][0]
        assert issue["severity"] == "error"
        assert issue["expression"][0].split(":")[0] == name.split(":")[0], (name, value)


def test_bad_values_are_400_even_when_lenient(client: TestClient) -> None:
    for name, value in [
        ("authored", "notadate"),
        ("_count", "-1"),
        ("identifier:missing", "maybe"),
        ("_lastUpdated", "2024-99"),
    ]:
        outcome = search(client, "ServiceRequest", {name: value}, status=400)
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == [name.split(":")[0]], name


def test_unknown_resource_type_is_not_a_search(client: TestClient) -> None:
    outcome = search(client, "Spaceship", {"name": "x"}, status=404)
    assert outcome["resourceType"] == "OperationOutcome"


# ------------------------------------------------------------------ the index follows writes


def test_deleted_resources_are_not_found(client: TestClient) -> None:
    kept = create(client, service_request(identifier=[{"system": ID_SYS, "value": "X"}]))["id"]
    gone = create(client, service_request(identifier=[{"system": ID_SYS, "value": "X"}]))["id"]
    delete(client, "ServiceRequest", gone)
    assert found(client, "ServiceRequest", {"identifier": "X"}) == {kept}
    assert found(client, "ServiceRequest", {"_id": gone}) == set()
    assert found(client, "ServiceRequest", {"patient": "p1"}) == {kept}
    assert found(client, "ServiceRequest", {"status:not": "completed"}) == {kept}
    assert found(client, "ServiceRequest", {"identifier:missing": "true"}) == set()
    assert found(client, "ServiceRequest", {}) == {kept}
    assert search(client, "ServiceRequest", {"_summary": "count"})["total"] == 1
    # re-created with PUT: found again, by its new values
    put(client, service_request(id=gone, identifier=[{"system": ID_SYS, "value": "Y"}]))
    assert found(client, "ServiceRequest", {"identifier": "Y"}) == {gone}
    assert found(client, "ServiceRequest", {"identifier": "X"}) == {kept}


def test_updated_resources_are_found_by_their_new_values_only(client: TestClient) -> None:
    created = create(
        client,
        service_request(
            status="active",
            category=[concept("A")],
            authoredOn="2024-01-01",
            requester={"reference": "Practitioner/old"},
        ),
    )
    rid = created["id"]
    put(
        client,
        service_request(
            id=rid, status="completed", category=[concept("B")], subject={"reference": "Patient/p2"}
        ),
    )
    sr = lambda params: found(client, "ServiceRequest", params)  # noqa: E731
    assert sr({"status": "active"}) == set()
    assert sr({"status": "completed"}) == {rid}
    assert sr({"category": "A"}) == set()
    assert sr({"category": "B"}) == {rid}
    assert sr({"patient": "p1"}) == set()
    assert sr({"patient": "p2"}) == {rid}
    assert sr({"authored": "2024-01-01"}) == set()
    assert sr({"authored:missing": "true"}) == {rid}
    assert sr({"requester": "Practitioner/old"}) == set()
    assert sr({"_lastUpdated": f"gt{created['meta']['lastUpdated']}"}) == {rid}


def test_post_search_with_a_form_body_equals_get(client: TestClient) -> None:
    a = create(client, service_request(category=[concept("A")]))["id"]
    b = create(client, service_request(category=[concept("B")]))["id"]
    create(client, service_request(status="completed", category=[concept("A")]))
    form = [("status", "active"), ("category", "A,B"), ("_count", "1")]
    response = client.post(
        "/fhir/ServiceRequest/_search",
        content="&".join(f"{k}={v}" for k, v in form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    posted = response.json()
    got = search(client, "ServiceRequest", form)
    assert posted["type"] == "searchset"
    assert posted["total"] == got["total"] == 2
    assert matches(posted) == matches(got) == [a]
    assert link(posted, "next") == link(got, "next")
    assert matches(search(client, link(posted, "next").removeprefix(f"{BASE}/"))) == [b]
    # parameters in the URL and in the body are combined (AND)
    response = client.post(
        "/fhir/ServiceRequest/_search?category=B",
        content="status=active",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert matches(response.json()) == [b]
    strict = client.post(
        "/fhir/ServiceRequest/_search",
        content="foo=bar",
        headers={"Content-Type": "application/x-www-form-urlencoded", **STRICT},
    )
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["foo"]


# ------------------------------------------------------------------ Appointment (therapy visits)


def _appointment(appointment_id: str, patient: str, start: str, status: str = "booked") -> dict:
    return {
        "resourceType": "Appointment",
        "id": appointment_id,
        "identifier": [{"system": ID_SYS, "value": f"appt-{appointment_id}"}],
        "status": status,
        "serviceType": [{"coding": [{"system": SCT, "code": "91251008", "display": "Physical therapy"}]}],
        "start": start,
        "end": start.replace("T09:00", "T09:45"),
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/pt1"}, "status": "accepted"},
        ],
    }


def test_appointment_search_by_patient_date_status_and_actor(client: TestClient) -> None:
    put(client, _appointment("a1", "p1", "2024-03-04T09:00:00Z"))
    put(client, _appointment("a2", "p1", "2024-03-11T09:00:00Z", status="cancelled"))
    put(client, _appointment("a3", "p2", "2024-03-05T09:00:00Z"))

    def ids(params: dict) -> set[str]:
        return found(client, "Appointment", {**params})

    assert ids({"patient": "Patient/p1"}) == {"a1", "a2"}
    assert ids({"patient": "p2"}) == {"a3"}
    assert ids({"status": "booked"}) == {"a1", "a3"}
    assert ids({"date": "ge2024-03-05", "patient": "Patient/p1"}) == {"a2"}
    assert ids({"practitioner": "Practitioner/pt1"}) == {"a1", "a2", "a3"}
    assert ids({"actor": "Patient/p2"}) == {"a3"}
    assert ids({"service-type": f"{SCT}|91251008", "date": "lt2024-03-05"}) == {"a1"}
    assert ids({"identifier": f"{ID_SYS}|appt-a3"}) == {"a3"}
