"""A sandbox MLLP peer on 127.0.0.1: records every message and answers like a partner would.

Answers (``SandboxPeer.configure``, or the command line):

* ``answer="AA"`` (default), ``"AE"``, ``"AR"``, ``"CA"``, ``"CE"``, ``"CR"``: an ACK with that code
  (errors carry an ERR with ``error_code`` and ``error_text``);
* ``answer="hang"``: never answer (the connection stays open); ``hang_seconds`` > 0 delays every
  answer instead;
* ``answer="close"``: close the connection without answering;
* ``answer="garbage"``: answer a frame that is not HL7;
* ``answer="wrong-id"``: acknowledge another control id;
* ``codes``: per control id answers, which win over ``answer``.

Run it on its own with ``python -m sandboxes.mllp --port 2576`` (prints ``host:port``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.hl7v2.mllp import CloseConnection, MllpServerThread, new_control_id
from mappings.hl7v2 import Header, Hl7Error, build_ack, parse, read_header
from mappings.hl7v2.errors import ErrorLocation
from sandboxes.base import Controls, Sandbox, serve_until_signalled

__all__ = ["ANSWERS", "PeerControls", "ReceivedMessage", "SandboxPeer", "main"]

ANSWERS = ("AA", "AE", "AR", "CA", "CE", "CR", "hang", "close", "garbage", "wrong-id")


@dataclass(frozen=True)
class PeerControls(Controls):
    """How the peer answers (see the module docstring)."""

    answer: str = "AA"
    error_code: int = 207
    error_text: str = "sandbox rejected the message"
    hang_seconds: float = 0.0
    codes: Mapping[str, str] = field(default_factory=dict)  # control id -> answer, wins over ``answer``

    def __post_init__(self) -> None:
        if self.answer not in ANSWERS:
            raise ValueError(f"answer must be one of {', '.join(ANSWERS)}")


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    raw: bytes = field(repr=False)
    message_type: str
    control_id: str
    answer: str
    received_at: float


class SandboxPeer(Sandbox[PeerControls]):
    """The peer: ``with SandboxPeer() as peer: ... peer.port ... peer.messages``."""

    controls_class = PeerControls

    def __init__(
        self,
        *,
        port: int = 0,
        answer: str = "AA",
        error_code: int = 207,
        error_text: str = "sandbox rejected the message",
        hang_seconds: float = 0.0,
        application: str = "SANDBOX_EMR",
        facility: str = "SANDBOX",
    ) -> None:
        self.application = application
        self.facility = facility
        super().__init__(answer=answer, error_code=error_code, error_text=error_text, hang_seconds=hang_seconds)
        self._thread = MllpServerThread(
            self._handle, host="127.0.0.1", port=port, read_timeout=10.0, idle_timeout=120.0
        )

    @property
    def port(self) -> int:
        return self._thread.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``host:port`` (MLLP has no URL scheme; this is what ``python -m sandboxes.mllp`` prints)."""
        return self.address

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def reset(self) -> None:
        """Forget the messages; the controls stay as configured."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._messages: list[ReceivedMessage] = []

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        return self._wait_until(lambda: len(self._messages) >= count, timeout)

    # ------------------------------------------------------------------------------ serving

    async def _handle(self, raw: bytes) -> bytes:
        controls = self.controls
        header: Header | None = None
        try:
            header = read_header(parse(raw), required=False)
        except Hl7Error:
            header = None
        control_id = header.control_id if header else ""
        answer = controls.codes.get(control_id, controls.answer)
        with self._lock:
            self._messages.append(
                ReceivedMessage(raw, header.message_type if header else "", control_id, answer, time.time())
            )
            self._lock.notify_all()
        if answer == "hang":
            await asyncio.sleep(3600)
            return b""
        if controls.hang_seconds:
            await asyncio.sleep(float(controls.hang_seconds))
        if answer == "close":
            raise CloseConnection
        if answer == "garbage":
            return b"this is not an acknowledgement"
        now = datetime.now(UTC).replace(tzinfo=None)
        if answer == "wrong-id" and header is not None:
            header = dataclasses.replace(header, control_id="NOT-YOURS")
            answer = "AA"
        error = None
        if answer not in ("AA", "CA"):
            error = Hl7Error(
                int(controls.error_code), str(controls.error_text), ErrorLocation("MSH", 1, 10)
            )
        return build_ack(
            header,
            answer,
            control_id=new_control_id(),
            now=now,
            error=error,
            sending_application=self.application,
            sending_facility=self.facility,
        ).encode("utf-8")

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> SandboxPeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop()

    def __enter__(self) -> SandboxPeer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandboxes.mllp",
        description="Sandbox MLLP peer on 127.0.0.1 (records messages, answers ACKs).",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--answer", choices=ANSWERS, default="AA")
    parser.add_argument("--error-code", type=int, default=207)
    parser.add_argument("--error-text", default="sandbox rejected the message")
    parser.add_argument("--hang-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)
    peer = SandboxPeer(
        port=args.port,
        answer=args.answer,
        error_code=args.error_code,
        error_text=args.error_text,
        hang_seconds=args.hang_seconds,
    )
    return serve_until_signalled(peer, farewell=lambda: f"received {len(peer.messages)} message(s)")


if __name__ == "__main__":
    sys.exit(main())
