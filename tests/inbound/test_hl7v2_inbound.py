"""HL7 v2 over MLLP into the hub: a real MllpServer bound to ``handle_hl7v2`` on 127.0.0.1, the
store of the ``settings`` fixture (SQLite and PostgreSQL), resources read back through the API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.hl7v2 import MllpClient, MllpServerThread, frame
from connectors.hl7v2.mllp import END_BLOCK, START_BLOCK
from hub.inbound.hl7v2 import handle_frame_error, handle_hl7v2
from hub.settings import Settings
from hub.store.db import transaction
from hub.sync.admin import AdminViews
from mappings.hl7v2 import AckResult, parse, read_ack

DATA = Path(__file__).resolve().parents[1] / "mappings" / "data" / "hl7v2"
SOURCE = "mllp:test"
TENANT = "default"


@pytest.fixture
def listener(settings: Settings, client: TestClient) -> Iterator[MllpServerThread]:
    async def handler(raw: bytes) -> bytes:
        return await asyncio.to_thread(handle_hl7v2, settings, TENANT, raw, SOURCE)

    async def frame_error(partial: bytes, reason: str) -> bytes:
        return await asyncio.to_thread(handle_frame_error, settings, TENANT, partial, reason, SOURCE)

    with MllpServerThread(handler, port=0, read_timeout=0.5, on_frame_error=frame_error) as thread:
        yield thread


def send(listener: MllpServerThread, raw: bytes) -> AckResult:
    client = MllpClient("127.0.0.1", listener.port, timeout=10)
    try:
        return read_ack(parse(client.exchange(raw)))
    finally:
        client.close()


def ref(control_id: str = "MSG00001", **replace: str) -> bytes:
    lines = (DATA / "ref_i12_basic" / "input.hl7").read_bytes().decode().rstrip("\r").split("\r")
    out = []
    for line in lines:
        if line[:3] in replace:
            if replace[line[:3]]:
                out.append(replace[line[:3]])
            continue
        out.append(line.replace("MSG00001", control_id) if line.startswith("MSH") else line)
    return ("\r".join(out) + "\r").encode()


def messages(settings: Settings) -> list[dict[str, Any]]:
    with transaction(settings.database_url) as session:
        return list(AdminViews(session, tenant=TENANT).messages(limit=100)["items"])


def search(client: TestClient, resource_type: str, **params: str) -> list[dict[str, Any]]:
    bundle = client.get(f"/fhir/{resource_type}", params=params).json()
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]


def test_referral_over_mllp(listener: MllpServerThread, client: TestClient, settings: Settings) -> None:
    ack = send(listener, ref())
    assert (ack.code, ack.acknowledged_control_id) == ("AA", "MSG00001")

    [sr] = search(client, "ServiceRequest", identifier="REF-7781")
    assert client.get(f"/fhir/ServiceRequest/{sr['id']}").status_code == 200
    assert sr["category"][0]["text"] == "PT" and sr["performer"][0]["reference"].startswith("Organization/")
    [task] = search(client, "Task", focus=f"ServiceRequest/{sr['id']}")
    assert task["status"] == "requested" and task["identifier"][0]["value"] == "REF-7781"
    assert len(search(client, "Condition", subject=sr["subject"]["reference"])) == 2
    assert len(search(client, "DocumentReference", subject=sr["subject"]["reference"])) == 1

    [stored] = messages(settings)
    assert (stored["source"], stored["status"], stored["resource"]) == (
        SOURCE,
        "unrouted",
        f"ServiceRequest/{sr['id']}",
    )
    with transaction(settings.database_url) as session:
        detail = AdminViews(session, tenant=TENANT).message(stored["id"])
    assert [e["event"] for e in detail["events"]] == ["received", "translated", "acknowledged"]


def test_a_repeated_control_id_is_answered_again_without_writing(
    listener: MllpServerThread, client: TestClient, settings: Settings
) -> None:
    first = MllpClient("127.0.0.1", listener.port, timeout=10)
    raw = ref("DUP-1")
    answer = first.exchange(raw)
    assert first.exchange(raw) == answer  # byte for byte: the original ACK
    first.close()
    assert len(messages(settings)) == 1
    [sr] = search(client, "ServiceRequest", identifier="REF-7781")
    assert sr["meta"]["versionId"] == "1"
    # the same referral under a new control id updates (same ids), it does not duplicate
    assert send(listener, ref("DUP-2")).code == "AA"
    [sr] = search(client, "ServiceRequest", identifier="REF-7781")
    assert len(search(client, "Task", focus=f"ServiceRequest/{sr['id']}")) == 1
    assert len(messages(settings)) == 2


@pytest.mark.parametrize(
    ("raw", "code", "error_code", "location"),
    [
        (b"this is not HL7 at all", "AR", "100", "MSH^1"),
        (
            ref(
                "BADVER",
                MSH="MSH|^~\\&|REFAPP|ORTHO_CLINIC|THERAPY_HUB|REHAB|20240305101500||REF^I12^REF_I12|BADVER|P|2.3",
            ),
            "AR",
            "203",
            "MSH^1^12",
        ),
        (ref("NOPID", PID=""), "AE", "100", "PID^1"),
        (ref("BADSEX", PID="PID|1||MRN-1^^^ORTHO_CLINIC^MR||Doe^Jane||19800214|Q"), "AE", "103", "PID^1^8"),
        (
            ref("ORU", MSH="MSH|^~\\&|A|B|C|D|20240305101500||ORU^R01^ORU_R01|ORU|P|2.5.1"),
            "AR",
            "200",
            "MSH^1^9^1^1",
        ),
    ],
)
def test_rejections_are_acknowledged_and_kept(
    listener: MllpServerThread,
    client: TestClient,
    settings: Settings,
    raw: bytes,
    code: str,
    error_code: str,
    location: str,
) -> None:
    ack = send(listener, raw)
    assert (ack.code, ack.error_code, ack.error_location) == (code, error_code, location)
    [stored] = messages(settings)
    assert stored["status"] == "rejected" and f"HL7 {error_code}" in stored["error"]
    assert "Doe" not in stored["error"] and "Jane" not in ack.error_text
    assert search(client, "ServiceRequest") == [] and search(client, "Patient") == []


def test_truncated_frame_is_answered_and_kept_and_the_listener_keeps_serving(
    listener: MllpServerThread, client: TestClient, settings: Settings
) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
        sock.sendall(START_BLOCK + ref("TRUNC")[:200])  # no end block: the read timeout (0.5 s) fires
        data = b""
        while END_BLOCK not in data:
            chunk = sock.recv(4096)
            assert chunk
            data += chunk
    ack = read_ack(parse(data[data.index(START_BLOCK) + 1 : data.index(END_BLOCK)]))
    assert (ack.code, ack.acknowledged_control_id) == ("AR", "TRUNC")
    [stored] = messages(settings)
    assert stored["status"] == "rejected" and "MLLP frame error" in stored["error"]
    # another connection, two messages at once
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda raw: send(listener, raw).code, [ref("OK-1"), ref("OK-2")]))
    assert codes == ["AA", "AA"]
    assert len(search(client, "ServiceRequest")) == 1


def test_adt_updates_the_referral_patient_and_enhanced_mode(
    listener: MllpServerThread, client: TestClient, settings: Settings
) -> None:
    assert send(listener, ref()).code == "AA"
    [patient] = search(client, "Patient")
    adt = (DATA / "adt_a04" / "input.hl7").read_bytes().replace(b"ADT^A04^ADT_A01", b"ADT^A08^ADT_A01")
    adt = adt.replace(b"|ADT-0001|P|2.5.1", b"|ADT-0001|P|2.5.1|||AL|NE")  # enhanced mode: accept ACK only
    ack = send(listener, adt)
    assert (ack.code, ack.acknowledged_control_id) == ("CA", "ADT-0001")
    updated = client.get(f"/fhir/Patient/{patient['id']}").json()
    assert updated["meta"]["versionId"] == "2" and len(updated["name"]) == 2

    # MSH-15 NE: no answer at all, the message is stored all the same
    silent = adt.replace(b"|ADT-0001|P|2.5.1|||AL|NE", b"|ADT-0002|P|2.5.1|||NE|NE")
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
        sock.sendall(frame(silent))
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            sock.recv(10)
    assert {m["status"] for m in messages(settings)} == {"unrouted"} and len(messages(settings)) == 3


def test_patient_created_through_the_api_is_matched_by_identifier(
    listener: MllpServerThread, client: TestClient
) -> None:
    """The referral links the patient stored under another id; as a referring physician's referral
    through /referrals, it does not change it (ADT messages update patients)."""
    created = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [
                {"system": "https://therapy-hub.example/sid/hl7v2/ORTHO_CLINIC", "value": "MRN-1001"}
            ],
            "name": [{"family": "Old"}],
        },
    )
    assert created.status_code == 201
    assert send(listener, ref()).code == "AA"
    [patient] = search(client, "Patient")
    assert patient["id"] == created.json()["id"] and patient["name"][0]["family"] == "Old"
    [sr] = search(client, "ServiceRequest")
    assert sr["subject"]["reference"] == f"Patient/{patient['id']}"
