"""Who may do what, and never across tenants: every endpoint group x role x own/other tenant.

Two tenants (``a`` and ``b``), each with its own admin, clinic, referrer and system clients
(tokens from ``POST /auth/token``), its own referrals, plan of care, observations, connector,
route, messages and jobs. Tenant ``a`` has a second referring physician. The callers of the
"other" side are tenant ``b``'s clients aimed at tenant ``a``'s data: another tenant's resource
is 404 (never 403: it does not exist for them) and no search, ``_include``, history, Bundle or
admin listing ever shows it.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.deps import get_clock
from hub.security.clients import NewClient
from hub.settings import Settings
from tests.conftest import _truncate
from tests.referrals.test_full_loop import PLAN
from tests.referrals.test_intake_and_task import referral
from tests.security.conftest import FHIR, add_client, bearer, get_token, role_of, secured

NPI_1, NPI_2 = "1234567893", "1093817465"
ROLES = ["admin", "clinic", "referrer", "system"]
SIDES = ["own", "other"]
WRITERS = {"admin", "clinic"}  # system/*.cruds; referrer: user/*.rs (+ServiceRequest), system: system/*.rs
ADMIN = "/admin/api"
WEBHOOK_SECRET = "a-long-shared-webhook-secret"
_numbers = itertools.count(1)


class Clock:
    """The injected clock of the app: starts on 2026-03-02 (the PLAN's dates) and ticks 1 ms a call."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, 0)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


class Caller:
    def __init__(self, api: TestClient, token: str, who: str) -> None:
        self.api, self.token, self.who = api, token, who

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**bearer(self.token), **kwargs.pop("headers", {})}
        if "fhir" in kwargs:  # a FHIR body
            kwargs["content"] = json.dumps(kwargs.pop("fhir"))
            headers.update(FHIR)
        return self.api.request(method, url, headers=headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@dataclass
class Tenant:
    name: str
    clients: dict[str, NewClient] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    view: dict[str, Any] = field(default_factory=dict)  # the referral of NPI_1 (the tenant's referrer)
    patient: str = ""
    service_request: str = ""
    task: str = ""
    observation: str = ""
    certification: str = ""
    connector: str = ""
    route_id: int = 0
    message_id: str = ""
    job_id: int = 0

    @property
    def secrets(self) -> list[str]:
        """What must never appear in another tenant's responses: the tenant's resources (as ``"id":...``,
        so that a reference that merely names the same id, or an echo of the requested URL, is not
        mistaken for a leak), its patient's MRN, its connector, message and clients."""
        resources = [
            self.patient,
            self.service_request,
            self.task,
            self.observation,
            self.certification,
            self.message_id,
        ]
        return [
            *(f'"id":"{r}"' for r in resources),
            f"MRN-{self.name}-",
            self.connector,
            *(c.client_id for c in self.clients.values()),
        ]


@dataclass
class World:
    api: TestClient
    settings: Settings
    a: Tenant
    b: Tenant
    second: dict[str, Any] = field(default_factory=dict)  # tenant a's referral of NPI_2
    second_token: str = ""  # tenant a's second referrer (NPI_2)

    def as_(self, tenant: Tenant, role: str) -> Caller:
        return Caller(self.api, tenant.tokens[role], f"{role}@{tenant.name}")

    def sides(self, side: str) -> tuple[Tenant, Tenant]:
        """(the caller's tenant, the tenant whose data is aimed at)."""
        return (self.a, self.a) if side == "own" else (self.b, self.a)

    # ------------------------------------------------------------ fresh data (tests that change state)

    def fresh_referral(self, tenant: Tenant, stage: str = "requested", npi: str = NPI_1) -> dict[str, Any]:
        """A new referral of ``tenant`` (sent by ``npi``), moved to ``stage``: requested, accepted,
        in-progress (a plan of care was established: ``certification`` is its certification Task id)."""
        admin = self.as_(tenant, "admin")
        number = next(_numbers)
        body = referral(f"R-{tenant.name}-{number}", patient=_patient(f"MRN-{tenant.name}-{number}"))
        body["referrer"] = {**body["referrer"], "npi": npi}
        view = admin.post("/referrals", json=body)
        assert view.status_code == 201, view.text
        view = view.json()
        view["id"] = view["task"].split("/")[1]
        view["mrn"] = f"MRN-{tenant.name}-{number}"
        if stage in ("accepted", "in-progress"):
            moved = admin.post(f"/referrals/{view['id']}/status", json={"status": "accepted"})
            assert moved.status_code == 200, moved.text
        if stage == "in-progress":
            plan = admin.post(f"/referrals/{view['id']}/plan-of-care", json=PLAN)
            assert plan.status_code == 201, plan.text
            obligations = {o["kind"]: o for o in plan.json()["obligations"]}
            view["certification"] = obligations["certification"]["task"].split("/")[1]
        return view

    def fresh_observation(self, tenant: Tenant) -> dict[str, Any]:
        created = self.as_(tenant, "admin").post("/fhir/Observation", fhir=_observation(tenant.patient))
        assert created.status_code == 201, created.text
        return created.json()


def _patient(mrn: str) -> dict[str, Any]:
    return {
        "identifier": {"system": "urn:oid:2.16.840.1.113883.3.9999.2", "value": mrn},
        "family": "Rivera",
        "given": ["Ana"],
        "birth_date": "1961-04-12",
        "gender": "female",
    }


def _observation(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueInteger": 4,
    }


def _build_tenant(api: TestClient, settings: Settings, name: str) -> Tenant:
    tenant = Tenant(name)
    for role in ROLES:
        extra = {"fhir_user": role_of(NPI_1)} if role == "referrer" else {}
        tenant.clients[role] = add_client(settings, name, role, **extra)
        tenant.tokens[role] = get_token(api, tenant.clients[role])
    admin = Caller(api, tenant.tokens["admin"], f"admin@{name}")
    tenant.connector = f"hook-{name}"
    connector = admin.put(
        f"{ADMIN}/connectors/{tenant.connector}",
        json={
            "name": tenant.connector,
            "kind": "webhook",
            "config": {"url": f"http://127.0.0.1:9/{name}", "secret": WEBHOOK_SECRET},
        },
    )
    assert connector.status_code == 200, connector.text
    route = admin.post(
        f"{ADMIN}/routes",
        json={"name": f"referrals-{name}", "resource_type": "ServiceRequest", "connector": tenant.connector},
    )
    assert route.status_code == 201, route.text
    tenant.route_id = route.json()["id"]
    body = referral(f"R-{name}-main", patient=_patient(f"MRN-{name}-main"))
    view = admin.post("/referrals", json=body)
    assert view.status_code == 201, view.text
    tenant.view = view.json()
    tenant.task = tenant.view["task"].split("/")[1]
    tenant.service_request = tenant.view["service_request"].split("/")[1]
    tenant.patient = tenant.view["patient"].split("/")[1]
    assert admin.post(f"/referrals/{tenant.task}/status", json={"status": "accepted"}).status_code == 200
    plan = admin.post(f"/referrals/{tenant.task}/plan-of-care", json=PLAN)
    assert plan.status_code == 201, plan.text
    tenant.certification = next(
        o["task"] for o in plan.json()["obligations"] if o["kind"] == "certification"
    ).split("/")[1]
    observation = admin.post("/fhir/Observation", fhir=_observation(tenant.patient))
    assert observation.status_code == 201
    tenant.observation = observation.json()["id"]
    messages = admin.get(f"{ADMIN}/messages").json()
    tenant.message_id = messages["items"][0]["id"]
    jobs = admin.get(f"{ADMIN}/jobs").json()
    tenant.job_id = jobs["items"][0]["id"]
    return tenant


@pytest.fixture(scope="module")
def world(db_url: str) -> Iterator[World]:
    _truncate(db_url)
    base = Settings(
        database_url=db_url, environment="test", base_url="", max_body_bytes=64 * 1024, auth_disabled=True
    )
    settings = secured(base)
    app = create_app(settings)
    clock = Clock()
    app.dependency_overrides[get_clock] = lambda: clock
    with TestClient(app, base_url="http://testserver") as api:
        a = _build_tenant(api, settings, "clinic-a")
        b = _build_tenant(api, settings, "clinic-b")
        world = World(api, settings, a, b)
        second = add_client(settings, "clinic-a", "referrer", fhir_user=role_of(NPI_2))
        world.second_token = get_token(api, second)
        world.second = world.fresh_referral(a, "in-progress", npi=NPI_2)
        # tenant b keeps a resource that points at tenant a's patient id: no reference crosses tenants
        dangling = world.as_(b, "admin").post("/fhir/Observation", fhir=_observation(a.patient))
        assert dangling.status_code == 201
        yield world


def absent(response: httpx.Response, tenant: Tenant) -> None:
    """Nothing of ``tenant`` in the response (searches, includes, histories, bundles, listings)."""
    text = response.text
    for secret in tenant.secrets:
        assert secret not in text, f"{secret} of {tenant.name} leaked: {text[:300]}"


def outcome(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    if status >= 400:
        body = response.json()
        assert body["resourceType"] == "OperationOutcome", body


def problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    if status >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")


def ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if "resource" in e}


matrix = pytest.mark.parametrize("role,side", list(itertools.product(ROLES, SIDES)))
by_role = pytest.mark.parametrize("role", ROLES)


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
