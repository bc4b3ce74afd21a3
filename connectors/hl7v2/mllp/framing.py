"""MLLP framing: ``0x0B`` (start block) + the message + ``0x1C 0x0D`` (end block + CR).

:class:`FrameReader` reads frames from one asyncio stream and keeps the stream in step when a
sender gets it wrong (see :mod:`connectors.hl7v2.mllp`); :func:`nak_for` is the ``AR`` for a frame
that could not be read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

from mappings.hl7v2 import Hl7Error, build_ack, parse, read_header
from mappings.hl7v2.errors import APPLICATION_INTERNAL_ERROR, ErrorLocation

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "END_BLOCK",
    "START_BLOCK",
    "FrameError",
    "FrameReader",
    "frame",
    "nak_for",
    "new_control_id",
]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024


def frame(message: bytes | str) -> bytes:
    """``message`` in an MLLP frame."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return START_BLOCK + data + END_BLOCK


class FrameError(Exception):
    """A frame that cannot be read whole. ``answerable``: the peer can still be told (an AR)."""

    def __init__(self, reason: str, *, partial: bytes = b"", answerable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial
        self.answerable = answerable


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_control_id() -> str:
    """A fresh MSH-10 (20 characters, the 2.5.1 maximum)."""
    return uuid.uuid4().hex[:20].upper()


def nak_for(
    partial: bytes, reason: str, *, code: int = APPLICATION_INTERNAL_ERROR, ack_code: str = "AR"
) -> bytes:
    """An ``AR`` for a message that could not be read whole (or handled): MSA-2 names its control id when the
    MSH at its start is readable. ``reason`` must not quote content."""
    header = None
    head = partial.split(b"\r", 1)[0][:4096]
    if head.startswith(b"MSH"):
        with contextlib.suppress(Exception):
            header = read_header(parse(head), required=False)
    error = Hl7Error(code, reason, ErrorLocation("MSH"))
    return build_ack(header, ack_code, control_id=new_control_id(), now=_now(), error=error).encode("utf-8")


# ---------------------------------------------------------------------------------------- reading


class FrameReader:
    """Reads frames from one connection (keeps what follows a frame for the next one)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        max_message_bytes: int,
        read_timeout: float,
        idle_timeout: float | None,
    ) -> None:
        self.reader = reader
        self.max_message_bytes = max_message_bytes
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.buffer = bytearray()

    async def _fill(self, timeout: float | None) -> bool:
        chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    async def next(self) -> bytes | None:
        """The next message (without framing); None when the peer is gone or idle.

        Raises :class:`FrameError` for an oversized or incomplete frame.
        """
        buffer = self.buffer
        # 1. skip to a start block (noise before it is dropped), waiting at most idle_timeout
        while True:
            start = buffer.find(START_BLOCK)
            if start >= 0:
                del buffer[: start + 1]
                break
            buffer.clear()
            try:
                if not await self._fill(self.idle_timeout):
                    return None
            except (TimeoutError, ConnectionError):
                return None
        # 2. read to the end block, within read_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout
        scan = 0
        while True:
            end = buffer.find(END_BLOCK, scan)
            if end >= 0:
                body = bytes(buffer[:end])
                del buffer[: end + len(END_BLOCK)]
                restart = body.rfind(START_BLOCK)
                if restart >= 0:  # the sender started over: the part before was an abandoned frame
                    body = body[restart + 1 :]
                if len(body) > self.max_message_bytes:  # it came whole in one read: refuse it all the same
                    raise FrameError(
                        f"message larger than {self.max_message_bytes} bytes", partial=body[:4096]
                    )
                return body
            scan = max(0, len(buffer) - 1)
            if len(buffer) > self.max_message_bytes:
                partial = bytes(buffer[:4096])
                await self._discard_to_end(deadline)
                raise FrameError(f"message larger than {self.max_message_bytes} bytes", partial=partial)
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                more = await self._fill(remaining)
            except TimeoutError:
                raise FrameError(
                    "incomplete message (no end block within the read timeout)", partial=bytes(buffer[:4096])
                ) from None
            except ConnectionError:
                more = False
            if not more:
                raise FrameError("the connection closed in the middle of a message", answerable=False)

    async def _discard_to_end(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        buffer = self.buffer
        while True:
            end = buffer.find(END_BLOCK)
            if end >= 0:
                del buffer[: end + len(END_BLOCK)]
                return
            del buffer[: max(0, len(buffer) - 1)]
            remaining = deadline - loop.time()
            try:
                if remaining <= 0 or not await self._fill(remaining):
                    raise FrameError("message too large and not terminated", answerable=False)
            except (TimeoutError, ConnectionError):
                raise FrameError("message too large and not terminated", answerable=False) from None
