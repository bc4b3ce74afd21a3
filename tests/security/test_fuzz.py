"""Property-based fuzzing of every operation of the OpenAPI spec (schemathesis), as an administrator:
no 5xx, and responses conform to the documented schemas. SQLite only; bounded and deterministic
(derandomized Hypothesis, a fixed number of examples per operation), so it stays well under a minute."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from hub.app import create_app
from hub.settings import Settings
from hub.store.migrate import upgrade
from tests.security.conftest import add_client, bearer, get_token, secured

MAX_EXAMPLES = 15


def _operation_labels() -> list[str]:
    """The operations of the spec (the spec does not depend on the store: no database is opened)."""
    app = create_app(Settings(database_url="sqlite://", environment="test", auth_disabled=True))
    return sorted(
        f"{method.upper()} {path}"
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    )


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'hub.db'}"
    upgrade(url)
    settings = secured(Settings(database_url=url, environment="test", base_url="", max_body_bytes=64 * 1024))
    app: FastAPI = create_app(settings)
    with TestClient(app, base_url="http://testserver") as api:  # runs the lifespan once
        admin = add_client(settings, "fuzz", "admin")
        headers = bearer(get_token(api, admin))
        # something to find: a referral (patient, service request, task) of the fuzzed tenant
        from tests.referrals.test_intake_and_task import referral

        assert api.post("/referrals", json=referral(), headers=headers).status_code == 201
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        yield schema, headers


@pytest.mark.parametrize("label", _operation_labels())
def test_no_server_errors_and_documented_responses(fuzzed: tuple[Any, dict[str, str]], label: str) -> None:
    schema, headers = fuzzed
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    checks = [not_a_server_error]
    if not path.startswith("/fhir"):
        # /fhir answers with FHIR JSON (application/fhir+json, resources and Bundles) that the
        # OpenAPI document does not describe: there, only "no 5xx" is checked
        checks.append(response_schema_conformance)

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=checks)

    fuzz()


def test_what_the_fuzzer_found_stays_fixed(api: TestClient, auth_settings: Settings) -> None:
    """Each of these was a 500 (both backends: the integer limits differ)."""
    from tests.referrals.test_intake_and_task import referral

    headers = bearer(get_token(api, add_client(auth_settings, "clinic-a", "admin")))
    huge = str(10**30)
    body = referral(attachments=[{"title": "Letter", "data": "±not base64"}])
    assert api.post("/referrals", json=body, headers=headers).status_code == 400
    body = referral(attachments=[{"title": "Letter", "data": "YWJj\nZGVm"}])  # MIME-wrapped base64 is fine
    assert api.post("/referrals", json=body, headers=headers).status_code == 201
    route = {"name": "r", "resource_type": "Patient", "connector": "c"}
    for method, url, json_body in (
        ("PUT", f"/admin/api/routes/{huge}", route),
        ("GET", f"/admin/api/routes/{huge}", None),
        ("DELETE", f"/admin/api/routes/{huge}", None),
        ("GET", f"/admin/api/jobs/{huge}", None),
        ("POST", f"/admin/api/jobs/{huge}/retry", None),
        ("GET", f"/admin/api/messages?offset={huge}", None),
        ("GET", f"/admin/api/jobs?offset={huge}", None),
        ("GET", "/admin/api/messages?since=9999-12-31T23:59:59-14:00", None),
    ):
        response = api.request(method, url, json=json_body, headers=headers)
        assert response.status_code == 400, (method, url, response.text)
    for url in (
        f"/fhir/Patient?_offset={huge}",
        f"/fhir/Patient/_history?_offset={huge}",
        f"/fhir/_history?_offset={huge}",
    ):
        response = api.get(url, headers=headers)
        assert response.status_code == 200 and "entry" not in response.json(), (url, response.text)


# ------------------------------------------------------------------ JSON bodies: depth, size, encodings

#: every endpoint that reads a JSON body (the signed webhook is signed per example, below)
JSON_ENDPOINTS = [
    ("POST", "/fhir/Patient"), ("PUT", "/fhir/Patient/fuzz-1"), ("POST", "/fhir"),
    ("POST", "/fhir/Patient/$validate"), ("POST", "/fhir/$validate"), ("POST", "/referrals"),
    ("POST", "/admin/api/routes"), ("PUT", "/admin/api/routes/1"), ("PUT", "/admin/api/connectors/fuzz"),
    ("POST", "/inbound/default/partner"), ("POST", "/referrals/t-1/status"), ("POST", "/referrals/t-1/plan-of-care"),
    ("POST", "/referrals/t-1/discharge"), ("POST", "/certifications/t-1/sign"), ("POST", "/admin/api/replay"),
    ("POST", "/admin/api/clients"),
]
WEBHOOK_SECRET = "fuzz-webhook-secret-0123456789"


def _json_bodies() -> Any:
    from hypothesis import strategies as st

    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                     st.sampled_from(["1e999999", "-0.0", "9" * 5000, "NaN", "Infinity", '"\\ud800"']))

    def nest(depth: int, kind: str) -> str:
        return ('{"a":' * depth + "1" + "}" * depth) if kind == "{" else "[" * depth + "]" * depth

    def as_text(value: Any) -> str:
        return value if isinstance(value, str) and value[:1] in '9-1NI"' else __import__("json").dumps(value)

    resource = st.fixed_dictionaries({"resourceType": st.sampled_from(["Patient", "Bundle", "AuditEvent", "x"])})
    texts = st.one_of(
        st.builds(nest, st.sampled_from([99, 100, 101, 1_000, 50_000]), st.sampled_from(["[", "{"])),
        st.builds(lambda r, v: as_text(r)[:-1] + f', "extension": [{as_text(v)}]}}', resource, leaf),
        st.builds(lambda r: as_text(r)[:-1] + ', "resourceType": "Patient"}', resource),  # duplicate names
        st.text(alphabet='[]{}",:0123456789.eE+-tfnul\\ \ud800', max_size=200),
    )
    encoded = st.tuples(texts, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1"])).map(
        lambda pair: pair[0].encode(pair[1], "surrogatepass") if pair[1] != "latin-1"
        else pair[0].encode("latin-1", "replace"))
    return st.one_of(encoded, st.binary(max_size=300))


@pytest.mark.parametrize("method,path", JSON_ENDPOINTS)
def test_json_bodies_never_give_a_server_error(api: TestClient, auth_settings: Settings, method: str,
                                               path: str) -> None:
    """Deep nesting, odd encodings, huge numbers, NaN, duplicate names, lone surrogates, noise: 4xx only."""
    import time

    from connectors.webhook.signing import signature_header

    headers = bearer(get_token(api, add_client(auth_settings, "default", "admin")))
    assert api.put("/admin/api/connectors/partner", headers=headers, json={
        "name": "partner", "kind": "webhook",
        "config": {"url": "http://127.0.0.1:9/unused", "secret": WEBHOOK_SECRET}}).status_code == 200
    counter = iter(range(10**6))

    @hypothesis.settings(max_examples=30, derandomize=True, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @hypothesis.given(body=_json_bodies())
    @hypothesis.example(body=b"[" * 10_000 + b"]" * 10_000)  # the reported 500s
    @hypothesis.example(body=b'{"resourceType":"Patient","x":' + b"[" * 990 + b"]" * 990 + b"}")
    @hypothesis.example(body=b'{"resourceType":"Patient","name":[{"family":"\\ud800"}]}')
    def fuzz(body: bytes) -> None:
        sent = {**headers, "Content-Type": "application/fhir+json"}
        if path.startswith("/inbound"):
            key, ts = f"fuzz-{next(counter)}", int(time.time())
            sent = {"Content-Type": "application/fhir+json", "Idempotency-Key": key, "X-Hub-Timestamp": str(ts),
                    "X-Hub-Signature-256": signature_header(WEBHOOK_SECRET, ts, body, idempotency_key=key)}
        response = api.request(method, path, content=body, headers=sent)
        assert response.status_code < 500, (method, path, body[:80], response.text[:200])

    fuzz()


#: one endpoint of each non-FHIR router that reads a JSON body, with a body its model accepts
MODEL_ENDPOINTS = [
    ("POST", "/referrals", None),
    ("PUT", "/admin/api/connectors/fuzz",
     '{"name": "fuzz", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x", "secret": "'
     + WEBHOOK_SECRET + '"}%s}'),
    ("POST", "/admin/api/clients", '{"name": "c", "role": "admin"%s}'),
]


@pytest.mark.parametrize("method,path,template", MODEL_ENDPOINTS)
@pytest.mark.parametrize("extra,reason", [
    (', "x": NaN', "NaN is not a JSON number"),
    (', "x": Infinity', "Infinity is not a JSON number"),
    (', "name": "other"', "duplicate member name 'name'"),
    (', "x": ' + "[" * 5_000 + "]" * 5_000, "nested deeper than 100 levels"),
    (', "x": ' + "[" * 101 + "]" * 101, "nested deeper than 100 levels"),
])
def test_non_fhir_json_bodies_are_read_by_the_one_reader(api: TestClient, auth_settings: Settings, method: str,
                                                        path: str, template: str | None, extra: str,
                                                        reason: str) -> None:
    """/referrals, /admin/api and the client registry refuse what FastAPI's own JSON parser lets
    through (NaN, duplicate names) or fails on (deep nesting): 400, a problem naming the body."""
    import json

    from tests.referrals.test_intake_and_task import referral

    headers = bearer(get_token(api, add_client(auth_settings, "default", "admin")))
    if template is None:
        body = json.dumps(referral())[:-1] + extra.replace('"name"', '"identifier"') + "}"
        reason = reason.replace("'name'", "'identifier'")
    else:
        body = template % extra
    response = api.request(method, path, content=body.encode(), headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    issue = response.json()["issues"][0]
    assert reason in issue["diagnostics"] and issue["expression"] == ["body"], issue
    # the same body without the refused part is accepted: the refusal is the reader's, not the model's
    fine = json.dumps(referral()) if template is None else template % ""
    response = api.request(method, path, content=fine.encode(), headers={**headers, "Content-Type": "application/json"})
    assert response.status_code < 300, response.text


def test_the_json_models_and_schemas_stay_documented() -> None:
    """Reading bodies first with the one reader keeps the request models in the OpenAPI document."""
    app = create_app(Settings(database_url="sqlite://", environment="test", auth_disabled=True))
    paths = app.openapi()["paths"]
    for path, method in (("/referrals", "post"), ("/admin/api/routes", "post"), ("/admin/api/clients", "post"),
                         ("/referrals/{task_id}/status", "post")):
        schema = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]
        assert "$ref" in schema, (path, schema)
