"""Test-only fault points: a receive path that stops dead just before or just after its commit.

The tests that show nothing is lost when the hub is killed mid-receive need the kill to land in an
exact window, every time. A path calls :func:`pause` at its two edges (``"before"``: the unit of work
is written but not committed; ``"after"``: committed, the sender not yet answered). When the
environment is ``test`` and ``HUB_FAULT_PAUSE_BEFORE_COMMIT`` / ``HUB_FAULT_PAUSE_AFTER_COMMIT`` names
that path, the call writes ``fault-<when>-<point>`` into the var directory (the test waits for that
file) and then blocks until the process is killed. In any other environment the settings are ignored.

Points: ``fax-receive`` (a received fax webhook), ``direct-receive`` (an SMTP DATA to ``hub direct``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

from hub.settings import Settings

__all__ = ["pause", "reached_file"]


def reached_file(var_dir: Path | str, when: Literal["before", "after"], point: str) -> Path:
    """The file :func:`pause` writes when it stops at ``point``."""
    return Path(var_dir) / f"fault-{when}-{point}"


def pause(settings: Settings, when: Literal["before", "after"], point: str) -> None:
    """Block forever at ``point`` if the test environment asks for it; return at once otherwise."""
    if settings.environment != "test":
        return
    wanted = settings.fault_pause_before_commit if when == "before" else settings.fault_pause_after_commit
    if point not in {p.strip() for p in wanted.split(",") if p.strip()}:
        return
    marker = reached_file(settings.var_dir, when, point)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("reached\n")
    threading.Event().wait()  # until SIGKILL
