"""Shared by the FHIR client library tests: conformance checks of what the server sent, and client helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhirclient.client import FHIRClient
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.fhirdate import FHIRDate
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.patient import Patient
from fhirclient.models.servicerequest import ServiceRequest
from fhirclient.server import FHIRServer
from fhirpy import AsyncFHIRClient

from tests.interop.conftest import Exchange, LiveServer

PT_SYSTEM = "http://snomed.info/sct"
REFERRAL_SYSTEM = "urn:oid:2.16.840.1.113883.3.1"
SEARCH_PARAM_TYPES = {
    "number",
    "date",
    "string",
    "token",
    "reference",
    "composite",
    "quantity",
    "uri",
    "special",
}


# ------------------------------------------------------------------ conformance of what the server sent


def strict_r4(body: dict[str, Any]) -> Any:
    """Parse with fhirclient's R4 models, strictly (raises FHIRValidationError on any deviation)."""
    return FHIRElementFactory.instantiate(body["resourceType"], body)


def r4b(body: dict[str, Any]) -> Any:
    return get_fhir_model_class(body["resourceType"]).model_validate(body)


def json_representation_errors(node: Any, path: str = "") -> list[str]:
    """FHIR JSON rules a model parser lets through: no null, no empty array, object or string."""
    if node is None or node in ("", [], {}):
        return [f"{path or '(root)'} is {json.dumps(node)}"]
    errors: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            errors += json_representation_errors(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            errors += json_representation_errors(value, f"{path}[{index}]")
    return errors


def _fhir_json(exchange: Exchange) -> dict[str, Any] | None:
    if not exchange.path.startswith("/fhir") or not exchange.body:
        return None
    assert exchange.headers.get("content-type", "").startswith("application/fhir+json"), exchange
    return json.loads(exchange.body)


def assert_conformant(live: LiveServer) -> None:
    """Check every FHIR body the recorder saw.

    All parse strictly as R4 (fhirclient) and keep the JSON rules (no null, no empty array, object
    or string); error responses are OperationOutcomes; every searchset/history Bundle and the
    CapabilityStatement also validate with fhir.resources R4B; Bundle links are absolute and point
    back at this server.
    """
    checked = 0
    for exchange in live.exchanges:
        body = _fhir_json(exchange)
        if body is None:
            continue
        where = f"{exchange.method} {exchange.path}?{exchange.query} -> {exchange.status}"
        try:
            strict_r4(body)
        except FHIRValidationError as exc:
            pytest.fail(f"not strict R4 ({where}): {exc}")
        assert not json_representation_errors(body), (where, json_representation_errors(body))
        if exchange.status >= 400:
            assert body["resourceType"] == "OperationOutcome", where
        kind = body["resourceType"]
        if kind == "CapabilityStatement" or (
            kind == "Bundle" and body.get("type") in ("searchset", "history")
        ):
            r4b(body)
        if kind == "Bundle":
            for link in body.get("link", []):
                assert link["url"].startswith(live.fhir_base + "/"), (where, link)
        checked += 1
    assert checked, "the recorder saw no FHIR response"


def sent(live: LiveServer, method: str, path: str) -> list[Exchange]:
    return [e for e in live.exchanges if e.method == method and e.path == path]



# ------------------------------------------------------------------ fhirclient (SMART, strict R4)


def smart_server(live: LiveServer) -> FHIRServer:
    client = FHIRClient(settings={"app_id": "interop-tests", "api_base": live.fhir_base})
    client.server.session.trust_env = False  # never a proxy: 127.0.0.1 only
    assert client.prepare(), (
        "an open server: fhirclient should be ready after reading the CapabilityStatement"
    )
    return client.server


def fc_patient(family: str, mrn: str) -> Patient:
    patient = Patient()
    name = HumanName()
    name.family = family
    name.given = ["Ada"]
    patient.name = [name]
    identifier = Identifier()
    identifier.system = "urn:oid:1.2.36.146.595.217.0.1"
    identifier.value = mrn
    patient.identifier = [identifier]
    patient.gender = "female"
    patient.birthDate = FHIRDate("1980-02-29")
    return patient


def fc_service_request(patient_id: str, referral: str, status: str = "active") -> ServiceRequest:
    request = ServiceRequest()
    request.status = status
    request.intent = "order"
    subject = FHIRReference()
    subject.reference = f"Patient/{patient_id}"
    request.subject = subject
    identifier = Identifier()
    identifier.system = REFERRAL_SYSTEM
    identifier.value = referral
    request.identifier = [identifier]
    coding = Coding()
    coding.system = PT_SYSTEM
    coding.code = "91251008"
    coding.display = "Physical therapy procedure"
    category = CodeableConcept()
    category.coding = [coding]
    request.category = [category]
    return request


def fc_create(resource: Any, server: FHIRServer) -> Any:
    """Create through the model's own ``.create(server)``; return the strictly parsed response body."""
    body = resource.create(server)
    assert body is not None, "the server should return the created resource (Prefer return=representation)"
    created = type(resource)(body)  # strict
    assert created.id and created.meta.versionId == "1"
    return created


def fhirpy_client(live: LiveServer) -> AsyncFHIRClient:
    return AsyncFHIRClient(live.fhir_base, aiohttp_config={"timeout": None})
