"""Rate limits, registry, config validation, secrets, and the sandbox EMR itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connectors import registry
from connectors.base import (
    ConfigError,
    Connector,
    ConnectorError,
    Poller,
    TransientError,
)
from connectors.fhir_emr import (
    FhirEmrConfig,
    FhirEmrConnector,
)
from sandboxes.emr import SandboxEmr
from tests.connectors.conftest import make_delivery
from tests.connectors.fhir_emr.conftest import ROOT, Clock, MakeConnector, body, patient, private_pem, public_pem

# -------------------------------------------------------------------------------- rate limits


def test_429_with_retry_after_is_transient(
    emr: SandboxEmr, make_connector: MakeConnector, clock: Clock
) -> None:
    emr.configure(rate_limit=2, rate_window=30)
    connector = make_connector()
    connector.send(make_delivery("job-1", body(patient("p1", "M1"))))
    connector.send(make_delivery("job-2", body(patient("p2", "M2"))))
    clock.advance(10)

    with pytest.raises(TransientError) as caught:
        connector.send(make_delivery("job-3", body(patient("p3", "M3"))))
    assert caught.value.status == 429 and caught.value.retry_after == 20.0
    assert str(caught.value).endswith("-> 429 Too Many Requests: throttled")

    clock.advance(20)
    assert connector.send(make_delivery("job-3", body(patient("p3", "M3")))).status == 201

    emr.configure(rate_limit=None, status_override=429, retry_after=5)
    with pytest.raises(TransientError) as injected:
        connector.poll(None, 10)
    assert injected.value.retry_after == 5.0


# ------------------------------------------------------------------------- config, registry


def test_registry_and_health(emr: SandboxEmr, rsa_key: rsa.RSAPrivateKey) -> None:
    registry.default_registry.cache_clear()
    assert registry.get("fhir_emr") is FhirEmrConnector
    config = {"base_url": emr.url, "client_id": "hub", "key_id": "rsa-1", "private_key": private_pem(rsa_key)}
    connector = registry.create("fhir_emr", config)
    try:
        assert isinstance(connector, Connector) and isinstance(connector, Poller)
        result = connector.health()
        assert result.ok and "CapabilityStatement" in result.detail
    finally:
        connector.close()

    with FhirEmrConnector({**config, "client_id": "stranger"}) as refused:
        result = refused.health()
        assert not result.ok and "invalid_client" in result.detail


def test_config_validation_never_shows_the_key(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    pem = private_pem(rsa_key)
    config = registry.validate_config(
        "fhir_emr",
        {"base_url": "https://emr.example/fhir", "client_id": "hub", "key_id": "k", "private_key": pem},
    )
    assert isinstance(config, FhirEmrConfig) and config.algorithm == "RS384"
    assert config.scope.split() == [
        "system/*.rs",
        "system/Patient.cu",
        "system/ServiceRequest.cu",
        "system/Task.cu",
        "system/CarePlan.cu",
    ]
    assert pem not in repr(config) and "PRIVATE" not in str(config.model_dump())

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"private_key": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"},
            "private_key",
        ),
        ({"private_key": private_pem(ec_key)}, "private_key"),  # EC with RS384
        ({"private_key": pem, "algorithm": "ES384"}, "private_key"),
        ({"private_key": private_pem(small)}, "private_key"),
        ({"algorithm": "HS256"}, "algorithm"),
        ({"bearer_token": "static"}, "bearer_token"),
        ({"scope": 'system/*.rs "quoted"'}, "scope"),
        ({"identifier_system_map": {"urn:a": "urn:x", "urn:b": "urn:x"}}, "identifier_system_map"),
        ({"token_url": "http://emr.example/token"}, "token_url"),  # http token URL for an https EMR
    ]
    for change, field in cases:
        settings = {
            "base_url": "https://emr.example/fhir",
            "client_id": "hub",
            "key_id": "k",
            "private_key": pem,
        }
        with pytest.raises(ConfigError) as caught:
            registry.validate_config("fhir_emr", settings | change)
        assert field in caught.value.fields, (change, caught.value)
        assert "PRIVATE KEY" not in str(caught.value) and "bm90IGEga2V5" not in str(caught.value)
    ok = registry.validate_config(
        "fhir_emr",
        {"base_url": "https://emr.example/fhir", "client_id": "c", "key_id": "k", "algorithm": "ES384"}
        | {"private_key": private_pem(ec_key)},
    )
    assert isinstance(ok, FhirEmrConfig)


def test_secrets_stay_out_of_reprs_and_errors(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector()
    connector.send(make_delivery(payload=body(patient())))
    token = emr.requests[-1].headers["authorization"].split()[1]
    emr.configure(status_override=422, diagnostics=f"echoing {token}")  # a careless server
    with pytest.raises(ConnectorError) as caught:
        connector.send(make_delivery("job-2", body(patient(name=[{"family": "Doe-Marker"}]))))
    text = repr(connector) + repr(connector.auth) + repr(connector.config) + repr(caught.value)
    assert "PRIVATE KEY" not in text and "Doe-Marker" not in text
    assert token not in repr(connector.auth) + repr(connector)


# ----------------------------------------------------------------------------------- sandbox


def test_sandbox_conditional_interactions(emr: SandboxEmr) -> None:
    emr.configure(require_token=False)
    headers = {"Content-Type": "application/fhir+json"}
    task = {"resourceType": "Task", "status": "requested", "identifier": [{"system": "urn:s", "value": "1"}]}
    with httpx.Client(base_url=emr.url, trust_env=False, headers=headers) as http:
        assert http.put("/Task", params={"identifier": "urn:s|1"}, json=task).status_code == 201
        assert http.put("/Task", params={"identifier": "urn:s|1"}, json=task).status_code == 200
        assert (
            http.put("/Task", params={"identifier": "urn:s|2"}, json=task).status_code == 400
        )  # not in body
        assert http.put("/Task", params={"identifier": "1"}, json=task | {"id": "other"}).status_code == 400
        assert http.put("/Task", params={"status": "x"}, json=task).status_code == 400
        assert http.put("/Task", json=task).status_code == 400
        assert http.put("/Task", params={"identifier": "urn:s|1,2"}, json=task).status_code == 400
        stale = http.put("/Task", params={"identifier": "urn:s|1"}, json=task, headers={"If-Match": 'W/"1"'})
        assert stale.status_code == 412

        exists = http.post("/Task", json=task, headers={"If-None-Exist": "identifier=urn:s|1"})
        assert exists.status_code == 200 and exists.json()["id"] == "s000001"
        fresh = http.post("/Task", json=task, headers={"If-None-Exist": "identifier=urn:s|9"})
        assert fresh.status_code == 201 and fresh.json()["id"] == "s000002"
        both = http.post("/Task", json=task, headers={"If-None-Exist": "identifier=urn:s|1"})
        assert both.status_code == 412  # two resources carry urn:s|1 now

    smart = httpx.get(emr.url + "/.well-known/smart-configuration", trust_env=False).json()
    assert smart["token_endpoint"] == emr.token_url
    assert smart["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    summary = httpx.get(emr.root + "/_requests", trust_env=False).json()
    assert summary["clients"] == ["hub", "hub-ec", "narrow"]
    emr.reset()
    assert emr.controls.require_token and emr.resources("Task") == []


def test_sandbox_emr_runs_as_a_process(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    key_file = tmp_path / "hub.pub.pem"
    key_file.write_text(public_pem(rsa_key))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandboxes.emr",
            "--port",
            "0",
            "--client-id",
            "hub",
            "--public-key",
            str(key_file),
            "--kid",
            "rsa-1",
        ],
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
        config = {"base_url": url, "client_id": "hub", "key_id": "rsa-1", "private_key": private_pem(rsa_key)}
        with FhirEmrConnector(config) as connector:
            assert connector.send(make_delivery(payload=body(patient()))).status == 201
            [item] = connector.poll(None, 10).items
            assert item.external_id == "Patient/s000001/_history/1"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
