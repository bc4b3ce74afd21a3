"""An unmatched document from a known referrer (their fax number or Direct address on a
PractitionerRole) becomes a draft referral for staff to complete; from an unknown sender, or from a
referrer who has a certification to sign, it stays in triage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from hub.app import create_app
from hub.documents.intake import run_intake
from hub.settings import Settings
from hub.store.db import transaction
from hub.store.models import SearchToken
from hub.store.reindex import reindex
from mappings.documents import INTAKE_SYSTEM
from mappings.referral.draft import DRAFT_SYSTEM
from tests.documents.plans import certification_page, receive, text_pdf

FHIR = {"Content-Type": "application/fhir+json"}
REFERRAL_LETTER = text_pdf("Referral for physical therapy", "Please evaluate and treat")


@pytest.fixture
def hub(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client


def referrer(client: TestClient, role_id: str, *telecom: dict[str, str]) -> str:
    role = {"resourceType": "PractitionerRole", "id": role_id, "telecom": list(telecom)}
    assert client.put(f"/fhir/PractitionerRole/{role_id}", json=role, headers=FHIR).status_code in (200, 201)
    return f"PractitionerRole/{role_id}"


def intake_of(document: dict) -> str:
    return next(c["coding"][0]["code"] for c in document["category"] if c["coding"][0]["system"] == INTAKE_SYSTEM)


@pytest.mark.parametrize(("channel", "sender", "telecom"), [
    ("fax", "+15551230000", {"system": "fax", "value": "(555) 123-0000"}),
    ("direct", "Dr.Reyes@Direct.Example.org", {"system": "email", "value": "dr.reyes@direct.example.org"}),
])
def test_a_known_referrers_document_opens_a_draft_referral(hub: TestClient, settings: Settings, channel: str,
                                                           sender: str, telecom: dict[str, str]) -> None:
    role_ref = referrer(hub, "reyes", {"system": "phone", "value": "555-123-9999"}, telecom)
    document_id = receive(settings, REFERRAL_LETTER, f"{channel}-1", channel=channel, sender=sender)
    outcome = run_intake(settings, settings.default_tenant, document_id)
    assert outcome.outcome == "referral" and outcome.task

    task = hub.get(f"/fhir/Task/{outcome.task}").json()
    assert task["status"] == "requested" and task["requester"]["reference"] == role_ref
    service_request = hub.get(f"/fhir/{task['focus']['reference']}").json()
    assert service_request["status"] == "draft" and service_request["intent"] == "order"
    assert service_request["requester"]["reference"] == role_ref
    assert service_request["supportingInfo"] == [{"reference": f"DocumentReference/{document_id}"}]
    assert service_request["identifier"] == [{"system": DRAFT_SYSTEM, "value": document_id}]
    document = hub.get(f"/fhir/DocumentReference/{document_id}").json()
    assert intake_of(document) == "referral" and document["docStatus"] == "preliminary"
    assert hub.get("/admin/api/documents/triage").json()["items"] == []
    listed = hub.get("/referrals", params={"status": "requested"}).json()
    assert [r["task"] for r in listed] == [f"Task/{outcome.task}"]

    again = run_intake(settings, settings.default_tenant, document_id)  # idempotent: nothing written twice
    assert (again.outcome, again.task) == ("referral", outcome.task)
    assert hub.get("/fhir/ServiceRequest", params={"identifier": f"{DRAFT_SYSTEM}|{document_id}"}).json()["total"] == 1


def test_an_unknown_senders_document_stays_in_triage(hub: TestClient, settings: Settings) -> None:
    referrer(hub, "reyes", {"system": "fax", "value": "+15559870000"})
    document_id = receive(settings, REFERRAL_LETTER, "fax-2", sender="+15551230000")
    outcome = run_intake(settings, settings.default_tenant, document_id)
    assert (outcome.outcome, outcome.reason) == ("triage", "no return code found")
    assert [d["id"] for d in hub.get("/admin/api/documents/triage").json()["items"]] == [document_id]
    assert hub.get("/fhir/ServiceRequest", params={"identifier": f"{DRAFT_SYSTEM}|{document_id}"}).json()["total"] == 0


def test_an_address_shared_by_two_referrers_stays_in_triage(hub: TestClient, settings: Settings) -> None:
    referrer(hub, "reyes", {"system": "fax", "value": "+15551230000"})
    referrer(hub, "okafor", {"system": "fax", "value": "555 123 0000"})  # the practice's one fax
    document_id = receive(settings, REFERRAL_LETTER, "fax-3", sender="+15551230000")
    assert run_intake(settings, settings.default_tenant, document_id).outcome == "triage"


def test_a_referrer_with_a_certification_to_sign_stays_in_triage(hub: TestClient, settings: Settings) -> None:
    _, task_id = certification_page(hub)
    owner = hub.get(f"/fhir/Task/{task_id}").json()["owner"]["reference"]
    role = hub.get(f"/fhir/{owner}").json()
    role["telecom"] = [*role.get("telecom", []), {"system": "fax", "value": "+15551230000"}]
    assert hub.put(f"/fhir/{owner}", json=role, headers=FHIR).status_code == 200
    document_id = receive(settings, REFERRAL_LETTER, "fax-4", sender="+15551230000")
    assert run_intake(settings, settings.default_tenant, document_id).outcome == "triage"


def test_the_sender_is_found_through_the_telecom_index(hub: TestClient, settings: Settings) -> None:
    """The lookup is a search on the index, not a read of every role: a role whose index rows are
    missing (stored before the telecom index existed) is not found until ``hub db reindex``."""
    for number in range(12):
        referrer(hub, f"other-{number}", {"system": "fax", "value": f"+1555987{number:04d}"})
    referrer(hub, "reyes", {"system": "fax", "value": "+1 (555) 010-2000"})
    with transaction(settings.database_url) as session:
        session.execute(delete(SearchToken).where(SearchToken.resource_type == "PractitionerRole",
                                                  SearchToken.resource_id == "reyes"))
    first = receive(settings, REFERRAL_LETTER, "fax-5", sender="15550102000")
    assert run_intake(settings, settings.default_tenant, first).outcome == "triage"

    reindex(settings.database_url, resource_type="PractitionerRole")
    second = receive(settings, REFERRAL_LETTER, "fax-6", sender="15550102000")
    outcome = run_intake(settings, settings.default_tenant, second)
    assert outcome.outcome == "referral" and outcome.task
    assert hub.get(f"/fhir/Task/{outcome.task}").json()["requester"]["reference"] == "PractitionerRole/reyes"
