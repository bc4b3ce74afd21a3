"""The billing types are written by API clients whose scopes name them (an EMR posting its charges
and claims), like any clinical type; a client without those scopes is refused."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from hub.settings import Settings
from tests.security.conftest import FHIR, add_client, bearer, get_token
from tests.validation_cases import MINIMAL


def test_an_emr_with_billing_scopes_writes_charges_and_claims(api: TestClient, auth_settings: Settings) -> None:
    emr = add_client(auth_settings, "clinic-a", "system",
                     scopes="system/ChargeItem.cruds system/Claim.cruds system/ClaimResponse.rs")
    token = get_token(api, emr)
    for resource_type in ("ChargeItem", "Claim"):
        body = {"resourceType": resource_type, **MINIMAL[resource_type]}
        created = api.post(f"/fhir/{resource_type}", content=json.dumps(body), headers={**FHIR, **bearer(token)})
        assert created.status_code == 201, created.text
        found = api.get(f"/fhir/{resource_type}", params={"patient": "Patient/p1"}, headers=bearer(token)).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [created.json()["id"]]
    response = {"resourceType": "ClaimResponse", **MINIMAL["ClaimResponse"]}
    refused = api.post("/fhir/ClaimResponse", content=json.dumps(response), headers={**FHIR, **bearer(token)})
    assert refused.status_code == 403  # read and search only: the payer's answers come in through billing

    clinical = get_token(api, add_client(auth_settings, "clinic-a", "system", scopes="system/Patient.cruds"))
    claim = {"resourceType": "Claim", **MINIMAL["Claim"]}
    assert api.post("/fhir/Claim", content=json.dumps(claim), headers={**FHIR, **bearer(clinical)}).status_code == 403
    assert api.get("/fhir/Claim", headers=bearer(clinical)).status_code == 403
