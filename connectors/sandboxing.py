"""What every sandbox partner shares when it runs as a process."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any, Self


def serve_until_signalled(server: Any, url: str | None = None) -> int:
    """Start ``server`` (a context manager with ``.url``), print its URL, run until SIGTERM/SIGINT."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with server:
        sys.stdout.write((url or server.url) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


class ThreadedHttpSandbox:
    """Start/stop of a sandbox HTTP server on 127.0.0.1 in a daemon thread.

    Subclasses set ``_server_class``, ``_handler_class``, ``_owner_attr`` (the attribute of the
    server through which handlers reach the sandbox) and ``_thread_name``, and create ``port``,
    ``_server = None``, ``_thread = None`` and ``_stopping`` (an Event that wakes hanging handlers).
    """

    _server_class: Any
    _handler_class: Any
    _owner_attr: str
    _thread_name: str = "sandbox"
    port: int
    _server: Any
    _thread: threading.Thread | None
    _stopping: threading.Event

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        self._stopping.clear()
        server = self._server_class(("127.0.0.1", self.port), self._handler_class)
        setattr(server, self._owner_attr, self)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self._thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def root(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError("sandbox not started")
        return f"http://127.0.0.1:{self.port}"
