"""FHIR search through /fhir: _id, _lastUpdated and token parameters."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.search_support import (
    ID_SYS,
    concept,
    create,
    found,
    link,
    matches,
    query_of,
    search,
    service_request,
    shift,
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
