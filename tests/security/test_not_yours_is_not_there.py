"""Another tenant's id answers exactly as an id that does not exist: same status, same body (the id
itself aside), on every item of ``/admin/api`` for every role, and on every item page and action of
the dashboard. Nothing tells a caller that the id is taken elsewhere."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.deps import get_clock
from hub.settings import Settings
from tests.conftest import _truncate
from tests.dashboard.conftest import csrf_of, signed_in
from tests.security.access_matrix_world import ADMIN, ROLES, Clock, Tenant, _build_tenant
from tests.security.conftest import bearer, secured

NOWHERE = {"message": "00000000-0000-4000-8000-000000000000", "job": "2147483000", "connector": "hook-nowhere",
           "route": "2147483001", "client": "clinic-00000000deadbeef"}
_CSRF = re.compile(r'name="csrf" value="[^"]+"')


@pytest.fixture(scope="module")
def two(db_url: str) -> Iterator[tuple[TestClient, Tenant, Tenant]]:
    _truncate(db_url)
    settings = secured(Settings(database_url=db_url, environment="test", base_url="", auth_disabled=True))
    app = create_app(settings)
    clock = Clock()
    app.dependency_overrides[get_clock] = lambda: clock
    with TestClient(app, base_url="http://testserver") as api:
        yield api, _build_tenant(api, settings, "clinic-a"), _build_tenant(api, settings, "clinic-b")


def _ids(tenant: Tenant) -> dict[str, str]:
    return {"message": tenant.message_id, "job": str(tenant.job_id), "connector": tenant.connector,
            "route": str(tenant.route_id), "client": tenant.clients["clinic"].client_id}


ROUTE = {"name": "r", "resource_type": "Patient", "connector": "hook-nowhere"}
ITEMS = [
    ("GET", "/messages/{message}", None), ("POST", "/messages/{message}/replay", None),
    ("POST", "/replay", {"message_ids": ["{message}"]}),
    ("GET", "/jobs/{job}", None), ("POST", "/jobs/{job}/retry", None),
    ("GET", "/connectors/{connector}", None), ("POST", "/connectors/{connector}/test", None),
    ("POST", "/connectors/{connector}/poll", None),
    ("GET", "/routes/{route}", None), ("PUT", "/routes/{route}", ROUTE), ("DELETE", "/routes/{route}", None),
    ("POST", "/clients/{client}/revoke", None),
]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _named(text: str, ids: dict[str, str]) -> str:
    """``text`` with each id (as a whole token: job 4 is not the 4 of 404) replaced by its kind."""
    for kind, value in sorted(ids.items(), key=lambda item: -len(item[1])):
        text = re.sub(rf"(?<![\w.=-]){re.escape(value)}(?![\w-])", f"<{kind}>", text)
    return text


def _answer(response: httpx.Response, ids: dict[str, str]) -> tuple[int, str, str]:
    """(status, redirect path, body) with the ids of the request named."""
    location = _named(response.headers.get("location", "").split("?")[0], ids)
    return response.status_code, location, _CSRF.sub('name="csrf" value="<csrf>"', _named(response.text, ids))


@pytest.mark.parametrize("role,item", list(itertools.product(ROLES, ITEMS)), ids=lambda v: str(v))
def test_admin_api_answers_for_another_tenants_id_as_for_no_id(
    two: tuple[TestClient, Tenant, Tenant], role: str, item: tuple[str, str, Any]
) -> None:
    api, a, b = two
    method, path, body = item
    answers = []
    for ids in (_ids(a), NOWHERE):
        response = api.request(method, ADMIN + _fill(path, ids), json=_fill(body, ids),
                               headers=bearer(b.tokens[role]))
        answers.append(_answer(response, {k: v for k, v in ids.items() if "{" + k + "}" in f"{path}{body}"}))
    assert answers[0] == answers[1]
    assert answers[0][0] == (403 if role != "admin" else 404) or path == "/replay", answers[0]


DASHBOARD = [
    ("GET", "/dashboard/messages/{message}"), ("POST", "/dashboard/messages/{message}/replay"),
    ("POST", "/dashboard/jobs/{job}/retry"), ("POST", "/dashboard/connectors/{connector}/test"),
    ("POST", "/dashboard/dead-letters/{connector}/replay"),
]


@pytest.mark.parametrize("method,path", DASHBOARD)
def test_dashboard_answers_for_another_tenants_id_as_for_no_id(
    two: tuple[TestClient, Tenant, Tenant], method: str, path: str
) -> None:
    api, a, b = two
    csrf = signed_in(api, b.clients["admin"])
    try:
        answers = []
        for ids in (_ids(a), NOWHERE):
            data = {"csrf": csrf} if method == "POST" else None
            response = api.request(method, _fill(path, ids), data=data, follow_redirects=False)
            if response.status_code == 303:  # the notice on the page it leads to
                response = api.get(response.headers["location"], follow_redirects=False)
            answers.append(_answer(response, {k: v for k, v in ids.items() if "{" + k + "}" in path}))
        assert answers[0] == answers[1]
        assert a.connector not in answers[0][2] and a.message_id not in answers[0][2]
    finally:
        api.post("/dashboard/signout", data={"csrf": csrf_of(api.get("/dashboard").text)}, follow_redirects=False)
        api.cookies.clear()


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
def test_only_admins_sign_in_to_the_dashboard(two: tuple[TestClient, Tenant, Tenant], role: str) -> None:
    from tests.dashboard.conftest import sign_in

    api, _, b = two
    client = b.clients[role]
    refused = sign_in(api, client.client_id, client.client_secret or "")
    unknown = sign_in(api, NOWHERE["client"], client.client_secret or "")
    assert refused.status_code == unknown.status_code == 401
    assert _answer(refused, {"c": client.client_id}) == _answer(unknown, {"c": NOWHERE["client"]})
    api.cookies.clear()
