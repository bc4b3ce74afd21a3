"""Create, read, vread, update, delete and conditional create through /fhir."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.validation_cases import MINIMAL as VALIDATION_MINIMAL

FHIR = {"Content-Type": "application/fhir+json"}


def service_request(**extra):
    resource = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1", "value": "REF-1"}],
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "91251008"}]}],
    }
    resource.update(extra)
    return resource


def create(client: TestClient, resource: dict, **headers) -> dict:
    response = client.post(
        f"/fhir/{resource['resourceType']}", content=json.dumps(resource), headers={**FHIR, **headers}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_create_returns_201_with_location_etag_and_body(client: TestClient) -> None:
    response = client.post("/fhir/ServiceRequest", content=json.dumps(service_request()), headers=FHIR)
    assert response.status_code == 201
    body = response.json()
    assert body["meta"]["versionId"] == "1"
    assert response.headers["location"] == f"http://testserver/fhir/ServiceRequest/{body['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith("GMT")
    assert response.headers["content-type"].startswith("application/fhir+json")


def test_read_vread_update_and_history(client: TestClient) -> None:
    created = create(client, service_request())
    rid = created["id"]
    updated = dict(created, status="completed")
    response = client.put(f"/fhir/ServiceRequest/{rid}", content=json.dumps(updated), headers=FHIR)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/ServiceRequest/{rid}").json()["status"] == "completed"
    assert client.get(f"/fhir/ServiceRequest/{rid}/_history/1").json()["status"] == "active"
    history = client.get(f"/fhir/ServiceRequest/{rid}/_history").json()
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


def put(client: TestClient, resource: dict, rid: str, **headers):
    return client.put(
        f"/fhir/{resource['resourceType']}/{rid}", content=json.dumps(resource), headers={**FHIR, **headers}
    )


def count(client: TestClient, resource_type: str) -> int:
    response = client.get(f"/fhir/{resource_type}", params={"_summary": "count"})
    assert response.status_code == 200, response.text
    return response.json()["total"]


def assert_outcome(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and all(i["severity"] and i["code"] for i in body["issue"])
    if code is not None:
        assert code in [i["code"] for i in body["issue"]], body
    return body


def test_create_ignores_a_client_id(client: TestClient) -> None:
    created = create(client, service_request(id="client-chosen"))
    assert created["id"] != "client-chosen"
    assert client.get(f"/fhir/ServiceRequest/{created['id']}").status_code == 200
    assert client.get("/fhir/ServiceRequest/client-chosen").status_code == 404


def test_create_replaces_client_version_and_last_updated_but_keeps_profile_and_tag(
    client: TestClient,
) -> None:
    meta = {
        "versionId": "77",
        "lastUpdated": "2001-01-01T00:00:00Z",
        "profile": ["http://example.org/StructureDefinition/referral"],
        "tag": [{"system": "http://example.org/tags", "code": "pilot"}],
    }
    created = create(client, service_request(meta=meta))
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["lastUpdated"] != "2001-01-01T00:00:00Z"
    assert created["meta"]["profile"] == meta["profile"]
    assert created["meta"]["tag"] == meta["tag"]


def test_put_to_a_new_id_creates_it(client: TestClient) -> None:
    response = put(client, service_request(id="referral-1"), "referral-1")
    assert response.status_code == 201, response.text
    assert response.json()["id"] == "referral-1"
    assert response.json()["meta"]["versionId"] == "1"
    assert response.headers["location"] == "http://testserver/fhir/ServiceRequest/referral-1/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    again = put(client, service_request(id="referral-1", status="completed"), "referral-1")
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "2"


def test_put_needs_the_url_id_in_the_body(client: TestClient) -> None:
    missing = put(client, service_request(), "referral-2")
    assert assert_outcome(missing, 400)["issue"][0]["expression"] == ["ServiceRequest.id"]
    other = put(client, service_request(id="another"), "referral-2")
    assert assert_outcome(other, 400)["issue"][0]["expression"] == ["ServiceRequest.id"]
    assert client.get("/fhir/ServiceRequest/referral-2").status_code == 404
    assert client.get("/fhir/ServiceRequest/another").status_code == 404


def test_put_with_an_invalid_id_in_the_url(client: TestClient) -> None:
    response = put(client, service_request(id="x" * 65), "x" * 65)
    assert_outcome(response, 400)


def test_if_match(client: TestClient) -> None:
    created = create(client, service_request())
    rid = created["id"]
    ok = put(client, dict(created, status="on-hold"), rid, **{"If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == 'W/"2"'
    stale = put(client, dict(created, status="revoked"), rid, **{"If-Match": 'W/"1"'})
    body = assert_outcome(stale, 412, "conflict")
    assert "version" in body["issue"][0]["diagnostics"].lower()
    assert client.get(f"/fhir/ServiceRequest/{rid}").json()["status"] == "on-hold"
    assert client.get(f"/fhir/ServiceRequest/{rid}/_history/3").status_code == 404
    # a delete with a stale If-Match is refused too
    assert_outcome(client.delete(f"/fhir/ServiceRequest/{rid}", headers={"If-Match": 'W/"1"'}), 412)
    assert client.get(f"/fhir/ServiceRequest/{rid}").status_code == 200
    assert client.delete(f"/fhir/ServiceRequest/{rid}", headers={"If-Match": 'W/"2"'}).status_code == 204


def test_conditional_create(client: TestClient) -> None:
    query = "identifier=urn:oid:2.16.840.1.113883.3.1|REF-9"
    sr = service_request(identifier=[{"system": "urn:oid:2.16.840.1.113883.3.1", "value": "REF-9"}])
    first = client.post(
        "/fhir/ServiceRequest", content=json.dumps(sr), headers={**FHIR, "If-None-Exist": query}
    )
    assert first.status_code == 201, first.text
    existing_id = first.json()["id"]

    second = client.post(
        "/fhir/ServiceRequest",
        content=json.dumps(dict(sr, status="draft")),
        headers={**FHIR, "If-None-Exist": query},
    )
    assert second.status_code == 200, second.text
    assert second.json()["id"] == existing_id
    assert second.json()["status"] == "active"  # the existing resource, not the one sent
    assert second.headers["location"] == f"http://testserver/fhir/ServiceRequest/{existing_id}/_history/1"
    assert count(client, "ServiceRequest") == 1
    outcome = client.post(
        "/fhir/ServiceRequest",
        content=json.dumps(sr),
        headers={**FHIR, "If-None-Exist": query, "Prefer": "return=OperationOutcome"},
    )
    assert outcome.status_code == 200
    assert "exists" in outcome.json()["issue"][0]["diagnostics"]
    assert count(client, "ServiceRequest") == 1

    create(client, sr)  # a second resource with the same identifier
    third = client.post(
        "/fhir/ServiceRequest", content=json.dumps(sr), headers={**FHIR, "If-None-Exist": query}
    )
    assert_outcome(third, 412)
    assert count(client, "ServiceRequest") == 2


def test_conditional_create_needs_criteria(client: TestClient) -> None:
    response = client.post(
        "/fhir/ServiceRequest",
        content=json.dumps(service_request()),
        headers={**FHIR, "If-None-Exist": "_count=1"},
    )
    assert_outcome(response, 400)
    assert count(client, "ServiceRequest") == 0


def test_delete_then_read_is_gone(client: TestClient) -> None:
    rid = create(client, service_request())["id"]
    response = client.delete(f"/fhir/ServiceRequest/{rid}")
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["etag"] == 'W/"2"'
    gone = client.get(f"/fhir/ServiceRequest/{rid}")
    assert_outcome(gone, 410, "deleted")
    # deleting again is harmless
    assert client.delete(f"/fhir/ServiceRequest/{rid}").status_code == 204
    assert client.get(f"/fhir/ServiceRequest/{rid}/_history/1").json()["status"] == "active"
    assert_outcome(client.get(f"/fhir/ServiceRequest/{rid}/_history/2"), 410)
    assert count(client, "ServiceRequest") == 0


def test_delete_of_an_unknown_id_is_not_found(client: TestClient) -> None:
    assert_outcome(client.delete("/fhir/ServiceRequest/never-was"), 404, "not-found")
    assert_outcome(client.delete("/fhir/Foo/never-was"), 404)


def test_vread_of_each_version(client: TestClient) -> None:
    created = create(client, service_request())
    rid = created["id"]
    statuses = ["active", "on-hold", "completed"]
    current = created
    for status in statuses[1:]:
        response = put(client, dict(current, status=status), rid)
        assert response.status_code == 200, response.text
        current = response.json()
    for version, status in enumerate(statuses, start=1):
        response = client.get(f"/fhir/ServiceRequest/{rid}/_history/{version}")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
        assert response.json()["meta"]["versionId"] == str(version)
        assert response.headers["etag"] == f'W/"{version}"'
    assert_outcome(client.get(f"/fhir/ServiceRequest/{rid}/_history/4"), 404)
    assert_outcome(client.get(f"/fhir/ServiceRequest/{rid}/_history/x"), 404)
    assert_outcome(client.get(f"/fhir/ServiceRequest/{rid}/_history/99999999999999999999"), 404)


def test_update_after_delete_recreates(client: TestClient) -> None:
    created = create(client, service_request())
    rid = created["id"]
    assert client.delete(f"/fhir/ServiceRequest/{rid}").status_code == 204
    response = put(client, dict(created, status="completed"), rid)
    assert response.status_code == 201, response.text
    assert response.json()["meta"]["versionId"] == "3"
    read = client.get(f"/fhir/ServiceRequest/{rid}")
    assert read.status_code == 200
    assert read.json()["status"] == "completed"
    assert count(client, "ServiceRequest") == 1


def test_if_none_match_on_read(client: TestClient) -> None:
    rid = create(client, service_request())["id"]
    not_modified = client.get(f"/fhir/ServiceRequest/{rid}", headers={"If-None-Match": 'W/"1"'})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == 'W/"1"'
    for other in ('W/"2"', '"2"'):
        modified = client.get(f"/fhir/ServiceRequest/{rid}", headers={"If-None-Match": other})
        assert modified.status_code == 200
        assert modified.json()["id"] == rid
    # a strong form or a list naming the current version is a match too
    for same in ('"1"', 'W/"0", W/"1"', "*"):
        assert client.get(f"/fhir/ServiceRequest/{rid}", headers={"If-None-Match": same}).status_code == 304


def test_prefer_return_minimal(client: TestClient) -> None:
    response = client.post(
        "/fhir/ServiceRequest",
        content=json.dumps(service_request()),
        headers={**FHIR, "Prefer": "return=minimal"},
    )
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["etag"] == 'W/"1"'
    location = response.headers["location"]
    assert location.startswith("http://testserver/fhir/ServiceRequest/") and location.endswith("/_history/1")
    assert response.headers["last-modified"].endswith("GMT")
    rid = location.split("/")[-3]
    updated = put(client, service_request(id=rid, status="completed"), rid, Prefer="return=minimal")
    assert updated.status_code == 200
    assert updated.content == b""
    assert updated.headers["etag"] == 'W/"2"'


def test_prefer_return_representation_is_the_default(client: TestClient) -> None:
    explicit = client.post(
        "/fhir/ServiceRequest",
        content=json.dumps(service_request()),
        headers={**FHIR, "Prefer": "return=representation"},
    )
    default = client.post("/fhir/ServiceRequest", content=json.dumps(service_request()), headers=FHIR)
    for response in (explicit, default):
        assert response.status_code == 201
        body = response.json()
        assert body["resourceType"] == "ServiceRequest"
        assert body["status"] == "active"
        assert response.headers["location"].endswith(f"/ServiceRequest/{body['id']}/_history/1")


def test_prefer_return_operation_outcome(client: TestClient) -> None:
    response = client.post(
        "/fhir/ServiceRequest",
        content=json.dumps(service_request()),
        headers={**FHIR, "Prefer": "return=OperationOutcome"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "information"
    assert response.headers["etag"] == 'W/"1"'
    assert "/ServiceRequest/" in response.headers["location"]
    assert count(client, "ServiceRequest") == 1


def test_application_json_is_accepted_like_fhir_json(client: TestClient) -> None:
    response = client.post(
        "/fhir/ServiceRequest",
        content=json.dumps(service_request()),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert response.status_code == 201, response.text
    rid = response.json()["id"]
    charset = client.post(
        "/fhir/ServiceRequest",
        content=json.dumps(service_request()),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert charset.status_code == 201, charset.text
    read = client.get(f"/fhir/ServiceRequest/{rid}", headers={"Accept": "application/json"})
    assert read.status_code == 200
    assert read.json()["id"] == rid


# one minimal valid instance per type, shared with the validation tests (AuditEvents are the hub's own)
MINIMAL = {t: fields for t, fields in VALIDATION_MINIMAL.items() if t != "AuditEvent"}


def test_every_supported_type_creates_and_reads(client: TestClient) -> None:
    from mappings.fhir import SUPPORTED_TYPES

    assert set(MINIMAL) == set(SUPPORTED_TYPES) - {"AuditEvent"}  # AuditEvents are written by the hub only
    refused = client.post("/fhir/AuditEvent", content=json.dumps({"resourceType": "AuditEvent"}), headers=FHIR)
    assert refused.status_code == 405
    for resource_type, fields in MINIMAL.items():
        sent = {"resourceType": resource_type, **fields}
        created = create(client, sent)
        assert created["resourceType"] == resource_type
        read = client.get(f"/fhir/{resource_type}/{created['id']}")
        assert read.status_code == 200, (resource_type, read.text)
        body = read.json()
        assert {k: v for k, v in body.items() if k not in ("id", "meta")} == sent, resource_type


def test_prefer_with_several_preferences(client: TestClient) -> None:
    for header in ("handling=strict, return=minimal", "return=minimal; handling=lenient", 'return="minimal"'):
        response = client.post(
            "/fhir/ServiceRequest", content=json.dumps(service_request()), headers={**FHIR, "Prefer": header}
        )
        assert response.status_code == 201, header
        assert response.content == b"", header
        assert response.headers["etag"] == 'W/"1"'


def test_idempotency_key_makes_a_retried_post_return_the_first_result(client: TestClient) -> None:
    body = json.dumps(service_request())
    headers = {**FHIR, "Idempotency-Key": "referral-7f3a"}
    first = client.post("/fhir/ServiceRequest", content=body, headers=headers)
    again = client.post("/fhir/ServiceRequest", content=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.headers["location"] == again.headers["location"]
    assert again.json()["id"] == first.json()["id"]
    assert client.get("/fhir/ServiceRequest", params={"_summary": "count"}).json()["total"] == 1
    other = client.post("/fhir/ServiceRequest", content=body, headers={**FHIR, "Idempotency-Key": "another"})
    assert other.json()["id"] != first.json()["id"]


def test_idempotency_key_reused_with_another_body_is_a_conflict(client: TestClient) -> None:
    headers = {**FHIR, "Idempotency-Key": "k-1"}
    created = client.post("/fhir/ServiceRequest", content=json.dumps(service_request()), headers=headers)
    assert created.status_code == 201
    changed = client.post(
        "/fhir/ServiceRequest", content=json.dumps(service_request(status="draft")), headers=headers
    )
    assert changed.status_code == 409
    outcome = changed.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Idempotency-Key"]
