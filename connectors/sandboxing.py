"""What every sandbox partner shares when it runs as a process."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any


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
