"""Issue 6's whole run: a REF^I12 over MLLP becomes ServiceRequest + Task, reaches the sandbox FHIR
EMR (SMART Backend Services), the EMR's acceptance is polled back and moves the Task, and every step
is in the message store. Deliveries run in-process (``deliver``), the EMR and MLLP are real servers.

The EMR assigns its own ids and checks references (the sandbox refuses a dangling one): what it
holds must reference its own resources, and what comes back must reference the hub's again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from hub.settings import Settings
from hub.store.db import transaction
from hub.sync.admin import AdminViews
from hub.sync.delivery import deliver
from hub.sync.polling import poll_named
from sandboxes.emr import SandboxEmr
from tests.inbound.test_hl7v2_inbound import TENANT, listener, messages, ref, search, send  # noqa: F401


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"broker_url": f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"})


@pytest.fixture
def emr() -> Iterator[tuple[SandboxEmr, str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with SandboxEmr() as sandbox:
        sandbox.register_client("therapy-hub", public, "system/*.cruds", kid="k1")
        yield sandbox, private


def _references(node: Any) -> Iterator[str]:
    """Every literal ``reference`` string in a resource, ``contained`` skipped."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for key, value in node.items():
            if key != "contained":
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _deliver_all(settings: Settings) -> list[dict]:
    with transaction(settings.database_url) as session:
        jobs = AdminViews(session, tenant=TENANT).jobs(limit=500)["items"]
    for job in sorted(jobs, key=lambda j: j["id"]):
        if job["status"] in ("pending", "retrying"):
            deliver(settings, job["id"])
    with transaction(settings.database_url) as session:
        return AdminViews(session, tenant=TENANT).jobs(limit=500)["items"]


def test_ref_i12_to_the_emr_and_its_acceptance_back(listener, client: TestClient, settings: Settings,  # noqa: F811
                                                     emr: tuple[SandboxEmr, str]) -> None:
    sandbox, private_key = emr
    connector = {"name": "emr", "kind": "fhir_emr", "config": {
        "base_url": sandbox.url, "client_id": "therapy-hub", "key_id": "k1", "private_key": private_key,
        "algorithm": "RS384", "scope": "system/*.cruds", "resource_types": ["Task"]}}
    assert client.put("/admin/api/connectors/emr", json=connector).status_code == 200
    for resource_type in ("ServiceRequest", "Task"):
        route = {"name": f"{resource_type}-to-emr", "resource_type": resource_type, "connector": "emr"}
        assert client.post("/admin/api/routes", json=route).status_code == 201

    assert send(listener, ref("RT0001")).code == "AA"
    [service_request] = search(client, "ServiceRequest")
    [task] = search(client, "Task", code="fulfill")
    assert task["status"] == "requested"
    assert task["focus"]["reference"] == f"ServiceRequest/{service_request['id']}"

    jobs = _deliver_all(settings)
    assert jobs and all(j["status"] == "succeeded" for j in jobs), jobs
    assert sandbox.controls.check_references  # the EMR refused any reference to a resource it lacks
    [emr_request] = sandbox.resources("ServiceRequest")
    [emr_task] = sandbox.resources("Task")
    assert emr_task["identifier"] == task["identifier"]
    # the Patient went first (a dependency), then the referral pointing at the EMR's own ids
    hub_patient = client.get(f"/fhir/{service_request['subject']['reference']}").json()
    [emr_patient] = sandbox.resources("Patient")
    assert emr_patient["identifier"] == hub_patient["identifier"] and emr_patient["id"] != hub_patient["id"]
    assert emr_request["id"] != service_request["id"]
    assert emr_request["subject"]["reference"] == f"Patient/{emr_patient['id']}"
    assert emr_task["focus"]["reference"] == f"ServiceRequest/{emr_request['id']}"
    assert emr_task["for"]["reference"] == f"Patient/{emr_patient['id']}"
    everything = [r for t in sorted(sandbox.resource_types) for r in sandbox.resources(t)]
    held = {(r["resourceType"], r["id"]) for r in everything}
    for resource in everything:  # no hub id anywhere: every literal reference names an EMR resource
        for reference in _references(resource):
            assert tuple(reference.split("/")[:2]) in held, (resource["resourceType"], reference)

    # polling now brings back only what the hub itself wrote: an echo, skipped, not a new version
    echo = poll_named(settings, TENANT, "emr")
    assert echo["ok"] and (echo["fetched"], echo["echoes"], echo["stored"]) == (1, 1, 0), echo
    assert client.get(f"/fhir/Task/{task['id']}").json()["meta"]["versionId"] == task["meta"]["versionId"]

    sandbox.seed({**emr_task, "status": "accepted"})  # the clinic accepts the referral in its EMR
    report = poll_named(settings, TENANT, "emr")
    assert report["ok"] and report["stored"] >= 1, report
    accepted = client.get(f"/fhir/Task/{task['id']}").json()
    assert accepted["status"] == "accepted"
    # back in the hub, the Task references the hub's resources again, never the EMR's ids
    assert accepted["focus"]["reference"] == f"ServiceRequest/{service_request['id']}"
    assert accepted["for"]["reference"] == service_request["subject"]["reference"]
    for reference in _references(accepted):
        resource_type, resource_id = reference.split("/")[:2]
        assert client.get(f"/fhir/{resource_type}/{resource_id}").status_code == 200, reference
    assert [t["id"] for t in search(client, "Task", code="fulfill")] == [task["id"]]  # updated, not duplicated
    told = client.get("/fhir/Communication", params={"based-on": f"Task/{task['id']}"}).json()
    assert told["total"] >= 1  # the referrer is told, as for any change
    assert poll_named(settings, TENANT, "emr")["stored"] == 0  # nothing new: the inbox dedupes

    sources = {m["source"] for m in messages(settings)}
    assert {"mllp:test", "fhir-api", "emr"} <= sources
    hl7 = next(m for m in messages(settings) if m["source"] == "mllp:test")
    with transaction(settings.database_url) as session:
        events = [e["event"] for e in AdminViews(session, tenant=TENANT).message(hl7["id"])["events"]]
    assert events[:2] == ["received", "translated"]
