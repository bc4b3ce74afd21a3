"""Who may do what, and never across tenants: every endpoint group x role x own/other tenant.

Two tenants (``a`` and ``b``), each with its own admin, clinic, referrer and system clients
(tokens from ``POST /auth/token``), its own referrals, plan of care, observations, connector,
route, messages and jobs. Tenant ``a`` has a second referring physician. The callers of the
"other" side are tenant ``b``'s clients aimed at tenant ``a``'s data: another tenant's resource
is 404 (never 403: it does not exist for them) and no search, ``_include``, history, Bundle or
admin listing ever shows it.

This module builds that world (the ``world`` fixture) and holds the checks the matrix tests share.
"""

from __future__ import annotations

import itertools
import json
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
