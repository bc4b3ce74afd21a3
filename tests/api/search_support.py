"""Helpers of the FHIR search tests: writes, searches, bundle readers and resource builders."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

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
