"""Fixtures and helpers for the FHIR REST connector tests against the sandbox FHIR server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import (
    PollBatch,
)
from connectors.fhir_rest import FhirRestConnector
from sandboxes.fhir import SandboxFhirServer

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "sandbox-bearer-token-0123456789"
MakeConnector = Callable[..., FhirRestConnector]


def resource(resource_type: str, resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": resource_type, "id": resource_id, **fields}


def payload(resource_type: str = "Patient", resource_id: str = "p1", **fields: Any) -> bytes:
    return json.dumps(resource(resource_type, resource_id, **fields)).encode()


@pytest.fixture
def emr() -> Iterator[SandboxFhirServer]:
    with SandboxFhirServer() as server:
        yield server


@pytest.fixture
def make_connector() -> Iterator[MakeConnector]:
    made: list[FhirRestConnector] = []

    def factory(base_url: str, **config: Any) -> FhirRestConnector:
        options = {key: config.pop(key) for key in ("transport", "auth") if key in config}
        connector = FhirRestConnector({"base_url": base_url, "timeout_seconds": 2.0, **config}, **options)
        made.append(connector)
        return connector

    yield factory
    for connector in made:
        connector.close()


def poll_all(connector: FhirRestConnector, limit: int, cursor: str | None = None) -> list[PollBatch]:
    """Poll until a batch comes back empty (at most 50 polls)."""
    batches = []
    for _ in range(50):
        batch = connector.poll(cursor, limit)
        batches.append(batch)
        cursor = batch.next_cursor
        if not batch.items:
            return batches
    raise AssertionError("polling does not converge")


def all_versions(emr: SandboxFhirServer, *types: str) -> set[str]:
    return {
        f"{t}/{r['id']}/_history/{v['meta']['versionId']}"
        for t in types
        for r in emr.resources(t)
        for v in emr.history(t, r["id"])
    }


def seed_clinic(emr: SandboxFhirServer) -> None:
    """7 Patients, 5 ServiceRequests and 3 Tasks, interleaved in time."""
    for n in range(7):
        emr.seed(resource("Patient", f"p{n}", identifier=[{"system": "urn:mrn", "value": f"M{n}"}]))
        if n < 5:
            emr.seed(resource("ServiceRequest", f"sr{n}", status="active", intent="order"))
        if n < 3:
            emr.seed(resource("Task", f"t{n}", status="requested", intent="order"))


def mock_connector(
    make_connector: MakeConnector, answer: Callable[[httpx.Request], httpx.Response], **config: Any
) -> FhirRestConnector:
    """A connector whose server is a function: for answers the sandbox would never give."""
    return make_connector("http://fhir.test/fhir", transport=httpx.MockTransport(answer), **config)
