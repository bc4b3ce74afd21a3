"""FHIR search through /fhir: lenient and strict handling, errors, the index following writes, Appointment."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.search_support import (
    BASE,
    ID_SYS,
    SCT,
    STRICT,
    concept,
    create,
    delete,
    found,
    link,
    matches,
    put,
    query_of,
    search,
    service_request,
)

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
