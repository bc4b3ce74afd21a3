"""Hardening: security headers, CORS off by default, rate limit, body limit everywhere, and no PHI
or credentials in logs."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.logs import ScrubFilter, scrub
from hub.settings import Settings

FHIR = {"Content-Type": "application/fhir+json"}


def test_security_headers_and_no_cors_by_default(client: TestClient) -> None:
    response = client.get("/fhir/Patient", headers={"Origin": "https://evil.example"})
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options("/fhir/Patient", headers={"Origin": "https://evil.example",
                                                         "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_only_for_configured_origins(settings: Settings) -> None:
    configured = settings.model_copy(update={"cors_origins": ["https://portal.example.org"]})
    with TestClient(create_app(configured)) as client:
        ok = client.get("/fhir/metadata", headers={"Origin": "https://portal.example.org"})
        assert ok.headers["access-control-allow-origin"] == "https://portal.example.org"
        other = client.get("/fhir/metadata", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_rate_limit_per_client(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_per_minute": 5})
    with TestClient(create_app(limited)) as client:
        codes = [client.get("/fhir/metadata").status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        refused = client.get("/fhir/metadata")
        assert int(refused.headers["retry-after"]) >= 1
        assert client.get("/healthz").status_code == 200  # probes are never limited
        # a made-up bearer header does not make the caller someone else (no fresh window per guess)
        for guess in range(3):
            forged = client.get("/fhir/metadata", headers={"Authorization": f"Bearer guess-{guess}"})
            assert forged.status_code == 429


def test_rate_limit_windows_are_per_verified_client(settings: Settings) -> None:
    from tests.security.conftest import add_client, bearer, get_token, secured

    limited = secured(settings, rate_limit_per_minute=4)
    with TestClient(create_app(limited)) as client:
        first, second = add_client(limited, "default", "admin"), add_client(limited, "default", "admin")
        token = get_token(client, first)  # one request from this address
        other = get_token(client, second)  # two
        assert [client.get("/fhir/metadata", headers=bearer(token)).status_code for _ in range(5)] == (
            [200] * 4 + [429])
        assert client.get("/fhir/metadata", headers=bearer(other)).status_code == 200  # its own window
        assert client.get("/fhir/metadata").status_code == 200  # the address: 3 of 4 so far


def test_body_limit_on_every_endpoint(client: TestClient) -> None:
    big = b"x" * (65 * 1024)
    too_big = client.post("/admin/api/routes", content=big, headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413
    assert client.post("/auth/token", content=big,
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 413

    def chunks():
        for _ in range(80):
            yield b"y" * 1024

    chunked = client.post("/referrals", content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    outcome = client.post("/fhir/Patient", content=big, headers=FHIR)
    assert outcome.status_code == 413 and outcome.json()["resourceType"] == "OperationOutcome"


def test_scrub_removes_credentials_and_query_strings() -> None:
    assert "s3cr3t" not in scrub("POST client_secret=s3cr3t&grant_type=client_credentials")
    assert "eyJhbGciOi" not in scrub("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y")
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:1", "GET", "/fhir/Patient?family=Rivera&birthdate=1961-04-12", "1.1", 200),
                               None)
    ScrubFilter().filter(record)
    assert "Rivera" not in record.getMessage() and "1961" not in record.getMessage()


def test_no_phi_in_logs_of_refused_and_failing_requests(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    name, birth = "Zyxwvutsrqp", "1933-02-28"
    bad = {"resourceType": "Patient", "name": [{"family": name}], "birthDate": birth, "gender": "bogus"}
    assert client.post("/fhir/Patient", content=json.dumps(bad), headers=FHIR).status_code == 400
    broken = '{"resourceType": "Patient", "name": [{"family": "' + name + '"'
    assert client.post("/fhir/Patient", content=broken, headers=FHIR).status_code == 400
    client.get("/fhir/Patient", params={"family": name, "birthdate": birth})
    text = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert name not in text and birth not in text
