"""MLLP framing, the asyncio MllpServer (concurrency, timeouts, garbage), the MllpClient and the
hl7v2 connector against the sandbox peer, all on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest

from connectors import registry
from connectors.base import Connector, Delivery, PermanentError, TransientError
from connectors.hl7v2 import (
    CloseConnection,
    Hl7v2Connector,
    MllpClient,
    MllpClientError,
    MllpServerThread,
    control_id_for,
    frame,
)
from connectors.hl7v2.mllp import END_BLOCK, START_BLOCK
from mappings.hl7v2 import (
    build_ack,
    parse,
    read_ack,
    read_appointment,
    read_header,
    read_plan_summary,
    read_status_update,
)
from mappings.referral.task_state import apply_transition, referral_task
from sandboxes.mllp import SandboxPeer
from tests.connectors.conftest import free_port
from tests.mappings.test_hl7v2_documents import pdf  # noqa: F401 - a fixture: a rendered plan of care PDF

NOW = datetime(2024, 6, 1, 12, 0, 0)


def message(control_id: str, body: str = "PID|1||X^^^A") -> bytes:
    return (
        f"MSH|^~\\&|SND|FAC|RCV|FAC|20240601120000||ADT^A08^ADT_A01|{control_id}|P|2.5.1\rEVN|A08\r{body}\r"
    ).encode()


async def ack_handler(raw: bytes) -> bytes:
    """Echo server: AA for every message (MSA-2 = its control id)."""
    header = read_header(parse(raw), required=False)
    return build_ack(header, "AA", control_id="ACK", now=NOW).encode()


def answer_of(data: bytes) -> tuple[str, str]:
    result = read_ack(parse(data))
    return result.code, result.acknowledged_control_id


def read_frames(sock: socket.socket, count: int, timeout: float = 5.0) -> list[bytes]:
    sock.settimeout(timeout)
    buffer = b""
    frames: list[bytes] = []
    while len(frames) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
        while END_BLOCK in buffer:
            head, buffer = buffer.split(END_BLOCK, 1)
            frames.append(head[head.index(START_BLOCK) + 1 :])
    return frames


@pytest.fixture
def server() -> Iterator[MllpServerThread]:
    with MllpServerThread(
        ack_handler, port=0, read_timeout=0.5, idle_timeout=5.0, max_message_bytes=4096
    ) as thread:
        yield thread


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


# ------------------------------------------------------------------------------------------ framing


def test_frame() -> None:
    assert frame("MSH|x") == b"\x0bMSH|x\x1c\x0d"
    assert frame(b"\xc3\xa9") == b"\x0b\xc3\xa9\x1c\x0d"


def test_many_messages_on_one_connection_in_one_write_and_split_writes(server: MllpServerThread) -> None:
    with connect(server.port) as sock:
        sock.sendall(frame(message("A1")) + frame(message("A2")) + frame(message("A3")))
        data = frame(message("A4"))
        for i in range(0, len(data), 7):  # a frame arriving in pieces
            sock.sendall(data[i : i + 7])
            time.sleep(0.001)
        answers = [answer_of(f) for f in read_frames(sock, 4)]
    assert answers == [("AA", "A1"), ("AA", "A2"), ("AA", "A3"), ("AA", "A4")]


def test_concurrent_connections(server: MllpServerThread) -> None:
    def client(n: int) -> list[tuple[str, str]]:
        with connect(server.port) as sock:
            out = []
            for i in range(5):
                sock.sendall(frame(message(f"C{n}-{i}")))
                out.append(answer_of(read_frames(sock, 1)[0]))
            return out

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(client, range(20)))
    assert results == [[("AA", f"C{n}-{i}") for i in range(5)] for n in range(20)]
    assert server.server is not None and server.server.stats.messages == 100


def test_noise_before_a_frame_is_skipped_and_a_restarted_frame_wins(server: MllpServerThread) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n" + frame(message("N1")))
        sock.sendall(START_BLOCK + b"MSH|^~\\&|half a mess" + frame(message("N2")))
        answers = [answer_of(f) for f in read_frames(sock, 2)]
    assert answers == [("AA", "N1"), ("AA", "N2")]


def test_oversized_frame_is_refused_and_the_connection_stays_usable(server: MllpServerThread) -> None:
    big = message("BIG", "NTE|1||" + "x" * 10_000)
    with connect(server.port) as sock:
        sock.sendall(frame(big) + frame(message("OK1")))
        first, second = read_frames(sock, 2)
    result = read_ack(parse(first))
    assert (result.code, result.acknowledged_control_id, result.error_code) == ("AR", "BIG", "102")
    assert "larger than" in result.error_text
    assert answer_of(second) == ("AA", "OK1")


def test_truncated_frame_gets_an_ar_then_the_connection_closes(server: MllpServerThread) -> None:
    with connect(server.port) as sock:
        sock.sendall(START_BLOCK + message("TR1")[:60])  # never finished: read_timeout is 0.5 s
        [nak] = read_frames(sock, 1)
        assert sock.recv(10) == b""  # closed by the server
    result = read_ack(parse(nak))
    assert (result.code, result.acknowledged_control_id) == ("AR", "TR1")
    # the listener still serves
    with connect(server.port) as sock:
        sock.sendall(frame(message("AFTER")))
        assert answer_of(read_frames(sock, 1)[0]) == ("AA", "AFTER")


def test_peer_closing_mid_frame_or_sending_garbage_does_not_stop_the_listener(
    server: MllpServerThread,
) -> None:
    with connect(server.port) as sock:
        sock.sendall(START_BLOCK + b"MSH|^~\\&|cut")
    with connect(server.port) as sock:
        sock.sendall(b"\x00\xff" * 5000)
    with connect(server.port) as sock:
        sock.sendall(frame(message("ALIVE")))
        assert answer_of(read_frames(sock, 1)[0]) == ("AA", "ALIVE")


def test_idle_connections_are_closed() -> None:
    with MllpServerThread(ack_handler, port=0, idle_timeout=0.3) as thread, connect(thread.port) as sock:
        sock.settimeout(3)
        started = time.monotonic()
        assert sock.recv(10) == b""
        assert time.monotonic() - started < 2


def test_handler_errors_are_answered_ar_and_close_connection_closes() -> None:
    async def broken(raw: bytes) -> bytes:
        if b"CLOSE" in raw:
            raise CloseConnection
        raise RuntimeError("boom")

    with MllpServerThread(broken, port=0) as thread:
        with connect(thread.port) as sock:
            sock.sendall(frame(message("E1")))
            result = read_ack(parse(read_frames(sock, 1)[0]))
            assert (result.code, result.acknowledged_control_id, result.error_code) == ("AR", "E1", "207")
            assert "boom" not in result.error_text
            sock.sendall(frame(message("CLOSE")))
            assert sock.recv(10) == b""


def test_max_connections() -> None:
    with MllpServerThread(ack_handler, port=0, max_connections=1) as thread:
        with connect(thread.port) as first:
            first.sendall(frame(message("M1")))
            assert answer_of(read_frames(first, 1)[0]) == ("AA", "M1")
            with connect(thread.port) as second:
                second.settimeout(3)
                assert second.recv(10) == b""


# ------------------------------------------------------------------------------------------ client


def test_client_timeouts_and_connection_errors() -> None:
    client = MllpClient("127.0.0.1", free_port(), timeout=0.5, connect_timeout=0.5)
    with pytest.raises(MllpClientError) as info:
        client.exchange(message("X"))
    assert not info.value.timeout
    with SandboxPeer(answer="hang") as peer:
        client = MllpClient("127.0.0.1", peer.port, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(MllpClientError) as info:
            client.exchange(message("X"))
        assert info.value.timeout and time.monotonic() - started < 2
        client.close()


def test_client_reconnects_after_the_partner_dropped_an_idle_connection() -> None:
    with MllpServerThread(ack_handler, port=0, idle_timeout=0.2) as thread:
        client = MllpClient("127.0.0.1", thread.port, timeout=2)
        assert answer_of(client.exchange(message("K1"))) == ("AA", "K1")
        time.sleep(0.5)  # the server closed the idle connection
        assert answer_of(client.exchange(message("K2"))) == ("AA", "K2")
        client.close()


# --------------------------------------------------------------------------------------- connector


def task_delivery(key: str = "41.v2", status: str = "accepted", **overrides: object) -> Delivery:
    task = referral_task(
        "ServiceRequest/sr-1",
        "Patient/p-1",
        "PractitionerRole/r-1",
        "Organization/c",
        identifier={"system": "https://ortho.example/referrals", "value": "R-77"},
        now=NOW,
    )
    for step in {"in-progress": ["accepted", "in-progress"]}.get(
        status, [status] if status != "requested" else []
    ):
        task = apply_transition(task, step, now=NOW, reason="Not covered" if step == "rejected" else None)
    fields: dict[str, object] = {
        "payload": json.dumps(task).encode(),
        "content_type": "application/fhir+json",
        "idempotency_key": key,
        "correlation_id": "corr-1",
        "resource_type": "Task",
        "resource_id": task["id"],
        "event": "Task.update",
    }
    fields.update(overrides)
    return Delivery(**fields)  # type: ignore[arg-type]


@pytest.fixture
def peer() -> Iterator[SandboxPeer]:
    with SandboxPeer() as sandbox:
        yield sandbox


def make(peer: SandboxPeer, **config: object) -> Hl7v2Connector:
    return Hl7v2Connector(
        {
            "host": "127.0.0.1",
            "port": peer.port,
            "timeout_seconds": 0.5,
            "sending_facility": "REHAB",
            **config,
        }
    )


def test_registry_and_protocol(peer: SandboxPeer) -> None:
    assert "hl7v2" in registry.available()
    connector = registry.create("hl7v2", {"host": "127.0.0.1", "port": peer.port})
    assert isinstance(connector, Connector)
    assert connector.health().ok
    connector.close()
    down = registry.create(
        "hl7v2", {"host": "127.0.0.1", "port": free_port(), "connect_timeout_seconds": 0.5}
    )
    assert not down.health().ok


def test_send_task_as_rri_i12(peer: SandboxPeer) -> None:
    with make(peer) as connector:
        result = connector.send(task_delivery("41.v2", "rejected"))
    assert result.remote_id == "41.v2" and result.detail.endswith("-> AA")
    [received] = peer.messages
    assert (received.message_type, received.control_id) == ("RRI^I12", "41.v2")
    update = read_status_update(received.raw)
    assert (update.status, update.reason, update.identifier_value) == ("rejected", "Not covered", "R-77")
    header = read_header(parse(received.raw))
    assert (header.sending_facility, header.version) == ("REHAB", "2.5.1")


def test_send_task_as_osu_o51_and_control_ids_are_stable(peer: SandboxPeer) -> None:
    long_key = "job-123456789.v12/with:odd|chars"
    with make(peer, task_message="OSU^O51") as connector:
        connector.send(task_delivery(long_key, "in-progress"))
        connector.send(task_delivery(long_key, "in-progress"))
    first, again = peer.messages
    assert first.message_type == "OSU^O51" and first.control_id == again.control_id == control_id_for(
        long_key
    )
    assert len(first.control_id) <= 20
    assert read_status_update(first.raw).status == "in-progress"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("AE", PermanentError),
        ("AR", PermanentError),
        ("CR", PermanentError),
        ("CE", TransientError),
        ("hang", TransientError),
        ("close", TransientError),
        ("garbage", TransientError),
        ("wrong-id", TransientError),
    ],
)
def test_outcomes(peer: SandboxPeer, answer: str, error: type[Exception]) -> None:
    peer.configure(answer=answer, error_code=103, error_text="unknown referral type")
    started = time.monotonic()
    with make(peer) as connector, pytest.raises(error) as info:
        connector.send(task_delivery())
    assert time.monotonic() - started < 2
    assert type(info.value) is error
    if answer in ("AE", "AR", "CR"):
        assert f"-> {answer} HL7 103" in str(info.value) and "unknown referral type" not in str(info.value)


@pytest.mark.parametrize("answer", ["AE", "AR", "CR", "CE"])
def test_the_partners_err_text_never_reaches_the_error(peer: SandboxPeer, answer: str) -> None:
    """A partner that echoes patient data in its ERR text: the job's last error keeps the ACK code
    and the ERR-3 code only (the FHIR connectors keep an HTTP error's status and coded reason)."""
    echo = "Patient Ana Rivera born 1961-04-12 (MRN-778812) is not known"
    peer.configure(answer=answer, error_code=204, error_text=echo)
    with make(peer) as connector, pytest.raises((PermanentError, TransientError)) as info:
        connector.send(task_delivery())
    message = str(info.value)
    assert message.endswith(f"-> {answer} HL7 204 at MSH^1^10"), message
    assert not any(part in message for part in ("Rivera", "1961", "MRN-778812", "not known"))


def test_the_ack_summary_keeps_code_error_code_and_location_only() -> None:
    from connectors.hl7v2.connector import ack_summary
    from mappings.hl7v2 import AckResult

    assert ack_summary(AckResult("AE", "X1", "103", "Ana Rivera unknown", "PID^1^5")) == "AE HL7 103 at PID^1^5"
    # what has not the shape of a code or a location is left out too (a partner's free text there)
    assert ack_summary(AckResult("AR", "X1", "Ana Rivera", "text", "Rivera Ana 1961")) == "AR"


def test_connection_refused_is_transient() -> None:
    connector = Hl7v2Connector({"host": "127.0.0.1", "port": free_port(), "connect_timeout_seconds": 0.5})
    with pytest.raises(TransientError):
        connector.send(task_delivery())


def test_untranslatable_payloads_are_permanent(peer: SandboxPeer) -> None:
    with make(peer) as connector:
        for payload in (b"not json", b"[]", json.dumps({"resourceType": "Patient", "id": "p"}).encode()):
            with pytest.raises(PermanentError):
                connector.send(task_delivery(payload=payload))
    assert peer.messages == []


def test_per_control_id_answers_and_the_connection_is_reused(peer: SandboxPeer) -> None:
    peer.configure(codes={"bad.v1": "AE"})
    with make(peer) as connector:
        connector.send(task_delivery("ok.v1"))
        with pytest.raises(PermanentError):
            connector.send(task_delivery("bad.v1"))
        connector.send(task_delivery("ok.v2"))
    assert [m.answer for m in peer.messages] == ["AA", "AE", "AA"]
    assert peer.wait_for(3)


def test_concurrent_senders_share_one_connector(peer: SandboxPeer) -> None:
    with make(peer, timeout_seconds=5) as connector:
        threads = [
            threading.Thread(target=connector.send, args=(task_delivery(f"t{i}.v1"),)) for i in range(10)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(m.control_id for m in peer.messages) == sorted(f"t{i}.v1" for i in range(10))


def test_sandbox_runs_as_a_program() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sandboxes.mllp", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"127.0.0.1:{port}"
        answer = MllpClient("127.0.0.1", port, timeout=5).exchange(message("SB1"))
        assert answer_of(answer) == ("AA", "SB1")
    finally:
        process.terminate()
        process.wait(10)


# ------------------------------------------------ appointments (SIU), plans (MDM), messages as they are


def _delivery(payload: dict[str, Any] | bytes, key: str, *, previous: dict[str, Any] | None = None,
              resource_type: str = "Appointment", content_type: str = "application/fhir+json") -> Delivery:
    return Delivery(
        payload=payload if isinstance(payload, bytes) else json.dumps(payload).encode(),
        content_type=content_type,
        idempotency_key=key,
        correlation_id="corr-1",
        resource_type=resource_type,
        resource_id="x",
        event=f"{resource_type}.update",
        previous=json.dumps(previous).encode() if previous is not None else None,
    )


def test_appointments_go_as_siu_chosen_from_the_replaced_version(peer: SandboxPeer) -> None:
    from tests.mappings.scheduling_support import appointment, context_bundle

    booked = appointment(status="booked")
    moved = appointment(status="booked", start="2024-05-07T10:00:00-04:00", end="2024-05-07T10:45:00-04:00")
    with make(peer) as connector:
        first = connector.send(_delivery(context_bundle(booked), "a.v1"))
        connector.send(_delivery(context_bundle(moved), "a.v2", previous=booked))
        connector.send(_delivery(context_bundle(appointment(status="cancelled")), "a.v3", previous=moved))
    assert first.detail.endswith("-> AA") and "SIU^S12" in first.detail
    assert [m.message_type for m in peer.messages] == ["SIU^S12", "SIU^S13", "SIU^S15"]
    back = read_appointment(peer.messages[1].raw)
    assert back["start"] == "2024-05-07T10:00:00-04:00" and back["status"] == "booked"
    pid = parse(peer.messages[0].raw).first("PID")
    assert pid is not None and pid.get(5)  # the context Bundle gave the partner the patient's name


@pytest.mark.parametrize("status", ["proposed", "pending", "waitlist"])
def test_an_appointment_not_booked_yet_is_not_news_and_not_a_dead_letter(peer: SandboxPeer, status: str) -> None:
    from tests.mappings.scheduling_support import appointment

    with make(peer) as connector:
        result = connector.send(_delivery(appointment(status=status), "p.v1"))
        cancelled = connector.send(
            _delivery(appointment(status="cancelled"), "p.v2", previous=appointment(status=status))
        )
    assert result.detail.startswith("hl7v2: not sent") and status in result.detail
    assert cancelled.detail.startswith("hl7v2: not sent")
    assert peer.messages == []


def test_the_plan_of_care_document_goes_as_mdm_with_its_pdf(peer: SandboxPeer, pdf: bytes) -> None:  # noqa: F811
    from tests.mappings.test_hl7v2_documents import collection, document_for, plan_resources

    resources = plan_resources()
    care_plan = next(r for r in resources if r["resourceType"] == "CarePlan")
    document = document_for(care_plan, pdf)
    with make(peer) as connector:
        result = connector.send(_delivery(collection(document, *resources), "d.v1",
                                          resource_type="DocumentReference"))
    assert "MDM^T02" in result.detail
    summary = read_plan_summary(peer.messages[0].raw)
    assert summary.pdf == pdf and summary.event == "T02"
    assert any("plan of care" in line.lower() for line in summary.lines)


def test_a_message_already_in_v2_is_sent_as_it_is(peer: SandboxPeer) -> None:
    from connectors.base import HL7_V2_ER7

    text = "MSH|^~\\&|THERAPY_HUB||REFAPP||20240305101500||ACK^I12^ACK|ACK-1|P|2.5.1|||AL|NE\rMSA|AA|MSG00001\r"
    with make(peer) as connector:
        result = connector.send(_delivery(text.encode(), "ack.v0", resource_type="", content_type=HL7_V2_ER7))
        with pytest.raises(PermanentError):
            connector.send(_delivery(b"not hl7", "ack.v1", resource_type="", content_type=HL7_V2_ER7))
    assert result.remote_id == "ACK-1"
    [received] = peer.messages
    assert received.raw.decode() == text and received.control_id == "ACK-1"
