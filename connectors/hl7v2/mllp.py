"""MLLP (Minimal Lower Layer Protocol, HL7 v2 transport): framing, an asyncio server and a client.

A frame is ``0x0B`` (start block) + the message + ``0x1C 0x0D`` (end block + CR).

:class:`MllpServer` (asyncio) serves many connections at once and many messages per connection,
one at a time per connection and in order (HL7 original mode is a strict request/response per
connection). What a sender may get wrong never stops the listener:

* bytes before a start block (noise, a telnet probe) are skipped;
* a frame larger than ``max_message_bytes`` is read to its end and discarded, then answered with
  an ``AR`` (the stream stays in step), or the connection is closed if no end block comes;
* a frame that stops mid-way (the sender closed, or nothing more within ``read_timeout``) is
  dropped; if the sender is still there it gets an ``AR`` before the connection is closed;
* a start block inside a frame restarts the frame (the sender gave up on the previous one);
* a connection that sends nothing for ``idle_timeout`` is closed; beyond ``max_connections`` new
  connections are closed at once;
* an exception of the handler is answered with ``AR`` (HL7 error 207) and logged without content.

The handler takes the message bytes and returns the bytes of the answer (framed here), or ``b""``
for no answer (enhanced mode, MSH-15 ``NE``).

:class:`MllpClient` is blocking (workers are synchronous): it sends one message and waits for the
frame that answers it, keeping the connection open between messages and reopening it when the
partner closed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mappings.hl7v2 import Hl7Error, build_ack, parse, read_header
from mappings.hl7v2.errors import APPLICATION_INTERNAL_ERROR, DATA_TYPE_ERROR, ErrorLocation

__all__ = [
    "END_BLOCK",
    "START_BLOCK",
    "CloseConnection",
    "FrameError",
    "FrameReader",
    "MllpClient",
    "MllpClientError",
    "MllpServer",
    "MllpServerThread",
    "frame",
    "nak_for",
]

log = logging.getLogger("connectors.hl7v2.mllp")

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024

Handler = Callable[[bytes], Awaitable[bytes]]
#: called with (the start of) a frame that could not be read whole and the reason; returns the answer
FrameErrorHandler = Callable[[bytes, str], Awaitable[bytes]]


def frame(message: bytes | str) -> bytes:
    """``message`` in an MLLP frame."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return START_BLOCK + data + END_BLOCK


class CloseConnection(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by a handler: close the connection without answering."""


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


# ----------------------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class ServerStats:
    connections: int
    messages: int
    frame_errors: int
    handler_errors: int


class MllpServer:
    """An asyncio MLLP listener calling ``handler(message) -> answer`` for every message."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 2575,
        read_timeout: float = 30.0,
        idle_timeout: float | None = 600.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_connections: int = 256,
        on_frame_error: FrameErrorHandler | None = None,
    ) -> None:
        self.handler = handler
        self.on_frame_error = on_frame_error
        self.host = host
        self.requested_port = port
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self._server: Any = None
        self._clients: set[asyncio.Task[None]] = set()
        self._connections = self._messages = self._frame_errors = self._handler_errors = 0

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def stats(self) -> ServerStats:
        return ServerStats(self._connections, self._messages, self._frame_errors, self._handler_errors)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.requested_port)
        log.info("mllp.listening", extra={"host": self.host, "port": self.port})

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= self.max_connections:
            writer.close()
            return
        self._clients.add(task)
        self._connections += 1
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass
        except Exception:  # never let one connection take the listener down
            log.exception("mllp.connection_failed")
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader(
            reader,
            max_message_bytes=self.max_message_bytes,
            read_timeout=self.read_timeout,
            idle_timeout=self.idle_timeout,
        )
        while True:
            try:
                message = await frames.next()
            except FrameError as exc:
                self._frame_errors += 1
                log.warning("mllp.frame_error", extra={"reason": exc.reason})
                answer = b""
                if self.on_frame_error is not None:
                    try:
                        answer = await self.on_frame_error(exc.partial, exc.reason)
                    except Exception:
                        log.exception("mllp.frame_error_handler_failed")
                if not exc.answerable:
                    return
                writer.write(frame(answer or nak_for(exc.partial, exc.reason, code=DATA_TYPE_ERROR)))
                await writer.drain()
                if "incomplete" in exc.reason:
                    return  # the stream is out of step: start over on a new connection
                continue
            if message is None:
                return
            self._messages += 1
            try:
                answer = await self.handler(message)
            except CloseConnection:
                return
            except Exception:
                self._handler_errors += 1
                log.exception("mllp.handler_failed")
                answer = nak_for(message, "application internal error")
            if answer:
                writer.write(frame(answer))
                await writer.drain()


class MllpServerThread:
    """An :class:`MllpServer` on its own event loop in a background thread (tests, sandbox, CLI)."""

    def __init__(self, handler: Handler, **options: object) -> None:
        self._handler = handler
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="mllp-server", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.server: MllpServer | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.server = MllpServer(self._handler, **self._options)  # type: ignore[arg-type]
            self._loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.server.close())
        self._loop.close()

    def start(self) -> MllpServerThread:
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> MllpServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------------------- client


class MllpClientError(Exception):
    """Transport failure of :class:`MllpClient`: ``timeout`` tells a timeout from a connection error."""

    def __init__(self, reason: str, *, timeout: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timeout = timeout


def _still_open(sock: socket.socket) -> bool:
    """False when the partner has closed (or reset) an idle connection; stray bytes also disqualify it."""
    try:
        sock.setblocking(False)
        try:
            sock.recv(1, socket.MSG_PEEK)  # b"": closed; bytes: a stray answer, out of step
            return False
        finally:
            sock.setblocking(True)
    except BlockingIOError:
        return True  # nothing to read: still open
    except OSError:
        return False


class MllpClient:
    """Blocking MLLP client: ``exchange(message)`` sends one message and returns the answer frame.

    One connection, kept open between messages (thread-safe: one exchange at a time). A connection
    the partner closed while idle is reopened once; any failure during an exchange closes it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        keep_alive: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_message_bytes = max_message_bytes
        self.keep_alive = keep_alive
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except TimeoutError:
            raise MllpClientError(f"connect to {self.host}:{self.port} timed out", timeout=True) from None
        except OSError as exc:
            raise MllpClientError(
                f"cannot connect to {self.host}:{self.port} ({type(exc).__name__})"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def exchange(self, message: bytes) -> bytes:
        with self._lock:
            if self._sock is not None and not _still_open(self._sock):
                self._drop()  # the partner closed the idle connection
            if self._sock is None:
                self._sock = self._connect()
            try:
                self._sock.sendall(frame(message))
                answer = self._read_answer(self._sock)
            except TimeoutError:
                self._drop()
                raise MllpClientError(f"no acknowledgement within {self.timeout:g}s", timeout=True) from None
            except MllpClientError:
                self._drop()
                raise
            except OSError as exc:
                self._drop()
                raise MllpClientError(
                    f"connection to {self.host}:{self.port} failed ({type(exc).__name__})"
                ) from None
            if not self.keep_alive:
                self._drop()
            return answer

    def _read_answer(self, sock: socket.socket) -> bytes:
        deadline = time.monotonic() + self.timeout
        buffer = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                raise MllpClientError("the partner closed the connection without an acknowledgement")
            buffer += chunk
            end = buffer.find(END_BLOCK)
            if end >= 0:
                start = buffer.rfind(START_BLOCK, 0, end)
                if start < 0:
                    raise MllpClientError("the acknowledgement is not framed (no start block)")
                return bytes(buffer[start + 1 : end])
            if len(buffer) > self.max_message_bytes:
                raise MllpClientError("the acknowledgement is too large")

    def probe(self) -> None:
        """Open (and close) a TCP connection: raises MllpClientError when it cannot."""
        sock = self._connect()
        sock.close()

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._drop()
