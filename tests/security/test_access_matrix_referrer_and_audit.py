"""The referrer compartment, and the audit trail of who did what."""

from __future__ import annotations

import base64
from typing import Any

from tests.security import access_matrix_world
from tests.security.access_matrix_world import NPI_1, NPI_2, Caller, Tenant, World, _observation, ids, outcome, problem
from tests.security.conftest import get_token, role_of

world = access_matrix_world.world  # the two tenants, built once for this module


# ================================================================== the referrer compartment


def test_a_referrer_sees_only_what_they_referred(world: World) -> None:
    mine = world.as_(world.a, "referrer")
    other = world.second  # referred by NPI_2 in the same tenant
    other_sr = other["service_request"].split("/")[1]
    other_patient = other["patient"].split("/")[1]
    for url in (
        f"/fhir/{other['service_request']}",
        f"/fhir/{other['task']}",
        f"/fhir/{other['patient']}",
        f"/fhir/Task/{other['certification']}",
        f"/fhir/{other['patient']}/_history",
        f"/fhir/{other['service_request']}/_history/1",
        f"/fhir/{other['service_request']}/_history",
    ):
        outcome(mine.get(url), 404)
    for resource_type, params in (
        ("ServiceRequest", {}),
        ("Task", {}),
        ("Patient", {}),
        ("Patient", {"_id": other_patient}),
        ("ServiceRequest", {"requester": role_of(NPI_2)}),
        ("Task", {"patient": other["patient"]}),
        ("CarePlan", {}),
        ("Communication", {}),
        ("ServiceRequest", {"_include": "ServiceRequest:subject"}),
    ):
        found = mine.get(f"/fhir/{resource_type}", params={**params, "_count": "500"})
        outcome(found, 200)
        for secret in (other_sr, other_patient, other["id"], other["certification"]):
            assert f'"id":"{secret}"' not in found.text, (resource_type, params)
        assert f'"{other["mrn"]}"' not in found.text
    own = mine.get("/fhir/ServiceRequest", params={"_include": "ServiceRequest:subject"})
    assert {world.a.service_request, world.a.patient} <= ids(own.json())
    outcome(mine.get(f"/fhir/Observation/{world.a.observation}"), 200)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": other["service_request"]}},
            {"request": {"method": "GET", "url": f"Task?_id={other['id']}"}},
        ],
    }
    entries = mine.post("/fhir", fhir=batch).json()["entry"]
    assert entries[0]["response"]["status"].startswith("404")
    assert "entry" not in entries[1]["resource"]
    # the second referrer's view is the mirror image
    theirs = Caller(world.api, world.second_token, "referrer2@clinic-a")
    outcome(theirs.get(f"/fhir/ServiceRequest/{world.a.service_request}"), 404)
    outcome(theirs.get(f"/fhir/{other['service_request']}"), 200)


def test_a_referrer_writes_only_in_their_own_name(world: World) -> None:
    mine = world.as_(world.a, "referrer")
    other = world.second
    other_sr_url = f"/fhir/{other['service_request']}"
    theirs = world.as_(world.a, "admin").get(other_sr_url).json()
    # overwrite, take over or delete another physician's referral: it does not exist for them
    outcome(mine.put(other_sr_url, fhir={**theirs, "note": [{"text": "changed"}]}), 404)
    outcome(mine.put(other_sr_url, fhir={**theirs, "requester": {"reference": role_of(NPI_1)}}), 404)
    outcome(mine.delete(other_sr_url), 404)
    after = world.as_(world.a, "admin").get(other_sr_url).json()
    assert after["meta"]["versionId"] == theirs["meta"]["versionId"]
    # create a ServiceRequest in another physician's name: forbidden; in their own: fine
    order = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": f"Patient/{world.a.patient}"},
    }
    outcome(
        mine.post("/fhir/ServiceRequest", fhir={**order, "requester": {"reference": role_of(NPI_2)}}), 403
    )
    outcome(mine.post("/fhir/ServiceRequest", fhir=order), 403)  # nobody's: not theirs either
    created = mine.post("/fhir/ServiceRequest", fhir={**order, "requester": {"reference": role_of(NPI_1)}})
    outcome(created, 201)
    own = created.json()
    # their own may change, but not be handed over to another physician
    outcome(mine.put(f"/fhir/ServiceRequest/{own['id']}", fhir={**own, "status": "active"}), 200)
    handed = {**own, "requester": {"reference": role_of(NPI_2)}}
    outcome(mine.put(f"/fhir/ServiceRequest/{own['id']}", fhir=handed), 403)
    # a conditional create never answers with another physician's referral
    identifier = theirs["identifier"][0]
    conditional = mine.post(
        "/fhir/ServiceRequest",
        fhir={**order, "requester": {"reference": role_of(NPI_1)}},
        headers={"If-None-Exist": f"identifier={identifier['system']}|{identifier['value']}"},
    )
    assert conditional.status_code in (201, 403), conditional.text
    assert other["service_request"].split("/")[1] not in conditional.text
    outcome(mine.delete(f"/fhir/ServiceRequest/{own['id']}"), 204)
    # other resource types are not theirs to change at all
    patient = world.as_(world.a, "admin").get(f"/fhir/Patient/{world.a.patient}").json()
    outcome(mine.put(f"/fhir/Patient/{world.a.patient}", fhir=patient), 403)
    outcome(mine.post("/fhir/Observation", fhir=_observation(world.a.patient)), 403)


def test_a_referrer_signs_only_their_own_certifications(world: World) -> None:
    fresh = world.fresh_referral(world.a, "in-progress")  # referred by NPI_1
    second = Caller(world.api, world.second_token, "referrer2@clinic-a")
    problem(second.post(f"/certifications/{fresh['certification']}/sign", json={}), 404)
    problem(
        world.as_(world.a, "referrer").post(f"/certifications/{fresh['certification']}/sign", json={}), 200
    )
    problem(second.post(f"/referrals/{fresh['id']}/status", json={"status": "cancelled", "reason": "x"}), 403)


def test_deleted_resources_keep_their_compartment(world: World) -> None:
    """The history of another physician's deleted referral stays hidden."""
    fresh = world.fresh_referral(world.a, npi=NPI_2)
    admin = world.as_(world.a, "admin")
    outcome(admin.delete(f"/fhir/{fresh['task']}"), 204)
    outcome(admin.delete(f"/fhir/{fresh['service_request']}"), 204)
    mine = world.as_(world.a, "referrer")
    for url in (
        f"/fhir/{fresh['service_request']}/_history",
        f"/fhir/{fresh['service_request']}",
        f"/fhir/{fresh['service_request']}/_history/1",
        f"/fhir/{fresh['service_request']}/_history/2",
    ):
        response = mine.get(url)
        assert response.status_code == 404, (url, response.status_code)
        assert "Rivera" not in response.text


def test_include_brings_along_only_what_the_scopes_allow(world: World) -> None:
    narrowed = get_token(world.api, world.a.clients["clinic"], "system/ServiceRequest.rs")
    caller = Caller(world.api, narrowed, "clinic@clinic-a (ServiceRequest only)")
    response = caller.get(
        "/fhir/ServiceRequest",
        params=[("_id", world.a.service_request), ("_include", "ServiceRequest:subject")],
    )
    outcome(response, 200)
    assert ids(response.json()) == {world.a.service_request}
    outcome(caller.get(f"/fhir/Patient/{world.a.patient}"), 403)
    wide = world.as_(world.a, "clinic").get(
        "/fhir/ServiceRequest",
        params=[("_id", world.a.service_request), ("_include", "ServiceRequest:subject")],
    )
    assert world.a.patient in ids(wide.json())


# ================================================================== audit


def _audit(world: World, tenant: Tenant, **params: str) -> list[dict[str, Any]]:
    bundle = world.as_(tenant, "admin").get("/fhir/AuditEvent", params={**params, "_count": "500"}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _events_of(world: World, tenant: Tenant, client_id: str) -> list[dict[str, Any]]:
    return [e for e in _audit(world, tenant) if e["agent"][0].get("altId") == client_id]


def test_audit_events_record_who_did_what(world: World) -> None:
    clinic = world.as_(world.b, "clinic")
    client_id = world.b.clients["clinic"].client_id
    before = {e["id"] for e in _events_of(world, world.b, client_id)}
    outcome(clinic.get(f"/fhir/Patient/{world.b.patient}"), 200)
    outcome(clinic.get("/fhir/Observation", params={"subject": f"Patient/{world.b.patient}"}), 200)
    created = clinic.post("/fhir/Observation", fhir=_observation(world.b.patient))
    outcome(created, 201)
    outcome(clinic.get(f"/fhir/Patient/{world.a.patient}"), 404)  # tenant a's: a failure, audited in b
    outcome(clinic.get("/fhir/AuditEvent"), 403)
    events = [e for e in _events_of(world, world.b, client_id) if e["id"] not in before]
    by_kind = {(e["subtype"][0]["code"], e["outcome"]): e for e in events}
    read = by_kind[("read", "0")]
    assert read["entity"][0]["what"]["reference"] == f"Patient/{world.b.patient}"
    assert read["action"] == "R" and read["agent"][0]["who"]["identifier"]["value"] == client_id
    search = by_kind[("search-type", "0")]
    assert search["entity"][0]["type"]["code"] == "Observation"
    assert world.b.patient in base64.b64decode(search["entity"][0]["query"]).decode()
    create = by_kind[("create", "0")]
    assert create["entity"][0]["what"]["reference"] == f"Observation/{created.json()['id']}"
    failed = by_kind[("read", "4")]
    assert failed["entity"][0]["what"]["reference"] == f"Patient/{world.a.patient}"
    assert "404" in failed["outcomeDesc"]
    forbidden = by_kind[("search-type", "4")]
    assert "403" in forbidden["outcomeDesc"]
    for event in events:
        assert event["agent"][0]["altId"] == client_id
    # the events are tenant b's: tenant a's administrators never see them
    assert not _events_of(world, world.a, client_id)


def test_audit_events_of_a_referrer_name_the_physician(world: World) -> None:
    referrer = world.as_(world.a, "referrer")
    client_id = world.a.clients["referrer"].client_id
    outcome(referrer.get(f"/fhir/{world.second['patient']}"), 404)
    failed = [e for e in _events_of(world, world.a, client_id) if e["outcome"] == "4"]
    assert failed and failed[-1]["agent"][0]["who"]["reference"] == role_of(NPI_1)
