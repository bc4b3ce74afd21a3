"""The MLLP intake is liberal with real partners' structure: an OMG^O19 whose order notes follow its
DG1, with a v2.8 PRT and Z-segments, is answered AA with ERR segments of severity W; the raw message
is stored as received and the notes reach ServiceRequest.note. A required segment absent is AE."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hub.crypto import decrypt
from hub.inbound.hl7v2 import handle_hl7v2
from hub.settings import Settings
from hub.store.db import transaction
from hub.store.models import Message
from hub.sync.inbox import Inbox
from mappings.hl7v2 import parse, read_ack
from tests.inbound.test_hl7v2_inbound import search

DATA = Path(__file__).resolve().parents[1] / "mappings" / "data" / "hl7v2"
TENANT = "default"
SOURCE = "mllp:epic"


def stored_raw(settings: Settings, control_id: str) -> bytes:
    with transaction(settings.database_url) as session:
        row = session.execute(select(Message).where(Message.external_id == control_id)).scalar_one()
        box = Inbox(session, tenant=TENANT, settings=settings).box
        return decrypt(box, row.raw_payload) or b""


def test_an_order_note_after_its_dg1_is_accepted_with_warnings(settings: Settings, client: TestClient) -> None:
    raw = (DATA / "omg_o19_epic_nte_after_dg1" / "input.hl7").read_bytes()
    answer = parse(handle_hl7v2(settings, TENANT, raw, SOURCE))
    assert answer.first("MSA").get(1) == "AA" and answer.first("MSA").get(2) == "EP-448120"
    errs = [(e.get(3, 1, 1), e.get(4), "^".join(c for c in e.components(2) if c)) for e in answer.all("ERR")]
    assert errs == [("100", "W", "PRT^1"), ("100", "W", "NTE^1"), ("100", "W", "NTE^2")]

    [request] = search(client, "ServiceRequest", identifier="EP-ORD-55120")
    assert [n["text"] for n in request["note"]] == [
        "S/p R TKA 04/30. WBAT. Eval and treat 2-3x/week.",
        "Please fax the evaluation to the surgeon's office.",
    ]
    assert search(client, "Task", focus=f"ServiceRequest/{request['id']}")[0]["status"] == "requested"
    kept = stored_raw(settings, "EP-448120")
    assert kept == raw  # the PRT, the ZPV/ZDS segments and the trailing empty fields, as received


def test_a_required_segment_absent_is_still_ae(settings: Settings) -> None:
    raw = (DATA / "omg_o19_epic_nte_after_dg1" / "input.hl7").read_bytes()
    raw = b"\r".join(s for s in raw.split(b"\r") if not s.startswith(b"OBR")).replace(b"EP-448120", b"EP-448121")
    ack = read_ack(parse(handle_hl7v2(settings, TENANT, raw, SOURCE)))
    assert (ack.code, ack.error_code, ack.error_location) == ("AE", "100", "OBR^1")


def test_a_later_version_is_read_as_251_with_a_warning(settings: Settings, client: TestClient) -> None:
    """HL7 v2 is backward compatible: a REF^I12 written as v2.7 (SFT, HD with a universal id, the
    trailing empty fields of an interface engine) is AA with an ERR of severity W at MSH-12."""
    raw = (DATA / "ref_i12_v27_athena" / "input.hl7").read_bytes()
    answer = parse(handle_hl7v2(settings, TENANT, raw, SOURCE))
    assert answer.first("MSA").get(1) == "AA" and answer.first("MSA").get(2) == "ATH-20250918-000417"
    errs = [(e.get(3, 1, 1), e.get(4), "^".join(c for c in e.components(2) if c)) for e in answer.all("ERR")]
    assert errs == [("203", "W", "MSH^1^12"), ("100", "W", "PD1^1")]  # PD1: not in REF_I12 of v2.5.1
    assert answer.all("ERR")[0].get(8) == "HL7 version 2.7 read as 2.5.1"
    [request] = search(client, "ServiceRequest", identifier="LS-REF-30917")
    assert request["note"][0]["text"].startswith("Post-op L4-5 laminectomy")


@pytest.mark.parametrize("version", ["2.10x", "3.0", "2.7.9", "v2.8", "2.3"])
def test_unknown_versions_are_still_ar_203(settings: Settings, version: str) -> None:
    raw = (DATA / "ref_i12_v27_athena" / "input.hl7").read_bytes()
    raw = raw.replace(b"|P|2.7|", f"|P|{version}|".encode()).replace(b"ATH-20250918-000417", b"ATH-BADVER")
    ack = read_ack(parse(handle_hl7v2(settings, TENANT, raw, SOURCE)))
    assert (ack.code, ack.error_code, ack.error_location) == ("AR", "203", "MSH^1^12")
