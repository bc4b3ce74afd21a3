"""The access matrix of the FHIR API: reads, searches, writes, Bundles and AuditEvents per role and tenant."""

from __future__ import annotations

import uuid

from tests.security import access_matrix_world
from tests.security.access_matrix_world import WRITERS, World, _observation, absent, by_role, ids, matrix, outcome

world = access_matrix_world.world  # the two tenants, built once for this module


# ================================================================== FHIR


@matrix
def test_fhir_read_and_vread(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    for url in (
        f"/fhir/Patient/{target.patient}",
        f"/fhir/Patient/{target.patient}/_history/1",
        f"/fhir/ServiceRequest/{target.service_request}",
        f"/fhir/Observation/{target.observation}",
        f"/fhir/Task/{target.task}",
    ):
        response = caller.get(url)
        if side == "own":
            outcome(response, 200)
        else:
            outcome(response, 404)
            # indistinguishable from an id that exists nowhere
            target_id, unknown = url.split("/")[3], str(uuid.uuid4())
            nonexistent = caller.get(url.replace(target_id, unknown))
            assert nonexistent.status_code == 404
            assert nonexistent.text.replace(unknown, "ID") == response.text.replace(target_id, "ID")


@matrix
def test_fhir_search(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    found = caller.get("/fhir/Patient", params={"_id": target.patient})
    outcome(found, 200)
    assert ids(found.json()) == ({target.patient} if side == "own" else set())
    for resource_type in ("Patient", "ServiceRequest", "Task", "Observation", "CarePlan", "Communication"):
        listing = caller.get(f"/fhir/{resource_type}", params={"_count": "500"})
        outcome(listing, 200)
        absent(listing, world.b if me is world.a else world.a)
    by_post = caller.post("/fhir/Observation/_search", data={"subject": f"Patient/{target.patient}"})
    outcome(by_post, 200)
    if side == "own":
        assert ids(by_post.json()) == {target.observation}
    else:  # only tenant b's own Observation that happens to name the same patient id
        assert target.observation not in ids(by_post.json())
        absent(by_post, target)


@matrix
def test_fhir_include(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    response = caller.get(
        "/fhir/ServiceRequest",
        params=[
            ("_id", target.service_request),
            ("_include", "ServiceRequest:subject"),
            ("_include", "ServiceRequest:requester"),
        ],
    )
    outcome(response, 200)
    if side == "own":
        assert {target.service_request, target.patient} <= ids(response.json())
    else:
        assert "entry" not in response.json()
        # tenant b's own Observation that names tenant a's patient id includes nothing of tenant a
        dangling = caller.get(
            "/fhir/Observation", params={"_include": "Observation:subject", "_count": "500"}
        )
        outcome(dangling, 200)
        absent(dangling, target)


@by_role
def test_fhir_create(world: World, role: str) -> None:
    caller = world.as_(world.a, role)
    created = caller.post("/fhir/Observation", fhir=_observation(world.a.patient))
    if role in WRITERS:
        outcome(created, 201)
        new_id = created.json()["id"]
        outcome(world.as_(world.b, role).get(f"/fhir/Observation/{new_id}"), 404)
        outcome(world.as_(world.b, "admin").get(f"/fhir/Observation/{new_id}"), 404)
    else:
        outcome(created, 403)
    outcome(caller.post("/fhir/Patient", fhir={"resourceType": "Patient"}), 201 if role in WRITERS else 403)


@matrix
def test_fhir_update(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    observation = world.fresh_observation(target)
    changed = {**observation, "valueInteger": 9}
    response = caller.put(f"/fhir/Observation/{observation['id']}", fhir=changed)
    if role not in WRITERS:
        outcome(response, 403)
    elif side == "own":
        outcome(response, 200)
        assert response.json()["meta"]["versionId"] == "2"
    else:  # an update of an id unknown here creates a resource of the caller's own tenant
        outcome(response, 201)
        guarded = caller.put(
            f"/fhir/Observation/{observation['id']}x",
            fhir={**changed, "id": observation["id"] + "x"},
            headers={"If-Match": 'W/"1"'},
        )
        outcome(guarded, 412)
    if side == "other" or role not in WRITERS:
        kept = world.as_(target, "admin").get(f"/fhir/Observation/{observation['id']}").json()
        assert kept["meta"]["versionId"] == "1" and kept["valueInteger"] == 4


@matrix
def test_fhir_delete(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    observation = world.fresh_observation(target)
    response = caller.delete(f"/fhir/Observation/{observation['id']}")
    if role not in WRITERS:
        outcome(response, 403)
    elif side == "own":
        outcome(response, 204)
        outcome(caller.get(f"/fhir/Observation/{observation['id']}"), 410)
        return
    else:
        outcome(response, 404)
        outcome(caller.delete(f"/fhir/Observation/{uuid.uuid4()}"), 404)  # the same as nothing there
    outcome(world.as_(target, "admin").get(f"/fhir/Observation/{observation['id']}"), 200)


@matrix
def test_fhir_history(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    other = world.b if me is world.a else world.a
    instance = caller.get(f"/fhir/Patient/{target.patient}/_history")
    outcome(instance, 200 if side == "own" else 404)
    if side == "own":
        assert ids(instance.json()) == {target.patient}
    typed = caller.get("/fhir/Patient/_history", params={"_count": "500"})
    outcome(typed, 403 if role == "referrer" else 200)
    absent(typed, other)
    if role != "referrer" and side == "own":
        assert target.patient in ids(typed.json())
    system = caller.get("/fhir/_history", params={"_count": "500"})
    outcome(system, 200 if role == "admin" else 403)
    absent(system, other)


@matrix
def test_fhir_batch(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{target.patient}"}},
            {"request": {"method": "GET", "url": f"ServiceRequest/{target.service_request}"}},
            {"request": {"method": "GET", "url": f"Patient?_id={target.patient}"}},
            {"request": {"method": "GET", "url": f"Observation/{target.observation}/_history/1"}},
        ],
    }
    response = caller.post("/fhir", fhir=bundle)
    outcome(response, 200)
    statuses = [e["response"]["status"].split()[0] for e in response.json()["entry"]]
    if side == "own":
        assert statuses == ["200"] * 4
    else:
        assert statuses == ["404", "404", "200", "404"]
        absent(response, target)


@matrix
def test_fhir_transaction(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    created = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0f6f0ac8-1c3e-4f2b-9d7a-5d1d2f3c4b5a",
                "resource": _observation(target.patient),
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    response = caller.post("/fhir", fhir=created)
    outcome(response, 200 if role in WRITERS else 403)
    observation = world.fresh_observation(target)
    removal = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "DELETE", "url": f"Observation/{observation['id']}"}},
            {"request": {"method": "GET", "url": f"Patient/{target.patient}"}},
        ],
    }
    response = caller.post("/fhir", fhir=removal)
    if role not in WRITERS:
        outcome(response, 403)
    elif side == "own":
        outcome(response, 200)
        return
    else:
        outcome(response, 404)
        absent(response, target)
    outcome(world.as_(target, "admin").get(f"/fhir/Observation/{observation['id']}"), 200)


@by_role
def test_fhir_validate(world: World, role: str) -> None:
    response = world.as_(world.b, role).post("/fhir/Patient/$validate", fhir={"resourceType": "Patient"})
    outcome(response, 200)
    assert response.json()["resourceType"] == "OperationOutcome"


@by_role
def test_audit_events_are_read_by_admins_only_and_written_by_nobody(world: World, role: str) -> None:
    caller = world.as_(world.a, role)
    search = caller.get("/fhir/AuditEvent", params={"_count": "5"})
    outcome(search, 200 if role == "admin" else 403)
    event = {
        "resourceType": "AuditEvent",
        "type": {"code": "rest"},
        "recorded": "2026-03-02T09:00:00Z",
        "agent": [{"requestor": True}],
        "source": {"observer": {"display": "x"}},
    }
    outcome(caller.post("/fhir/AuditEvent", fhir=event), 405)
    if role == "admin":
        some = search.json()["entry"][0]["resource"]
        outcome(caller.get(f"/fhir/AuditEvent/{some['id']}"), 200)
        outcome(caller.put(f"/fhir/AuditEvent/{some['id']}", fhir=some), 405)
        outcome(caller.delete(f"/fhir/AuditEvent/{some['id']}"), 405)
        outcome(world.as_(world.b, "admin").get(f"/fhir/AuditEvent/{some['id']}"), 404)
        # the audit trail does not leak through includes or bundles either
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": f"AuditEvent/{some['id']}"}}],
        }
        for other in ("clinic", "system", "referrer"):
            entry = world.as_(world.a, other).post("/fhir", fhir=batch).json()["entry"][0]
            assert entry["response"]["status"].startswith("403"), (other, entry)
    else:
        outcome(caller.put(f"/fhir/AuditEvent/{uuid.uuid4()}", fhir=event), 405)
