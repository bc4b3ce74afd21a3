"""Processes that the hub starts end with their parent: on SIGTERM, SIGINT and SIGHUP to the parent,
and when the parent dies, however it dies.

- A parent (``hub serve`` starting its worker, ``hub demo`` starting ``hub serve``) starts each child
  in a process group of its own (:func:`spawn`), turns SIGTERM and SIGHUP into an orderly exit
  (:func:`exit_on_signals`), and stops a child by asking it (SIGTERM), waiting a bounded time, then
  killing what is left of its whole group (:func:`stop`): the child's own children included.
- Each child asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), the backstop
  for a parent killed with SIGKILL; forked children that a library starts (Celery's pool and beat)
  watch their parent instead (:func:`watch_parent`), since the death signal follows the *thread*
  that forked them.
- ``hub serve --workers N`` runs uvicorn's supervisor (:func:`supervise_api_workers`); each API worker
  asks for the death signal as it loads the app (:func:`die_with_supervisor`), and SIGHUP ends the
  supervisor as SIGTERM does instead of restarting its workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux: this process gets ``sig`` when the thread that started it ends (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        pass


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    die_with_parent()


def spawn(argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (its own process group) that dies with this process.

    Call it from the main thread: the death signal follows the thread that forks."""
    return subprocess.Popen(list(argv), start_new_session=True, preexec_fn=_child_setup, **popen)  # noqa: PLW1509


#: the pid of the ``hub serve`` process that supervises the API workers (not HUB_-prefixed: no setting)
SUPERVISOR_ENV = "THERAPY_HUB_SUPERVISOR_PID"


def supervise_api_workers(config: Any) -> None:
    """Run uvicorn's supervisor of ``config.workers`` API workers (a ``uvicorn.Config`` whose app is
    ``hub.app:create_worker_app``) until SIGTERM, SIGINT or SIGHUP; its workers end with it however it ends."""
    from uvicorn.supervisors.multiprocess import Multiprocess

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:  # uvicorn restarts its workers on SIGHUP; the hub ends, as on SIGTERM
            self.handle_term()

    os.environ[SUPERVISOR_ENV] = str(os.getpid())  # inherited by the workers uvicorn spawns
    sock = config.bind_socket()
    try:
        Supervisor(config, sockets=[sock]).run()
    finally:
        sock.close()


def die_with_supervisor() -> None:
    """In an API worker of :func:`supervise_api_workers` (no-op elsewhere): SIGTERM (uvicorn's graceful
    stop) when the supervisor dies; if it died already, before the request took effect, exit now."""
    expected = os.environ.get(SUPERVISOR_ENV, "")
    if not expected.isdigit():
        return
    die_with_parent()
    if os.getppid() != int(expected):
        os._exit(1)


def hub_command(*args: str) -> list[str]:
    """The command line of a ``hub`` subcommand run by this interpreter."""
    return [sys.executable, "-m", "hub.cli", *args]


def stop(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM to ``process``, up to ``timeout`` seconds for it to end, then SIGKILL to its group.

    The group goes in any case, so children that it left behind do not outlive it."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        return process.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - the kernel did not reap it
        return None


class Terminated(SystemExit):
    """SIGTERM or SIGHUP arrived: leave through ``finally`` blocks (exit status 128 + signal)."""


def exit_on_signals(*signals: int) -> None:
    """Turn these signals (default SIGTERM and SIGHUP) into :class:`Terminated` in the main thread,
    so that ``finally`` blocks stop the children. Python's default for them ends the process at once."""
    def handler(signum: int, _frame: Any) -> None:
        raise Terminated(128 + signum)

    for sig in signals or (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def hangup_is_terminate() -> None:
    """SIGHUP does what SIGTERM does (uvicorn's graceful stop while it runs: it handles SIGTERM only)."""
    signal.signal(signal.SIGHUP, lambda _signum, _frame: os.kill(os.getpid(), signal.SIGTERM))


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc), children first."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in parents.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def kill_children(pid: int | None = None) -> None:
    for child in reversed(children(pid or os.getpid())):
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def watch_parent(interval: float = 0.5) -> None:
    """A daemon thread that ends this process when its parent is gone (it is then re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def exit_within(seconds: float, what: str) -> None:
    """Arm a deadline (once): after ``seconds``, kill this process's children and exit, however
    stuck its shutdown is (a pool waiting on a lock at exit does not wait forever)."""
    global _deadline
    if _deadline is not None:
        return

    def expire() -> None:
        sys.stderr.write(f"{what}: shutdown took more than {seconds:g}s; stopping now\n")
        sys.stderr.flush()
        kill_children()
        os._exit(1)

    _deadline = threading.Timer(seconds, expire)
    _deadline.daemon = True
    _deadline.start()


_deadline: threading.Timer | None = None
