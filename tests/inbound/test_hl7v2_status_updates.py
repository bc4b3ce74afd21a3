"""Referral status updates over HL7 v2: a REF^I12 opens ServiceRequest + Task, then the partner's
RRI^I12 or 360X OSU^O51 moves the Task (``handle_hl7v2`` and a real MLLP listener on 127.0.0.1,
the store of the ``settings`` fixture: SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.hl7v2 import MllpServerThread
from hub.crypto import decrypt
from hub.inbound.hl7v2 import DEFAULT_REASONS, handle_hl7v2
from hub.services import fhir_service
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.db import transaction
from hub.sync.admin import AdminViews
from hub.sync.inbox import Inbox
from mappings.fhir import jsonio
from mappings.hl7v2 import AckResult, OutboundHeader, parse, read_ack, task_to_osu_o51, task_to_rri_i12
from mappings.referral.task_statuses import BusinessStatus, business_status_concept
from tests.inbound.test_hl7v2_inbound import SOURCE, TENANT, listener, ref, send  # noqa: F401

NOW = datetime(2024, 3, 6, 9, 0, 0)
PARTNER = OutboundHeader(sending_application="REHAB_EMR", sending_facility="REHAB")
#: the referral number of tests/mappings/data/hl7v2/ref_i12_basic (RF1-6 REF-7781^ORTHO_CLINIC)
REFERRAL = "REF-7781^ORTHO_CLINIC"
OTHER_TENANT = "other-clinic"


# ------------------------------------------------------------------------------------ helpers


def handle(settings: Settings, raw: bytes | str, tenant: str = TENANT) -> bytes:
    data = raw.encode() if isinstance(raw, str) else raw
    return handle_hl7v2(settings, tenant, data, SOURCE, now=NOW)


def ack_of(answer: bytes) -> AckResult:
    return read_ack(parse(answer))


def rri(
    control_id: str, status: str = "A", *, referral: str = REFERRAL, note: str = "", task_id: str = ""
) -> str:
    """An RRI^I12 as a partner's EMR writes it: RF1-1 status, RF1-6 the referral number."""
    segments = [
        f"MSH|^~\\&|REHAB_EMR|REHAB|THERAPY_HUB|HUB|20240306090000||RRI^I12^RRI_I12|{control_id}|P|2.5.1",
        "MSA|AA|MSG00001",
        f"RF1|{status}^^HL70283|||||{referral}|20240306" + (f"||||{task_id}^THFHIR" if task_id else ""),
        "PRD|RT^Referred to Provider^HL70286|Rehab Clinic",
        "PID|1||MRN-1001^^^ORTHO_CLINIC^MR||Gonçalves^Zoë",
    ]
    if note:
        segments.append(f"NTE|1|L|{note}")
    return "\r".join(segments) + "\r"


def osu(
    control_id: str, order_status: str, *, referral: str = REFERRAL, exact: str = "", reason: str = "",
    business: str = "",
) -> str:
    """A 360X OSU^O51 as a partner writes it: ORC-5 order status (ORC-25 the exact Task status)."""
    orc = ["ORC", "SC", referral, "", "", order_status] + [""] * 20
    if reason:
        orc[16] = f"^{reason}"
    if exact:
        orc[25] = f"{exact}^{exact}^HL7FHIRTS" + (f"^{business}^^BSER" if business else "")
    return (
        "\r".join(
            [
                f"MSH|^~\\&|REHAB_EMR|REHAB|THERAPY_HUB|HUB|20240306090000||OSU^O51^OSU_O51|{control_id}|P|2.5.1",
                "PID|1||MRN-1001^^^ORTHO_CLINIC^MR||Gonçalves^Zoë",
                "|".join(orc).rstrip("|"),
            ]
        )
        + "\r"
    )


def matches(
    settings: Settings, resource_type: str, items: list[tuple[str, str]], tenant: str = TENANT
) -> list[dict]:
    """A search through the FHIR service: the matches."""
    with transaction(settings.database_url) as session:
        bundle = fhir_service(session, settings, tenant, "/fhir").search(resource_type, items, strict=True)
        entries = bundle.get("entry", [])
        return [jsonio.loads(jsonio.dumps(e["resource"])) for e in entries if e["search"]["mode"] == "match"]


def referral_task(settings: Settings, tenant: str = TENANT) -> dict[str, Any]:
    """The one referral Task of ``tenant``."""
    [task] = matches(settings, "Task", [("code", "fulfill")], tenant)
    return task


def read(settings: Settings, resource_type: str, resource_id: str) -> dict[str, Any]:
    with transaction(settings.database_url) as session:
        stored = fhir_service(session, settings, TENANT, "/fhir").read(resource_type, resource_id)
        return jsonio.loads(stored.content or "{}")


def communications(settings: Settings, task_id: str) -> list[dict[str, Any]]:
    """What the referrer was told about the Task."""
    return matches(settings, "Communication", [("based-on", f"Task/{task_id}")])


def stored_message(settings: Settings, control_id: str) -> dict[str, Any]:
    """The message row (admin view) with its events and its decrypted translated payload."""
    with transaction(settings.database_url) as session:
        row = repo.message_by_external_id(session, tenant=TENANT, source=SOURCE, external_id=control_id)
        assert row is not None
        view = AdminViews(session, tenant=TENANT).message(row.id)
        box = Inbox(session, tenant=TENANT, settings=settings).box
        payload = decrypt(box, row.translated_payload)
        view["payload"] = json.loads(payload) if payload else None
        return view


@pytest.fixture
def task(settings: Settings) -> dict[str, Any]:
    """A REF^I12 received: the referral Task, ``requested``."""
    assert ack_of(handle(settings, ref("REF-1"))).code == "AA"
    task = referral_task(settings)
    assert task["status"] == "requested" and task["meta"]["versionId"] == "1"
    return task


# -------------------------------------------------------------------------------------- tests


def test_a_partners_rri_accepts_the_referral_over_mllp(
    listener: MllpServerThread,  # noqa: F811
    settings: Settings,
    client: TestClient,
) -> None:
    assert send(listener, ref("REF-1")).code == "AA"
    [service_request] = [
        e["resource"]
        for e in client.get("/fhir/ServiceRequest").json()["entry"]
        if e["search"]["mode"] == "match"
    ]
    task = referral_task(settings)
    assert task["focus"]["reference"] == f"ServiceRequest/{service_request['id']}"
    assert task["identifier"] == service_request["identifier"][:1]

    ack = send(listener, rri("RRI-1", "A").encode())
    assert (ack.code, ack.acknowledged_control_id, ack.error_code) == ("AA", "RRI-1", "")

    accepted = read(settings, "Task", task["id"])
    assert accepted["status"] == "accepted" and accepted["meta"]["versionId"] == "2"
    assert accepted["businessStatus"]["coding"][0]["code"] == "3.0"
    [told] = communications(settings, task["id"])
    assert told["recipient"][0]["reference"] == task["requester"]["reference"]
    assert "accepted" in told["payload"][0]["contentString"]

    stored = stored_message(settings, "RRI-1")
    assert (stored["status"], stored["resource"], stored["error"]) == ("unrouted", f"Task/{task['id']}", None)
    assert [e["event"] for e in stored["events"]] == ["received", "translated", "acknowledged"]
    assert stored["payload"]["task"] == f"Task/{task['id']}" and stored["payload"]["status"] == "accepted"
    assert stored["payload"]["changed"] is True


@pytest.mark.parametrize("build", [task_to_rri_i12, task_to_osu_o51], ids=["RRI^I12", "OSU^O51"])
def test_the_hubs_own_rri_and_osu_mapping_moves_the_task(
    settings: Settings, task: dict[str, Any], build
) -> None:
    # the partner answers with the Task it was sent, accepted (the mapping echoes the FHIR id, THFHIR)
    accepted = {
        **task,
        "status": "accepted",
        "businessStatus": business_status_concept(BusinessStatus.ACCEPTED),
    }
    answer = build(accepted, header=PARTNER, control_id="UPD-1", now=NOW)
    ack = ack_of(handle(settings, answer))
    assert (ack.code, ack.acknowledged_control_id) == ("AA", "UPD-1")
    accepted = read(settings, "Task", task["id"])
    assert (accepted["status"], accepted["meta"]["versionId"]) == ("accepted", "2")
    assert len(communications(settings, task["id"])) == 1
    assert stored_message(settings, "UPD-1")["payload"]["task_id"] == task["id"]


def test_osu_order_status_with_the_exact_task_status(settings: Settings, task: dict[str, Any]) -> None:
    ack = ack_of(handle(settings, osu("OSU-1", "SC", exact="accepted")))
    assert ack.code == "AA"
    assert read(settings, "Task", task["id"])["status"] == "accepted"
    # then IP (in progress) by ORC-5 alone
    assert ack_of(handle(settings, osu("OSU-2", "IP"))).code == "AA"
    started = read(settings, "Task", task["id"])
    assert (started["status"], started["meta"]["versionId"]) == ("in-progress", "3")


def test_the_same_message_again_gets_the_same_ack_and_the_same_status_is_no_change(
    settings: Settings, task: dict[str, Any]
) -> None:
    first = handle(settings, rri("RRI-1", "A"))
    assert handle(settings, rri("RRI-1", "A")) == first  # byte for byte: the earlier answer
    assert read(settings, "Task", task["id"])["meta"]["versionId"] == "2"

    # the partner sends its answer again under a new control id: AA, nothing written
    assert ack_of(handle(settings, rri("RRI-2", "A"))).code == "AA"
    assert ack_of(handle(settings, osu("OSU-1", "SC", exact="accepted"))).code == "AA"
    again = read(settings, "Task", task["id"])
    assert (again["status"], again["meta"]["versionId"]) == ("accepted", "2")
    assert len(communications(settings, task["id"])) == 1
    assert stored_message(settings, "RRI-2")["payload"]["changed"] is False


def test_a_new_business_status_under_the_same_status_is_recorded(
    settings: Settings, task: dict[str, Any]
) -> None:
    """In progress, the partner says the first visit is scheduled, then that the patient did not come:
    the Task status stays, the BSeR business status follows (BSeR 5.1.1, 5.1.2)."""
    assert ack_of(handle(settings, osu("OSU-B1", "SC", exact="accepted"))).code == "AA"
    assert ack_of(handle(settings, osu("OSU-B2", "IP", exact="in-progress", business="5.1.1"))).code == "AA"
    assert ack_of(handle(settings, osu("OSU-B3", "IP", exact="in-progress", business="5.1.2"))).code == "AA"
    unattended = read(settings, "Task", task["id"])
    assert unattended["status"] == "in-progress" and unattended["meta"]["versionId"] == "4"
    assert unattended["businessStatus"]["coding"][0]["code"] == "5.1.2"
    assert stored_message(settings, "OSU-B3")["payload"]["changed"] is True
    # the same again: a repeat, nothing written; a code not allowed in progress: AE 103
    assert ack_of(handle(settings, osu("OSU-B4", "IP", exact="in-progress", business="5.1.2"))).code == "AA"
    assert read(settings, "Task", task["id"])["meta"]["versionId"] == "4"
    refused = ack_of(handle(settings, osu("OSU-B5", "IP", exact="in-progress", business="2.1")))
    assert (refused.code, refused.error_code) == ("AE", "103")


def test_pending_is_no_change_for_a_referral_not_decided_yet(
    settings: Settings, task: dict[str, Any]
) -> None:
    assert ack_of(handle(settings, rri("RRI-P1", "P"))).code == "AA"
    assert ack_of(handle(settings, osu("OSU-P1", "", exact="received"))).code == "AA"
    received = read(settings, "Task", task["id"])
    assert (received["status"], received["meta"]["versionId"]) == ("received", "2")
    assert ack_of(handle(settings, rri("RRI-P2", "P"))).code == "AA"  # pending: still no change
    assert read(settings, "Task", task["id"])["meta"]["versionId"] == "2"


def test_an_unknown_referral_is_ae_204_and_the_message_is_kept(
    settings: Settings, task: dict[str, Any]
) -> None:
    ack = ack_of(handle(settings, rri("RRI-X", "A", referral="REF-0000^ORTHO_CLINIC")))
    assert (ack.code, ack.error_code, ack.error_location) == ("AE", "204", "RF1^1^6")
    assert "Gonçalves" not in ack.error_text and "REF-0000" not in ack.error_text
    stored = stored_message(settings, "RRI-X")
    assert stored["status"] == "rejected" and stored["error"].startswith("HL7 204")
    assert "Gonçalves" not in stored["error"] and stored["resource"] is None
    assert [e["event"] for e in stored["events"]] == ["received", "rejected", "acknowledged"]
    assert read(settings, "Task", task["id"])["meta"]["versionId"] == "1"

    ack = ack_of(handle(settings, osu("OSU-X", "IP", referral="REF-7781^ELSEWHERE")))
    assert (ack.code, ack.error_code, ack.error_location) == ("AE", "204", "ORC^1^2")


@pytest.mark.parametrize(
    ("first", "then", "text"),
    [
        (None, osu("OSU-ILL", "CM"), "a requested referral cannot become completed"),
        (
            rri("RRI-R", "R", note="Out of network"),
            rri("RRI-ILL", "A"),
            "a rejected referral cannot become accepted",
        ),
    ],
    ids=["requested-to-completed", "rejected-to-accepted"],
)
def test_an_illegal_move_is_ae_and_the_task_is_unchanged(
    settings: Settings, task: dict[str, Any], first: str | None, then: str, text: str
) -> None:
    if first is not None:
        assert ack_of(handle(settings, first)).code == "AA"
    before = read(settings, "Task", task["id"])
    told = len(communications(settings, task["id"]))

    ack = ack_of(handle(settings, then))
    location = "ORC^1^5" if "OSU" in then.split("\r")[0] else "RF1^1^1"
    assert (ack.code, ack.error_code, ack.error_location) == ("AE", "207", location)
    assert text in ack.error_text
    after = read(settings, "Task", task["id"])
    assert (after["status"], after["meta"]["versionId"]) == (before["status"], before["meta"]["versionId"])
    assert len(communications(settings, task["id"])) == told
    control_id = then.split("\r")[0].split("|")[9]
    assert stored_message(settings, control_id)["status"] == "rejected"


def test_a_rejection_carries_its_reason(settings: Settings, task: dict[str, Any]) -> None:
    assert ack_of(handle(settings, rri("RRI-R", "R", note="Outside our service area"))).code == "AA"
    rejected = read(settings, "Task", task["id"])
    assert rejected["status"] == "rejected"
    assert rejected["statusReason"]["text"] == "Outside our service area"
    assert rejected["businessStatus"]["coding"][0]["code"] == "4.0"
    [told] = communications(settings, task["id"])
    assert "Outside our service area" in told["payload"][0]["contentString"]


def test_a_rejection_without_a_reason_gets_the_default_reason(
    settings: Settings, task: dict[str, Any]
) -> None:
    assert ack_of(handle(settings, osu("OSU-CA", "CA"))).code == "AA"  # cancelled, no ORC-16
    cancelled = read(settings, "Task", task["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["statusReason"]["text"] == DEFAULT_REASONS["cancelled"]


def test_an_echoed_fhir_id_is_honoured(settings: Settings, task: dict[str, Any]) -> None:
    # the partner gives the referral number under its own authority: unknown by identifier ...
    foreign = "REF-7781^REHAB_EMR"
    ack = ack_of(handle(settings, rri("RRI-1", "A", referral=foreign)))
    assert (ack.code, ack.error_code) == ("AE", "204")
    # ... but found by the FHIR id it echoes in RF1-11
    assert ack_of(handle(settings, rri("RRI-2", "A", referral=foreign, task_id=task["id"]))).code == "AA"
    assert read(settings, "Task", task["id"])["status"] == "accepted"


def test_an_echoed_fhir_id_must_name_the_same_referral(settings: Settings, task: dict[str, Any]) -> None:
    ack = ack_of(handle(settings, rri("RRI-1", "A", referral="REF-9999^ORTHO_CLINIC", task_id=task["id"])))
    assert (ack.code, ack.error_code, ack.error_location) == ("AE", "204", "RF1^1^11")
    ack = ack_of(handle(settings, rri("RRI-2", "A", task_id="no-such-task")))
    assert (ack.code, ack.error_code, ack.error_location) == ("AE", "204", "RF1^1^11")
    assert read(settings, "Task", task["id"])["meta"]["versionId"] == "1"


def test_the_service_request_identifier_finds_the_task(
    settings: Settings, task: dict[str, Any], client: TestClient
) -> None:
    # a second referral number on the ServiceRequest only (the Task carries the first)
    service_request = client.get(f"/fhir/{task['focus']['reference']}").json()
    service_request["identifier"].append({"system": "urn:oid:2.16.840.1.113883.19.5", "value": "ORD-55"})
    assert (
        client.put(f"/fhir/ServiceRequest/{service_request['id']}", json=service_request).status_code == 200
    )
    ack = ack_of(handle(settings, rri("RRI-1", "A", referral="ORD-55^^2.16.840.1.113883.19.5^ISO")))
    assert ack.code == "AA", ack
    assert read(settings, "Task", task["id"])["status"] == "accepted"


def test_a_task_of_another_tenant_is_not_found(settings: Settings) -> None:
    assert ack_of(handle(settings, ref("REF-O"), tenant=OTHER_TENANT)).code == "AA"
    other = referral_task(settings, OTHER_TENANT)

    for control_id, task_id in (("RRI-T1", ""), ("RRI-T2", other["id"])):
        ack = ack_of(handle(settings, rri(control_id, "A", task_id=task_id)))
        assert (ack.code, ack.error_code) == ("AE", "204"), control_id
    assert referral_task(settings, OTHER_TENANT)["meta"]["versionId"] == "1"
    # the same answer sent to the tenant that has the referral moves it
    assert ack_of(handle(settings, rri("RRI-T3", "A", task_id=other["id"]), tenant=OTHER_TENANT)).code == "AA"
    assert referral_task(settings, OTHER_TENANT)["status"] == "accepted"


@pytest.mark.parametrize(
    ("raw", "location"),
    [
        (rri("RRI-BAD", "A").replace("RF1|A^^HL70283", "RF1|A^^HL70283^bogus^^HL7FHIRTS"), "RF1^1^1"),
        (rri("RRI-BS", "A").replace("RF1|A^^HL70283|||", "RF1|A^^HL70283|||7.0^Completed^BSER"), "RF1^1^4"),
    ],
    ids=["unknown-status", "business-status-not-allowed"],
)
def test_statuses_the_hub_does_not_know_are_ae_103(
    settings: Settings, task: dict[str, Any], raw: str, location: str
) -> None:
    ack = ack_of(handle(settings, raw))
    assert (ack.code, ack.error_code, ack.error_location) == ("AE", "103", location)
    assert "bogus" not in ack.error_text
    assert read(settings, "Task", task["id"])["meta"]["versionId"] == "1"
