"""The billing admin API: build, list, one claim with its findings, scrub, submit; admins only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.settings import Settings
from hub.store.models import Resource
from hub.unit_of_work import unit_of_work
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing.conftest import CONNECTOR
from tests.billing.scenario import ACME, MEDICARE
from tests.security.conftest import add_client, bearer, get_token, secured

BASE = "/admin/api/billing"


def test_build_list_scrub_and_submit(clinic: TestClient, settings: Settings) -> None:
    built = clinic.post(f"{BASE}/claims/build", json={"through": "2025-03-31"})
    assert built.status_code == 200, built.text
    assert len(built.json()["claims"]) == 12 and built.json()["skipped"] == []
    assert clinic.post(f"{BASE}/claims/build").status_code == 200  # the body is optional

    blocked = clinic.get(f"{BASE}/claims", params={"status": "blocked"}).json()
    assert [c["payer_id"] for c in blocked] == [ACME]
    [claim] = blocked
    assert claim["errors"] == 2 and claim["charge"] == "142.00" and claim["service_from"] == "2025-03-12"
    assert "name" not in " ".join(claim)  # a view carries no patient name
    detail = clinic.get(f"{BASE}/claims/{claim['claim_id']}").json()
    assert {f["rule"] for f in detail["finding_list"] if f["severity"] == "error"} == {"ncci.pair"}
    scrubbed = clinic.post(f"{BASE}/claims/{claim['claim_id']}/scrub").json()
    assert scrubbed["blocking"] is True and scrubbed["status"] == "blocked"
    assert clinic.get(f"{BASE}/claims/nope").status_code == 404
    bad = clinic.get(f"{BASE}/claims", params={"status": "lost"})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
    assert clinic.post(f"{BASE}/claims/build", json={"through": "soon"}).status_code in (400, 422)

    files = clinic.post(f"{BASE}/submit", json={"connector": CONNECTOR})
    assert files.status_code == 200, files.text
    by_payer = {f["payer_id"]: f for f in files.json()}
    assert set(by_payer) == {MEDICARE, ACME}
    assert all(f["status"] == "queued" and f["message_id"] and len(f["job_ids"]) == 1 for f in by_payer.values())
    assert len(by_payer[MEDICARE]["claim_ids"]) == 10 and by_payer[ACME]["charge"] == "135.00"
    assert by_payer[MEDICARE]["interchange_control"] != by_payer[ACME]["interchange_control"]
    submitted = clinic.get(f"{BASE}/claims", params={"status": "submitted"}).json()
    assert {c["claim_id"] for c in submitted} == {i for f in by_payer.values() for i in f["claim_ids"]}
    assert clinic.post(f"{BASE}/submit", json={"connector": "nope"}).status_code == 404
    with unit_of_work(settings) as session:  # each call is audited, naming what was asked
        audits = [r.content or "" for r in session.query(Resource).filter(Resource.resource_type == "AuditEvent")]
        assert any("POST /admin/api/billing/submit" in a for a in audits)
        assert any(claim["claim_id"] in a and "scrub" in a for a in audits)


@pytest.fixture
def api(settings: Settings, house: SandboxClearinghouse) -> Iterator[tuple[TestClient, Settings]]:
    auth = secured(settings)
    with TestClient(create_app(auth), base_url="http://testserver") as client:
        yield client, auth


def test_only_admins_bill(api: tuple[TestClient, Settings]) -> None:
    client, auth = api
    tenant = auth.default_tenant
    admin = get_token(client, add_client(auth, tenant, "admin"))
    clinic = get_token(client, add_client(auth, tenant, "clinic"))
    for method, path in (("post", "/claims/build"), ("get", "/claims"), ("get", "/claims/x"),
                         ("post", "/claims/x/scrub"), ("post", "/submit")):
        call = getattr(client, method)
        assert call(BASE + path).status_code == 401
        refused = call(BASE + path, headers=bearer(clinic))
        assert refused.status_code == 403, (path, refused.text)
    assert client.get(f"{BASE}/claims", headers=bearer(admin)).json() == []
    assert client.post(f"{BASE}/claims/build", headers=bearer(admin)).json() == {"claims": [], "skipped": []}


def test_an_eligibility_inquiry_is_sent_by_the_billing_profile_s_submitter_for_its_organization(
        clinic: TestClient, settings: Settings, house: SandboxClearinghouse) -> None:
    from hub.crypto import cipher_for, decrypt
    from hub.store.models import Message
    from tests.billing.scenario import SUBMITTER, billing_profile
    from tests.mappings.billing.visits_support import NPI

    # a second practice of the clinic bills through this connector: its profile names that Organization
    other = {"resourceType": "Organization", "id": "practice-2", "name": "Springfield Rehab East",
             "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": NPI["pt"]}]}
    assert clinic.put("/fhir/Organization/practice-2", json=other,
                      headers={"Content-Type": "application/fhir+json"}).status_code in (200, 201)
    config = house.connector_config("sftp", billing=billing_profile(organization="Organization/practice-2"))
    assert clinic.put(f"/admin/api/connectors/{CONNECTOR}",
                      json={"name": CONNECTOR, "kind": "x12_billing", "config": config}).status_code == 200
    answer = clinic.post(f"{BASE}/eligibility", json={"coverage": "Coverage/cov-1"})
    assert answer.status_code == 200, answer.text
    with unit_of_work(settings, readonly=True) as session:
        message = session.get(Message, answer.json()["message_id"])
        assert message is not None
        text = (decrypt(cipher_for(settings), message.raw_payload) or b"").decode()
    isa = text.split("~")[0].split("*")
    assert isa[6].strip() == SUBMITTER["etin"] and isa[8].strip() == SUBMITTER["receiver_id"]
    assert f"*XX*{NPI['pt']}~" in text and f"*XX*{NPI['clinic']}~" not in text  # the profile's provider
