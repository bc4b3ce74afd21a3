"""Fixtures and payload builders for the FHIR EMR connector tests against the sandbox EMR."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connectors.fhir_emr import (
    FhirEmrConnector,
)
from sandboxes.emr import SandboxEmr

ROOT = Path(__file__).resolve().parents[3]
SYSTEMS = {"urn:hub:mrn": "urn:emr:mrn", "urn:hub:referral": "urn:emr:referral"}


# ------------------------------------------------------------------------------------ fixtures


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


class Clock:
    """Unix seconds that tests move forward; shared by the sandbox and the connector."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emr(clock: Clock, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Iterator[SandboxEmr]:
    with SandboxEmr(clock=clock) as server:
        server.register_client("hub", public_pem(rsa_key), "system/*.cruds", kid="rsa-1")
        server.register_client("hub-ec", public_pem(ec_key), "system/*.cruds", kid="ec-1")
        server.register_client("narrow", public_pem(rsa_key), "system/*.rs", kid="rsa-1")
        yield server


MakeConnector = Callable[..., FhirEmrConnector]


@pytest.fixture
def make_connector(emr: SandboxEmr, clock: Clock, rsa_key: rsa.RSAPrivateKey) -> Iterator[MakeConnector]:
    made: list[FhirEmrConnector] = []

    def factory(*, connector_clock: Callable[[], float] | None = None, **config: Any) -> FhirEmrConnector:
        settings: dict[str, Any] = {
            "base_url": emr.url,
            "client_id": "hub",
            "key_id": "rsa-1",
            "private_key": private_pem(rsa_key),
            "identifier_system_map": SYSTEMS,
            "timeout_seconds": 2.0,
            **config,
        }
        connector = FhirEmrConnector(settings, clock=connector_clock or clock)
        made.append(connector)
        return connector

    yield factory
    for connector in made:
        connector.close()


def patient(hub_id: str = "p1", mrn: str = "M1", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": hub_id,
        "meta": {"versionId": "7", "lastUpdated": "2024-01-01T00:00:00Z", "profile": ["urn:profile"]},
        "identifier": [{"system": "urn:hub:mrn", "value": mrn}],
        **fields,
    }


def body(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource).encode()


def fhir_requests(emr: SandboxEmr, method: str | None = None) -> list[Any]:
    return [r for r in emr.requests if method is None or r.method == method]


def referral(hub_id: str = "sr1", number: str = "R-1", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": hub_id,
        "meta": {"versionId": "3", "lastUpdated": "2024-01-01T00:00:00Z"},
        "status": "active",
        "intent": "order",
        "identifier": [{"system": "urn:hub:referral", "value": number}],
        "subject": {"reference": "Patient/p1", "display": "the patient"},
        **fields,
    }


def in_context(focus: dict[str, Any], *referenced: dict[str, Any]) -> bytes:
    """The payload the hub delivers to a connector whose context asks for references."""
    entries = [
        {"fullUrl": f"http://hub.test/fhir/{r['resourceType']}/{r['id']}", "resource": r}
        for r in (focus, *referenced)
    ]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()


def searches(emr: SandboxEmr, resource_type: str) -> list[Any]:
    return [r for r in emr.requests if r.method == "GET" and r.path == f"/fhir/{resource_type}"]
