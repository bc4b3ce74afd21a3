"""The blocking MLLP client the workers use (:class:`MllpClient`): one kept connection, reopened when
the partner closed it, a timeout on every exchange."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from connectors.hl7v2.mllp.framing import DEFAULT_MAX_MESSAGE_BYTES, END_BLOCK, START_BLOCK, frame

__all__ = ["MllpClient", "MllpClientError"]


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
