"""Finding the processes a test started, by a marker in their environment (inherited by every
descendant, also by those that were re-parented when their parent died)."""

from __future__ import annotations

import os
import time

#: not HUB_-prefixed: the demo passes its hub an environment without the HUB_ variables
MARKER = "THERAPY_HUB_TEST_RUN"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return entry in environ.read().split(b"\0")
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as line:
            return line.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def marked(value: str, exclude: set[int] | None = None) -> list[int]:
    """Live processes whose environment has MARKER=value (zombies are dead)."""
    entry = f"{MARKER}={value}".encode()
    exclude = exclude or set()
    return [pid for pid in (int(p) for p in os.listdir("/proc") if p.isdigit())
            if pid not in exclude and pid != os.getpid() and _environ_has(pid, entry) and _alive(pid)]


def wait_until_gone(value: str, timeout: float, exclude: set[int] | None = None) -> list[int]:
    """Wait for the marked processes to end; the ones still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = marked(value, exclude)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
