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

Run it on its own with ``python -m connectors.hl7v2.sandbox --port 2576`` (prints ``host:port``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from connectors.hl7v2.mllp import CloseConnection, MllpServerThread, new_control_id
from mappings.hl7v2 import Header, Hl7Error, build_ack, parse, read_header
from mappings.hl7v2.errors import ErrorLocation

__all__ = ["ANSWERS", "ReceivedMessage", "SandboxPeer", "main"]

ANSWERS = ("AA", "AE", "AR", "CA", "CE", "CR", "hang", "close", "garbage", "wrong-id")


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    raw: bytes = field(repr=False)
    message_type: str
    control_id: str
    answer: str
    received_at: float


class SandboxPeer:
    """The peer: ``with SandboxPeer() as peer: ... peer.port ... peer.messages``."""

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
        self._lock = threading.Condition()
        self.application = application
        self.facility = facility
        self._messages: list[ReceivedMessage] = []
        self.configure(
            answer=answer, error_code=error_code, error_text=error_text, hang_seconds=hang_seconds, codes={}
        )
        self._thread = MllpServerThread(
            self._handle, host="127.0.0.1", port=port, read_timeout=10.0, idle_timeout=120.0
        )

    # ------------------------------------------------------------------------------ control

    def configure(self, **controls: Any) -> dict[str, Any]:
        allowed = {"answer", "error_code", "error_text", "hang_seconds", "codes"}
        unknown = set(controls) - allowed
        if unknown:
            raise ValueError(f"unknown controls: {', '.join(sorted(unknown))}")
        if "answer" in controls and controls["answer"] not in ANSWERS:
            raise ValueError(f"answer must be one of {', '.join(ANSWERS)}")
        with self._lock:
            current = getattr(self, "_controls", {})
            self._controls = {**current, **controls}
            return dict(self._controls)

    @property
    def port(self) -> int:
        return self._thread.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self._messages) >= count, timeout=timeout)

    # ------------------------------------------------------------------------------ serving

    async def _handle(self, raw: bytes) -> bytes:
        with self._lock:
            controls = dict(self._controls)
        header: Header | None = None
        try:
            header = read_header(parse(raw), required=False)
        except Hl7Error:
            header = None
        control_id = header.control_id if header else ""
        answer = controls["codes"].get(control_id, controls["answer"])
        with self._lock:
            self._messages.append(
                ReceivedMessage(raw, header.message_type if header else "", control_id, answer, time.time())
            )
            self._lock.notify_all()
        if answer == "hang":
            await asyncio.sleep(3600)
            return b""
        if controls["hang_seconds"]:
            await asyncio.sleep(float(controls["hang_seconds"]))
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
                int(controls["error_code"]), str(controls["error_text"]), ErrorLocation("MSH", 1, 10)
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
        prog="python -m connectors.hl7v2.sandbox",
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
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with peer:
        sys.stdout.write(peer.address + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
        sys.stdout.write(f"received {len(peer.messages)} message(s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
