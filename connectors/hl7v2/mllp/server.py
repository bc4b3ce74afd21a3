"""The asyncio MLLP listener (:class:`MllpServer`) and the same on a thread of its own (:class:`MllpServerThread`).

What a sender may get wrong never stops the listener: see :mod:`connectors.hl7v2.mllp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from connectors.hl7v2.mllp.framing import DEFAULT_MAX_MESSAGE_BYTES, FrameError, FrameReader, frame, nak_for
from mappings.hl7v2.errors import DATA_TYPE_ERROR

__all__ = ["CloseConnection", "FrameErrorHandler", "Handler", "MllpServer", "MllpServerThread", "ServerStats"]

log = logging.getLogger("connectors.hl7v2.mllp")

Handler = Callable[[bytes], Awaitable[bytes]]
#: called with (the start of) a frame that could not be read whole and the reason; returns the answer
FrameErrorHandler = Callable[[bytes, str], Awaitable[bytes]]


class CloseConnection(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by a handler: close the connection without answering."""


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
