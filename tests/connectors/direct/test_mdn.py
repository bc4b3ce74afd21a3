"""MDNs (RFC 3798): ours and another HISP's parsed; the sandbox HISP's signed, encrypted answers opened."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import Delivery
from connectors.direct import DirectConnector, message, smime, xdm
from sandboxes.hisp import CLINIC_ADDRESS, PHYSICIAN_ADDRESS, EphemeralController, SandboxHisp

from .test_connector import PDF, bundle

OTHER_HISP_MDN = b"""Content-Type: multipart/report; report-type="disposition-notification";
 boundary="RPT"

--RPT
Content-Type: text/plain

The message was dispatched.
--RPT
Content-Type: message/disposition-notification

Reporting-UA: hisp.example.org; OtherHISP 4.2
Original-Recipient: rfc822;drsmith@direct.physician.test
Final-Recipient: rfc822; drsmith@direct.physician.test
Original-Message-ID: <abc@direct.clinic.test>
Disposition: automatic-action/MDN-sent-automatically; dispatched
X-DIRECT-FINAL-DESTINATION-DELIVERY:

--RPT--
"""


def test_parses_our_mdn() -> None:
    entity = message.mdn_content(original_message_id="<m1@direct.clinic.test>", final_recipient=PHYSICIAN_ADDRESS,
                                 reporting_ua="ua", disposition="processed", boundary="b")
    mdn = message.parse_mdn(entity)
    assert mdn is not None and mdn.disposition == "processed" and not mdn.failed
    assert mdn.original_message_id == "<m1@direct.clinic.test>" and mdn.final_recipient == PHYSICIAN_ADDRESS


def test_parses_another_hisps_dispatched_mdn() -> None:
    mdn = message.parse_mdn(OTHER_HISP_MDN)
    assert mdn is not None and mdn.disposition == "dispatched" and mdn.final_destination_delivery
    assert mdn.original_message_id == "<abc@direct.clinic.test>"


def test_failed_mdn_and_non_mdn() -> None:
    failed = message.parse_mdn(message.mdn_content(
        original_message_id="<m2@x>", final_recipient=PHYSICIAN_ADDRESS, reporting_ua="ua",
        disposition="failed/error", boundary="b"))
    assert failed is not None and failed.failed and failed.modifiers == ("error",)
    assert message.parse_mdn(b"Content-Type: text/plain\r\n\r\nhello\r\n") is None


class _Sink:
    """A plain SMTP receiver standing in for the hub's Direct listener (not built yet)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._arrived:
            self.messages.append(bytes(envelope.content))
            self._arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int) -> list[bytes]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout=5)
            return list(self.messages)


@pytest.fixture
def sink() -> Iterator[tuple[_Sink, int]]:
    handler = _Sink()
    controller = EphemeralController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def _open(wire: bytes, hisp: SandboxHisp) -> bytes:
    headers, entity = message.split_headers(wire)
    signed = smime.decrypt(entity, hisp.clinic.certificate, hisp.clinic.key)
    return smime.verify(signed, [hisp.ca.certificate], moment=datetime.now(UTC),
                        from_address=str(headers["From"])).content


def test_sandbox_answers_with_processed_mdn_and_signed_plan(sink: tuple[_Sink, int]) -> None:
    handler, port = sink
    with SandboxHisp() as hisp:
        with DirectConnector(hisp.connector_config()) as connector:
            sent = connector.send(Delivery(payload=bundle(), content_type="application/fhir+json",
                                           idempotency_key="job-9", correlation_id="c", resource_type="Task",
                                           resource_id="t1", event="Task.create"))
        [received] = hisp.wait_for(1)
        hisp.send_mdn(received, host="127.0.0.1", port=port)
        hisp.send_signed_plan(received, PDF + b"% signed\n", host="127.0.0.1", port=port)
        mdn_wire, plan_wire = handler.wait_for(2)
        mdn = message.parse_mdn(_open(mdn_wire, hisp))
        assert mdn is not None and mdn.disposition == "processed"
        assert mdn.original_message_id == sent.remote_id
        plan = _open(plan_wire, hisp)
        [attachment] = message.attachments_of(plan)
        assert attachment.data == PDF + b"% signed\n" and xdm.unpack(attachment.data) is None
        assert message.split_headers(plan_wire)[0]["In-Reply-To"] == sent.remote_id
        assert CLINIC_ADDRESS in str(message.split_headers(plan_wire)[0]["To"])


def test_failure_dsn_reads_as_a_failed_mdn_of_the_returned_message_id() -> None:
    dsn = message.dsn_content(original_message_id="<abc@direct.clinic.test>", final_recipient=PHYSICIAN_ADDRESS,
                              reporting_mta="hisp.test", boundary="B1")
    parsed = message.parse_dsn(dsn)
    assert parsed is not None and parsed.failed
    assert (parsed.original_message_id, parsed.modifiers, parsed.final_recipient) == (
        "<abc@direct.clinic.test>", ("dsn",), PHYSICIAN_ADDRESS)
    assert message.parse_mdn(dsn) is None
    assert message.parse_dsn(dsn.replace(b"Action: failed", b"Action: delivered")) is None
    assert message.parse_dsn(message.mdn_content(original_message_id="<x@y>", final_recipient="a@b.test",
                                                 reporting_ua="ua", disposition="processed", boundary="B2")) is None
