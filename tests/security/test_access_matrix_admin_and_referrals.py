"""The access matrix of the admin API, referrals and certifications per role and tenant."""

from __future__ import annotations

import base64

from tests.referrals.test_full_loop import PLAN
from tests.referrals.test_intake_and_task import referral
from tests.security import access_matrix_world
from tests.security.access_matrix_world import (
    ADMIN,
    NPI_1,
    NPI_2,
    WRITERS,
    Caller,
    Tenant,
    World,
    _numbers,
    _patient,
    absent,
    by_role,
    matrix,
    outcome,
    problem,
)
from tests.security.conftest import role_of

world = access_matrix_world.world  # the two tenants, built once for this module


# ================================================================== admin API


ADMIN_LISTINGS = ["messages", "jobs", "dead-letters", "connectors", "routes", "clients"]


@matrix
def test_admin_listings(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    for listing in ADMIN_LISTINGS:
        response = caller.get(f"{ADMIN}/{listing}")
        if role != "admin":
            problem(response, 403)
            continue
        problem(response, 200)
        if side == "other":
            absent(response, target)
        elif listing == "connectors":
            assert target.connector in response.text
        elif listing == "clients":
            assert all(c.client_id in response.text for c in target.clients.values())
        elif listing == "messages":
            assert target.message_id in response.text
    if role == "admin" and side == "other":
        jobs = caller.get(f"{ADMIN}/jobs", params={"limit": 500}).json()
        assert target.job_id not in {j["id"] for j in jobs["items"]}


@matrix
def test_admin_items(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    reads = [
        f"{ADMIN}/messages/{target.message_id}",
        f"{ADMIN}/jobs/{target.job_id}",
        f"{ADMIN}/connectors/{target.connector}",
        f"{ADMIN}/routes/{target.route_id}",
    ]
    for url in reads:
        response = caller.get(url)
        problem(response, 403 if role != "admin" else 200 if side == "own" else 404)
    if side == "own":
        return
    writes = [
        ("POST", f"{ADMIN}/messages/{target.message_id}/replay", None),
        ("POST", f"{ADMIN}/jobs/{target.job_id}/retry", None),
        ("POST", f"{ADMIN}/connectors/{target.connector}/test", None),
        ("POST", f"{ADMIN}/connectors/{target.connector}/poll", None),
        ("DELETE", f"{ADMIN}/routes/{target.route_id}", None),
        (
            "PUT",
            f"{ADMIN}/routes/{target.route_id}",
            {"name": "stolen", "resource_type": "Patient", "connector": target.connector},
        ),
        ("POST", f"{ADMIN}/clients/{target.clients['clinic'].client_id}/revoke", None),
        ("POST", f"{ADMIN}/replay", {"message_ids": [target.message_id]}),
    ]
    for method, url, body in writes:
        response = caller.request(method, url, json=body)
        expected = 403 if role != "admin" else 404
        if url.endswith("/routes/" + str(target.route_id)) and method == "PUT" and role == "admin":
            expected = 404
        problem(response, expected)
    # nothing of tenant a changed
    admin = world.as_(target, "admin")
    problem(admin.get(f"{ADMIN}/routes/{target.route_id}"), 200)
    assert admin.get(f"{ADMIN}/routes/{target.route_id}").json()["name"] == f"referrals-{target.name}"
    assert world.as_(target, "clinic").get("/fhir/Patient").status_code == 200  # not revoked
    clients = {c["client_id"]: c for c in admin.get(f"{ADMIN}/clients").json()}
    assert clients[target.clients["clinic"].client_id]["revoked"] is False


@by_role
def test_admin_registers_clients_of_its_own_tenant(world: World, role: str) -> None:
    response = world.as_(world.b, role).post(f"{ADMIN}/clients", json={"name": "EMR feed", "role": "system"})
    if role != "admin":
        problem(response, 403)
        return
    problem(response, 201)
    new = response.json()
    assert new["client_secret"] and new["scopes"] == "system/*.rs"
    listed = world.as_(world.b, "admin").get(f"{ADMIN}/clients").json()
    assert new["client_id"] in {c["client_id"] for c in listed}
    assert all("secret" not in key or key == "auth" for c in listed for key in c)
    token = world.api.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": new["client_id"],
            "client_secret": new["client_secret"],
        },
    ).json()["access_token"]
    outcome(Caller(world.api, token, "new").get(f"/fhir/Patient/{world.a.patient}"), 404)


# ================================================================== referrals and certifications


@by_role
def test_send_referral(world: World, role: str) -> None:
    number = next(_numbers)
    body = referral(f"R-send-{number}", patient=_patient(f"MRN-send-{number}"))
    response = world.as_(world.b, role).post("/referrals", json=body)
    problem(response, 403 if role == "system" else 201)  # system/*.rs: a read-only client writes nothing
    if role == "referrer":
        assert response.json()["requester"] == role_of(NPI_1)
        other = {**body, "referrer": {**body["referrer"], "npi": NPI_2}}
        problem(world.as_(world.b, role).post("/referrals", json=other), 403)


@matrix
def test_list_referrals(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    response = caller.get("/referrals")
    problem(response, 200)
    tasks = {r["task"] for r in response.json()}
    if side == "other":
        absent(response, target)
        return
    assert f"Task/{target.task}" in tasks
    if role == "referrer":  # only the referrals they sent, whatever they ask for
        assert f"Task/{world.second['id']}" not in tasks
        assert {r["requester"] for r in response.json()} == {role_of(NPI_1)}
        asked = caller.get("/referrals", params={"requester": role_of(NPI_2)}).json()
        assert {r["requester"] for r in asked} <= {role_of(NPI_1)}
    else:
        assert f"Task/{world.second['id']}" in tasks


def _workflow_target(world: World, target: Tenant, allowed: bool, side: str, stage: str) -> tuple[str, str]:
    """(referral Task id, certification Task id): a fresh referral where the call will change it,
    else tenant's main referral (in progress, its certification due), which a refused call must not touch."""
    if allowed and side == "own":
        fresh = world.fresh_referral(target, stage)
        return fresh["id"], fresh.get("certification", "")
    return target.task, target.certification


def _unchanged(world: World, target: Tenant) -> None:
    admin = world.as_(target, "admin")
    assert admin.get(f"/fhir/Task/{target.task}").json()["status"] == "in-progress"
    assert admin.get(f"/fhir/Task/{target.certification}").json()["status"] == "requested"


@matrix
def test_referral_status(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    task, _ = _workflow_target(world, target, role in WRITERS, side, "requested")
    response = world.as_(me, role).post(f"/referrals/{task}/status", json={"status": "received"})
    if role not in WRITERS:
        problem(response, 403)
    else:
        problem(response, 200 if side == "own" else 404)
    if side == "other" or role not in WRITERS:
        _unchanged(world, target)


@matrix
def test_plan_of_care(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    task, _ = _workflow_target(world, target, role in WRITERS, side, "accepted")
    response = world.as_(me, role).post(f"/referrals/{task}/plan-of-care", json=PLAN)
    if role not in WRITERS:
        problem(response, 403)
    else:
        problem(response, 201 if side == "own" else 404)
    if side == "other" or role not in WRITERS:
        _unchanged(world, target)


@matrix
def test_discharge(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    task, _ = _workflow_target(world, target, role in WRITERS, side, "in-progress")
    response = world.as_(me, role).post(f"/referrals/{task}/discharge", json={"summary": "Goals met"})
    if role not in WRITERS:
        problem(response, 403)
    else:
        problem(response, 200 if side == "own" else 404)
    if side == "other" or role not in WRITERS:
        _unchanged(world, target)


@matrix
def test_list_certifications(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    caller = world.as_(me, role)
    response = caller.get("/certifications", params={"include_done": "true"})
    problem(response, 200)
    tasks = {c["task"] for c in response.json()}
    if side == "other":
        absent(response, target)
        return
    assert f"Task/{target.certification}" in tasks
    if role == "referrer":
        assert f"Task/{world.second['certification']}" not in tasks
        asked = caller.get("/certifications", params={"owner": role_of(NPI_2)}).json()
        assert f"Task/{world.second['certification']}" not in {c["task"] for c in asked}
    else:
        assert f"Task/{world.second['certification']}" in tasks


@matrix
def test_sign_certification(world: World, role: str, side: str) -> None:
    me, target = world.sides(side)
    allowed = role in ("admin", "referrer")
    _, certification = _workflow_target(world, target, allowed, side, "in-progress")
    signature = {"signature": base64.b64encode(b"sig").decode()}
    response = world.as_(me, role).post(f"/certifications/{certification}/sign", json=signature)
    if not allowed:
        problem(response, 403)
    elif side == "own":
        problem(response, 200)
        assert response.json()["status"] == "completed"
    else:  # tenant b's referrer is the same physician (NPI), yet tenant a's certification is not theirs
        problem(response, 404)
    if side == "other" or not allowed:
        _unchanged(world, target)
