"""``hub db reindex``: resources stored before the hub knew a search parameter become searchable by it,
and nothing else changes (no new version, no history, same content)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import delete

from hub.settings import Settings
from hub.store.db import transaction
from hub.store.models import SearchDate, SearchReference, SearchToken
from hub.store.reindex import reindex

FHIR = {"Content-Type": "application/fhir+json"}


def _visit(visit_id: str, patient: str) -> dict:
    return {"resourceType": "Appointment", "id": visit_id, "status": "booked",
            "start": "2024-03-04T09:00:00Z", "end": "2024-03-04T09:45:00Z",
            "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}]}


def _found(client: TestClient, **params: str) -> set[str]:
    bundle = client.get("/fhir/Appointment", params=params).json()
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def _forget_index(settings: Settings) -> None:
    """As if the resources had been stored by a hub that did not index Appointments yet."""
    with transaction(settings.database_url) as session:
        for table in (SearchToken, SearchReference, SearchDate):
            session.execute(delete(table).where(table.resource_type == "Appointment"))


def test_reindex_makes_old_resources_searchable_and_changes_nothing_else(
    client: TestClient, settings: Settings
) -> None:
    for number in range(7):
        assert client.put(f"/fhir/Appointment/v{number}", content=json.dumps(_visit(f"v{number}", "p1")),
                          headers=FHIR).status_code == 201
    before = client.get("/fhir/Appointment/v3").json()
    _forget_index(settings)
    assert _found(client, patient="Patient/p1") == set()

    seen: list[int] = []
    report = reindex(settings.database_url, resource_type="Appointment", batch=3, progress=seen.append)
    assert report.resources == 7 and report.by_type == {"Appointment": 7}
    assert seen == [3, 6, 7]  # progress per batch
    assert _found(client, patient="Patient/p1") == {f"v{n}" for n in range(7)}
    assert _found(client, date="2024-03-04", status="booked") == {f"v{n}" for n in range(7)}
    assert client.get("/fhir/Appointment/v3").json() == before  # same version, same content
    assert len(client.get("/fhir/Appointment/v3/_history").json()["entry"]) == 1
    again = reindex(settings.database_url)  # idempotent, every type
    assert again.by_type["Appointment"] == 7
    assert _found(client, patient="Patient/p1") == {f"v{n}" for n in range(7)}


def test_the_command_reports_and_refuses_unknown_types(settings: Settings, tmp_path: Path) -> None:
    hub = str(Path(sys.executable).with_name("hub"))
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url}
    done = subprocess.run([hub, "db", "reindex", "--type", "Appointment"], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Reindexed ")
    refused = subprocess.run([hub, "db", "reindex", "--type", "Appointmnet"], env=env, capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
    assert refused.returncode == 2 and "unknown resource type" in refused.stderr


def test_reindex_covers_the_billing_types(client: TestClient, settings: Settings) -> None:
    from tests.validation_cases import MINIMAL

    billing = ("ChargeItem", "Claim", "ClaimResponse", "CoverageEligibilityRequest", "CoverageEligibilityResponse")
    for resource_type in billing:
        body = {"resourceType": resource_type, "id": "b1", **MINIMAL[resource_type]}
        assert client.put(f"/fhir/{resource_type}/b1", content=json.dumps(body), headers=FHIR).status_code == 201
    with transaction(settings.database_url) as session:
        for table in (SearchToken, SearchReference, SearchDate):
            session.execute(delete(table).where(table.resource_type.in_(billing)))

    def patients_of(resource_type: str) -> list[str]:
        bundle = client.get(f"/fhir/{resource_type}", params={"patient": "Patient/p1"}).json()
        return [e["resource"]["id"] for e in bundle.get("entry", [])]

    assert all(patients_of(t) == [] for t in billing)
    report = reindex(settings.database_url)
    assert {t: report.by_type.get(t) for t in billing} == dict.fromkeys(billing, 1)
    assert all(patients_of(t) == ["b1"] for t in billing)
