"""What a claimed delivery carries for connectors that ask for context (hub.sync.context): the
changed resource first, then what it references (two levels, current versions, own tenant only),
and the version a change replaced."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub.app import ensure_default_tenant
from hub.fhir.service import FhirService
from hub.settings import Settings
from hub.store.db import transaction
from hub.sync.config import SyncConfig
from hub.sync.context import MAX_CONTEXT, with_references
from hub.sync.engine import ClaimedJob, DeliveryEngine, Outcome
from hub.sync.outbox import Outbox
from hub.unit_of_work import ENQUEUE_KEY, unit_of_work

TENANT = "default"
BASE = "http://testserver/fhir"


@pytest.fixture(autouse=True)
def store(settings: Settings) -> Settings:
    ensure_default_tenant(settings)
    return settings


def _fhir(session: Any, settings: Settings, tenant: str = TENANT) -> FhirService:
    sync = Outbox(session, tenant=tenant, settings=settings)
    return FhirService(session, tenant=tenant, base_url=BASE, listeners=[sync.on_change])


def _put(settings: Settings, *resources: dict[str, Any], tenant: str = TENANT) -> list[int]:
    with unit_of_work(settings) as session:
        if tenant != TENANT:
            from hub.kit import utcnow
            from hub.store import repository

            repository.ensure_tenant(session, tenant_id=tenant, name=tenant, now=utcnow())
        fhir = _fhir(session, settings, tenant)
        for resource in resources:
            fhir.update(resource["resourceType"], resource["id"], resource)
        return list(session.info.get(ENQUEUE_KEY, []))


def _connector(settings: Settings, kind: str) -> None:
    config: dict[str, Any] = {"host": "127.0.0.1", "port": 9}
    if kind == "webhook":
        config = {"url": "http://127.0.0.1:9/hook", "secret": "s" * 32}
    with unit_of_work(settings) as session:
        service = SyncConfig(session, tenant=TENANT, settings=settings)
        service.add_connector(name="partner", kind=kind, config=config)
        service.add_route(name="appointments", resource_type="Appointment", connector="partner",
                          interactions="create,update")


def _claim(settings: Settings, job_id: int) -> ClaimedJob:
    with transaction(settings.database_url) as session:
        claimed = DeliveryEngine(session, settings=settings).claim(job_id)
    assert claimed is not None
    return claimed


PATIENT = {"resourceType": "Patient", "id": "pat", "name": [{"family": "Quetzalcoatl"}],
           "generalPractitioner": [{"reference": "Organization/gp"}]}
GP = {"resourceType": "Organization", "id": "gp", "name": "Family practice",
      "partOf": {"reference": "Organization/network"}}
NETWORK = {"resourceType": "Organization", "id": "network", "name": "Three levels away"}
ROLE = {"resourceType": "PractitionerRole", "id": "role", "practitioner": {"reference": "Practitioner/pt"}}
THERAPIST = {"resourceType": "Practitioner", "id": "pt", "name": [{"family": "Okafor"}]}


def appointment(status: str = "booked", start: str = "2024-03-04T09:00:00Z", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": "visit",
        "status": status,
        "start": start,
        "end": start.replace("T09:00", "T09:45"),
        "participant": [
            {"actor": {"reference": "Patient/pat"}, "status": "accepted"},
            {"actor": {"reference": "PractitionerRole/role"}, "status": "accepted"},
            {"actor": {"reference": "Location/not-stored"}, "status": "accepted"},
        ],
        **extra,
    }


def test_a_connector_that_asks_gets_the_resource_first_then_what_it_references(settings: Settings) -> None:
    _put(settings, NETWORK, GP, PATIENT, THERAPIST, ROLE)
    _connector(settings, "hl7v2")
    [job] = _put(settings, appointment())
    claimed = _claim(settings, job)
    bundle = json.loads(claimed.payload or b"")
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    refs = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]]
    # the changed resource first; then level one in reference order; then level two
    assert refs == ["Appointment/visit", "Patient/pat", "PractitionerRole/role", "Organization/gp", "Practitioner/pt"]
    assert "Organization/network" not in refs  # three levels away
    assert bundle["entry"][1]["fullUrl"] == f"{settings.fhir_base}/Patient/pat"
    assert claimed.previous is None  # a create replaced nothing


def _succeed(settings: Settings, claimed: ClaimedJob) -> None:
    with transaction(settings.database_url) as session:
        DeliveryEngine(session, settings=settings).finish(claimed, Outcome(ok=True, detail="AA"))


def test_previous_is_what_this_partner_was_last_sent(settings: Settings) -> None:
    _put(settings, PATIENT)
    _connector(settings, "hl7v2")
    [first] = _put(settings, appointment())
    _succeed(settings, _claim(settings, first))
    [job] = _put(settings, appointment(start="2024-03-05T09:00:00Z"))
    claimed = _claim(settings, job)
    previous = json.loads(claimed.previous or b"")
    assert previous["start"] == "2024-03-04T09:00:00Z" and previous["meta"]["versionId"] == "1"
    assert json.loads(claimed.payload or b"")["entry"][0]["resource"]["start"] == "2024-03-05T09:00:00Z"


def test_a_version_the_partner_never_got_is_not_previous(settings: Settings) -> None:
    """v1 never reached the partner (dead letter, or the route came later): v2 has no previous, so
    the partner hears of a booking, not of a change to one it does not know."""
    _put(settings, PATIENT)
    _connector(settings, "hl7v2")
    [first] = _put(settings, appointment())
    with transaction(settings.database_url) as session:
        claimed = DeliveryEngine(session, settings=settings).claim(first)
        assert claimed is not None
    with transaction(settings.database_url) as session:
        DeliveryEngine(session, settings=settings).finish(
            claimed, Outcome(ok=False, permanent=True, detail="AR"))
    [job] = _put(settings, appointment(start="2024-03-05T09:00:00Z"))
    assert _claim(settings, job).previous is None


def test_a_connector_that_does_not_ask_gets_the_bare_resource(settings: Settings) -> None:
    _put(settings, PATIENT)
    _connector(settings, "webhook")
    _put(settings, appointment())
    [job] = _put(settings, appointment(status="cancelled"))
    claimed = _claim(settings, job)
    assert json.loads(claimed.payload or b"")["resourceType"] == "Appointment"
    assert claimed.previous is None


def test_another_tenants_resource_with_the_same_id_is_never_included(settings: Settings) -> None:
    _put(settings, PATIENT, tenant="other-clinic")
    _connector(settings, "hl7v2")
    [job] = _put(settings, appointment())
    bundle = json.loads(_claim(settings, job).payload or b"")
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Appointment"]


def test_the_context_is_bounded(settings: Settings) -> None:
    many = [{"resourceType": "Organization", "id": f"o{i}", "name": f"Org {i}"} for i in range(MAX_CONTEXT + 10)]
    focus = {"resourceType": "Organization", "id": "hub", "name": "Hub",
             "partOf": {"reference": "Organization/o0"},
             "extension": [{"url": "urn:test", "valueReference": {"reference": f"Organization/o{i}"}}
                           for i in range(MAX_CONTEXT + 10)]}
    _put(settings, *many, focus)
    with transaction(settings.database_url) as session:
        payload = with_references(session, tenant=TENANT, base=BASE, payload=json.dumps(focus).encode())
    entries = json.loads(payload)["entry"]
    assert entries[0]["resource"]["id"] == "hub"
    assert len(entries) == MAX_CONTEXT + 1


def test_a_bundle_or_unreadable_payload_is_left_as_it_is(settings: Settings) -> None:
    with transaction(settings.database_url) as session:
        for payload in (b'{"resourceType": "Bundle", "type": "collection"}', b"not json", b"[1]"):
            assert with_references(session, tenant=TENANT, base=BASE, payload=payload) == payload


def test_another_servers_absolute_reference_is_not_our_resource(settings: Settings) -> None:
    """https://other-emr.example/fhir/Patient/pat names THEIR patient: never ours of the same id."""
    _put(settings, {"resourceType": "Patient", "id": "pat"}, NETWORK)
    foreign = {"resourceType": "Organization", "id": "o", "name": "x",
               "partOf": {"reference": "https://other-emr.example/fhir/Organization/network"},
               "extension": [{"url": "urn:test", "valueReference": {"reference": f"{BASE}/Patient/pat"}}]}
    _put(settings, foreign)
    with transaction(settings.database_url) as session:
        payload = with_references(session, tenant=TENANT, base=BASE, payload=json.dumps(foreign).encode())
    refs = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in json.loads(payload)["entry"]]
    assert refs == ["Organization/o", "Patient/pat"]  # ours under our base: yes; theirs: no
