"""The FHIR REST connector's health and connector contract, and the sandbox FHIR server itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from connectors import registry
from connectors.base import (
    ConfigError,
    Connector,
    ConnectorError,
    HealthChecker,
    Poller,
    Sender,
    supports_polling,
)
from connectors.fhir_rest import FhirRestConfig, FhirRestConnector
from sandboxes.fhir import FhirSandboxControls, SandboxFhirServer
from tests.connectors.conftest import free_port, make_delivery
from tests.connectors.fhir_rest.conftest import (
    ROOT,
    TOKEN,
    MakeConnector,
    mock_connector,
    payload,
    seed_clinic,
)

# ----------------------------------------------------------------------------------- health


def test_health(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    connector = make_connector(emr.url)
    result = connector.health()
    assert result.ok is True and "CapabilityStatement (FHIR 4.0.1)" in result.detail

    emr.configure(bearer_token=TOKEN)  # metadata stays open, as on real servers
    assert connector.health().ok is True

    emr.configure(status_override=500)
    result = connector.health()
    assert result.ok is False and "500 Internal Server Error" in result.detail


def test_health_never_raises(make_connector: MakeConnector) -> None:
    down = make_connector(f"http://127.0.0.1:{free_port()}/fhir").health()
    assert down.ok is False and "ConnectError" in down.detail

    not_fhir = mock_connector(make_connector, lambda request: httpx.Response(200, json={"status": "ok"}))
    result = not_fhir.health()
    assert result.ok is False and "not a CapabilityStatement" in result.detail


# --------------------------------------------------------------------------- the contract


def test_registry_finds_fhir_rest(emr: SandboxFhirServer) -> None:
    registry.default_registry.cache_clear()
    assert "fhir_rest" in registry.available()
    assert registry.get("fhir_rest") is FhirRestConnector
    connector = registry.create("fhir_rest", {"base_url": emr.url, "page_size": 10})
    try:
        assert isinstance(connector, FhirRestConnector) and isinstance(connector, Connector)
        assert isinstance(connector, Sender) and isinstance(connector, HealthChecker)
        assert isinstance(connector, Poller) and supports_polling(connector)
        assert connector.health().ok
    finally:
        connector.close()


def test_config_defaults_and_validation() -> None:
    config = registry.validate_config("fhir_rest", {"base_url": "https://emr.example/fhir/"})
    assert isinstance(config, FhirRestConfig)
    assert config.resource_types == ["Patient", "ServiceRequest", "Task"]
    assert (config.page_size, config.timeout_seconds, config.bearer_token, config.verify_tls) == (
        50,
        10,
        None,
        True,
    )

    bad = {
        "base_url": "https://emr.example/fhir?token=s3cr3t-value",
        "resource_types": ["Patient", "patient/../x"],
        "page_size": 501,
        "bearer_token": "line\nbreak-secret",
    }
    with pytest.raises(ConfigError) as caught:
        registry.create("fhir_rest", bad)
    assert set(caught.value.fields) == {"base_url", "resource_types", "page_size", "bearer_token"}
    for value in ("s3cr3t-value", "patient/../x", "break-secret"):
        assert value not in str(caught.value)
    with pytest.raises(ConfigError):
        registry.create("fhir_rest", {"base_url": "https://emr.example/fhir", "resource_types": []})
    with pytest.raises(ConfigError):
        registry.create("fhir_rest", {"base_url": "https://emr.example/fhir", "page_size": 0})


def test_errors_never_carry_payload_or_token(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(status_override=422)
    connector = make_connector(emr.url, bearer_token=TOKEN)
    with pytest.raises(ConnectorError) as caught:
        connector.send(make_delivery(payload=payload(name=[{"family": "Doe-Marker"}])))
    text = str(caught.value) + repr(caught.value) + repr(connector) + repr(connector.config)
    assert "Doe-Marker" not in text and TOKEN not in text and "422" in text


def test_connector_is_a_context_manager(emr: SandboxFhirServer) -> None:
    with FhirRestConnector({"base_url": emr.url}) as connector:
        assert connector.health().ok
    assert connector._client.is_closed


# ---------------------------------------------------------------------------------- sandbox


def test_sandbox_search(emr: SandboxFhirServer) -> None:
    seed_clinic(emr)
    with httpx.Client(base_url=emr.url, trust_env=False) as http:
        page = http.get("/Patient", params={"_count": 2, "_offset": 2, "_sort": "-_lastUpdated"}).json()
        assert page["type"] == "searchset" and page["total"] == 7
        assert [e["resource"]["id"] for e in page["entry"]] == ["p4", "p3"]
        relations = {link["relation"]: link["url"] for link in page["link"]}
        assert relations["next"].startswith(emr.url + "/Patient?") and "_offset=4" in relations["next"]
        assert "_offset=0" in relations["previous"]

        mark = emr.resource("Patient", "p4")["meta"]["lastUpdated"]  # type: ignore[index]
        for prefix, expected in (("ge", 3), ("gt", 2), ("le", 5), ("lt", 4), ("eq", 1), ("", 1)):
            found = http.get("/Patient", params={"_lastUpdated": prefix + mark}).json()
            assert found["total"] == expected, prefix
        assert http.get("/Patient", params={"_lastUpdated": "ge2000"}).json()["total"] == 7
        assert (
            http.get("/Patient", params={"_lastUpdated": ["ge2000-01-01", "lt2000-02"]}).json()["total"] == 0
        )

        for token, ids in (("urn:mrn|M2", ["p2"]), ("M5", ["p5"]), ("|M5", []), ("urn:other|M5", [])):
            found = http.get("/Patient", params={"identifier": token}).json()
            assert [e["resource"]["id"] for e in found.get("entry", [])] == ids, token
        assert http.get("/Patient", params={"identifier": "urn:mrn|"}).json()["total"] == 7

        for params in ({"name": "x"}, {"_count": "-1"}, {"_sort": "name"}, {"_lastUpdated": "sa2024"}):
            answer = http.get("/Patient", params=params)
            assert answer.status_code == 400 and answer.json()["resourceType"] == "OperationOutcome"


def test_sandbox_writes_reads_and_idempotency(emr: SandboxFhirServer) -> None:
    headers = {"Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=emr.url, trust_env=False, headers=headers) as http:
        created = http.post("/Task", json={"resourceType": "Task", "id": "ignored", "status": "requested"})
        assert created.status_code == 201 and created.json()["id"] == "s000001"
        assert created.headers["Location"] == emr.url + "/Task/s000001/_history/1"
        assert created.headers["ETag"] == 'W/"1"'

        task = {"resourceType": "Task", "id": "s000001", "status": "accepted"}
        stale = http.put("/Task/s000001", json=task, headers={"If-Match": 'W/"7"'})
        assert stale.status_code == 412
        updated = http.put("/Task/s000001", json=task, headers={"If-Match": 'W/"1"'})
        assert updated.status_code == 200 and updated.json()["meta"]["versionId"] == "2"
        assert http.get("/Task/s000001/_history/1").json()["status"] == "requested"
        assert http.get("/Task/s000001").json()["status"] == "accepted"
        assert http.get("/Task/nope").status_code == 404

        assert http.put("/Task/other", json=task).status_code == 400  # id mismatch
        assert http.put("/Task/s000001", json={**task, "resourceType": "Patient"}).status_code == 400
        assert (
            http.put("/Task/s000001", content=b"{}", headers={"Content-Type": "text/plain"}).status_code
            == 415
        )
        assert http.delete("/Task/s000001").status_code == 405

        key = {"Idempotency-Key": "k-1"}
        first = http.post("/Task", json={"resourceType": "Task"}, headers=key)
        second = http.post("/Task", json={"resourceType": "Task"}, headers=key)
        assert first.json() == second.json() and second.status_code == 201
        reused = http.post("/Task", json={"resourceType": "Task", "status": "draft"}, headers=key)
        assert reused.status_code == 422 and emr.duplicates == 1

    stamps = [r["meta"]["lastUpdated"] for t in ("Task",) for r in emr.history(t, "s000001")]
    assert stamps == sorted(stamps) and len(set(stamps)) == 2 and len(stamps[0].split(".")[1]) == 7  # µs + Z


def test_sandbox_fail_rate_is_deterministic() -> None:
    def statuses(seed: int) -> list[int]:
        with SandboxFhirServer(fail_rate=0.5, seed=seed) as server:
            with httpx.Client(base_url=server.url, trust_env=False) as http:
                return [http.get("/Patient").status_code for _ in range(12)]

    first = statuses(3)
    assert first == statuses(3) and {200, 503} == set(first)


def test_sandbox_controls_over_http(emr: SandboxFhirServer) -> None:
    with httpx.Client(base_url=emr.root, trust_env=False) as http:
        answer = http.post(
            "/_control", json={"bearer_token": TOKEN, "fail_keys": ["k"], "fail_keys_status": 409}
        )
        assert answer.status_code == 200
        assert answer.json()["controls"]["bearer_token"] == "**********"
        assert http.get("/fhir/Patient").status_code == 401
        assert http.post("/_control", json={"fail_rate": 2}).status_code == 400
        assert http.post("/_control", json={"nope": 1}).status_code == 400
        summary = http.get("/_requests").json()
        assert summary["requests"] == 1 and summary["failed"] == 1
        assert http.post("/_reset").status_code == 200
        assert http.get("/fhir/Patient").status_code == 200
    with pytest.raises(ValueError):
        FhirSandboxControls(status_override=99)
    with pytest.raises(ValueError):
        FhirSandboxControls(link_base="ftp://x")


def test_sandbox_runs_as_a_process_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandboxes.fhir", "--port", "0", "--bearer-token", TOKEN],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/fhir"), (
            process.stderr.read() if process.stderr else ""
        )
        with FhirRestConnector({"base_url": url, "bearer_token": TOKEN}) as connector:
            assert connector.send(make_delivery(payload=payload())).status == 201
            [item] = connector.poll(None, 10).items
            assert item.external_id == "Patient/p1/_history/1"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < 3
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
