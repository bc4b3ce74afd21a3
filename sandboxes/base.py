"""What every sandbox partner shares: its controls, its records' lock, start/stop and the process loop.

* :class:`Controls` - a frozen set of controls that ``configure(...)`` changes by name;
  :class:`MisbehaviourControls` adds the faults every HTTP sandbox injects (``fail_rate``,
  ``hang_rate``/``hang_seconds``, ``status_override``, ``fail_keys``, ``retry_after``, ``seed``).
* :class:`Sandbox` - ``controls``, ``configure``, ``reset`` (records forgotten, starting controls
  restored, generators re-seeded), the seeded draw of a hang or a failure, waiting for records.
* :class:`ThreadedHttpSandbox`, :class:`SandboxHttpServer`, :class:`SandboxHandler` - an HTTP
  sandbox on 127.0.0.1 in a daemon thread, with ``POST /_control`` and ``POST /_reset``.
* :func:`serve_until_signalled` - ``python -m sandboxes.<name>``: print the URL, run until SIGTERM/SIGINT/SIGHUP
  or the parent's death;
  :func:`add_misbehaviour_arguments` and :func:`misbehaviour_options` - the command-line flags of the faults.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, ClassVar, Generic, Self, TypeVar
from urllib.parse import urlsplit

__all__ = [
    "HOST",
    "MAX_BODY_BYTES",
    "Controls",
    "MisbehaviourControls",
    "Sandbox",
    "SandboxHandler",
    "SandboxHttpServer",
    "ThreadedHttpSandbox",
    "is_number",
    "is_status",
    "phrase",
    "die_with_parent",
    "serve_until_signalled",
]

HOST = "127.0.0.1"
MAX_BODY_BYTES = 10 * 1024 * 1024


def is_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_status(value: object) -> bool:
    """An HTTP status a sandbox may be told to answer (200-599)."""
    return isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= 599


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


# ------------------------------------------------------------------------------------ controls


@dataclass(frozen=True)
class Controls:
    """Controls changed by name; unknown names are refused."""

    def updated(self, updates: Mapping[str, Any]) -> Self:
        changes = dict(updates)
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown control(s): {', '.join(unknown)}")
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MisbehaviourControls(Controls):
    """The faults an HTTP sandbox injects. Rates are shares of requests in [0, 1]."""

    fail_rate: float = 0.0  # answered 503
    hang_rate: float = 0.0  # sleep hang_seconds before answering
    hang_seconds: float = 0.0
    status_override: int | None = None  # answer every partner request with this status
    fail_keys: Mapping[str, int] = field(default_factory=dict)  # Idempotency-Key -> status
    retry_after: float | str | None = None  # Retry-After on injected 429/503 (seconds or HTTP-date)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("fail_rate", "hang_rate"):
            value = getattr(self, name)
            if not is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1")
        if not is_number(self.hang_seconds) or not 0.0 <= self.hang_seconds <= 600:
            raise ValueError("hang_seconds must be a number between 0 and 600")
        if self.status_override is not None and not is_status(self.status_override):
            raise ValueError("status_override must be null or an HTTP status between 200 and 599")
        if not isinstance(self.fail_keys, Mapping) or not all(
            isinstance(k, str) and is_status(v) for k, v in self.fail_keys.items()
        ):
            raise ValueError("fail_keys must map idempotency keys to HTTP statuses between 200 and 599")
        object.__setattr__(self, "fail_keys", dict(self.fail_keys))
        retry_after = self.retry_after
        if isinstance(retry_after, str):
            valid = bool(retry_after) and retry_after.isprintable() and retry_after.isascii()
        else:
            valid = retry_after is None or (is_number(retry_after) and retry_after >= 0)
        if not valid:
            raise ValueError("retry_after must be null, non-negative seconds or an HTTP-date string")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError("seed must be an integer")

    def updated(self, updates: Mapping[str, Any]) -> Self:
        """A copy with ``updates`` applied; ``fail_keys`` may be a list plus ``fail_keys_status``."""
        changes = dict(updates)
        keys_status = changes.pop("fail_keys_status", 503)
        keys = changes.get("fail_keys")
        if keys is not None and not isinstance(keys, Mapping):
            if isinstance(keys, str) or not isinstance(keys, Iterable):
                raise ValueError("fail_keys must be an object or a list of keys")
            changes["fail_keys"] = {str(key): keys_status for key in keys}
        return super().updated(changes)

    def retry_after_headers(self, status: int) -> dict[str, str]:
        """``Retry-After`` for an injected 429/503 when ``retry_after`` is set."""
        if status not in (429, 503) or self.retry_after is None:
            return {}
        value = self.retry_after
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return {"Retry-After": str(value)}


C = TypeVar("C", bound=Controls)


# ------------------------------------------------------------------------------------- sandbox


class Sandbox(Generic[C]):
    """Controls and records behind one lock. Subclasses set ``controls_class`` and extend ``_clear``."""

    controls_class: ClassVar[type[Controls]]

    def __init__(self, **controls: Any) -> None:
        self._lock = threading.Condition()
        self._stopping = threading.Event()  # set by stop(): wakes handlers that hang
        self._initial: C = self.controls_class().updated(controls)  # type: ignore[assignment]
        self._set_controls(self._initial)
        self._clear()

    @property
    def controls(self) -> C:
        with self._lock:
            return self._controls

    def configure(self, **updates: Any) -> C:
        """Change controls by name; a new ``seed`` re-seeds the generators."""
        with self._lock:
            controls = self._controls.updated(updates)
            self._set_controls(controls, reseed="seed" in updates)
            return controls

    def reset(self) -> None:
        """Forget all records, restore the starting controls, re-seed."""
        with self._lock:
            self._set_controls(self._initial)
            self._clear()

    def _set_controls(self, controls: C, *, reseed: bool = True) -> None:
        self._controls = controls
        if reseed:
            seed = getattr(controls, "seed", 0)
            self._fail_rng = random.Random(seed)
            self._hang_rng = random.Random(seed + 1)

    def _clear(self) -> None:
        """Forget the records (lock held)."""

    def _draw(self, *, may_fail: bool = True) -> tuple[C, bool, bool]:
        """(controls, fail?, stopped while hanging?) for one request, from the seeded generators."""
        with self._lock:
            controls = self._controls
            hang_rate = getattr(controls, "hang_rate", 0.0)
            fail_rate = getattr(controls, "fail_rate", 0.0)
            hang = hang_rate > 0 and self._hang_rng.random() < hang_rate
            fail = may_fail and fail_rate > 0 and self._fail_rng.random() < fail_rate
        stopped = hang and self._stopping.wait(getattr(controls, "hang_seconds", 0.0))
        return controls, fail, stopped

    def _wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(predicate, timeout=timeout)


class SandboxHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sandbox: Any

    def handle_error(self, request: Any, client_address: Any) -> None:  # no tracebacks on stderr
        pass


class ThreadedHttpSandbox(Sandbox[C]):
    """An HTTP sandbox on 127.0.0.1 in a daemon thread. Subclasses set ``handler_class``."""

    handler_class: ClassVar[type[BaseHTTPRequestHandler]]
    thread_name: ClassVar[str] = "sandbox"

    def __init__(self, port: int = 0, **controls: Any) -> None:
        self.port = port
        self._server: SandboxHttpServer | None = None
        self._thread: threading.Thread | None = None
        super().__init__(**controls)

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        self._stopping.clear()
        server = SandboxHttpServer((HOST, self.port), self.handler_class)
        server.sandbox = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
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
        return f"http://{HOST}:{self.port}"


class SandboxHandler(BaseHTTPRequestHandler):
    """The HTTP side every sandbox shares: keep-alive, quiet, bounded bodies, ``/_control`` and ``/_reset``.

    Subclasses implement :meth:`_partner` (a request to the partner API) and :meth:`_refuse` (an
    error answer in the partner's own format), and may set ``summary_path`` (``GET``: the summary).
    """

    server: SandboxHttpServer
    protocol_version = "HTTP/1.1"  # keep-alive, like a real partner: the connector reuses connections
    timeout = 30  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms ACK stalls
    summary_path: ClassVar[str | None] = None

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def sandbox(self) -> Any:
        return self.server.sandbox

    def _partner(self, body: bytes) -> None:
        raise NotImplementedError

    def _refuse(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message})

    def _summary(self, query: str) -> dict[str, Any]:
        return self.sandbox.summary()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == self.summary_path:
            self._send_json(200, self._summary(parts.query))
        elif parts.path in ("/_control", "/_reset"):
            self._send_json(405, {"error": "use POST"}, {"Allow": "POST"})
        else:
            self._partner(b"")

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path == "/_control":
            self._control(body)
        elif path == "/_reset":
            self.sandbox.reset()
            self._send_json(200, {"status": "reset"})
        else:
            self._partner(body)

    def _control(self, body: bytes) -> None:
        try:
            updates = json.loads(body or b"{}")
            if not isinstance(updates, dict):
                raise ValueError("expected a JSON object")
            controls = self.sandbox.configure(**updates)
        except (ValueError, TypeError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(200, {"controls": controls.to_json()})

    def _read_body(self) -> bytes | None:
        """The request body; None after refusing a chunked, bad or too large one."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._refuse(411, "Content-Length required")
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._refuse(413 if length > 0 else 400, "bad or too large Content-Length")
            return None
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, value: Any, headers: Mapping[str, str] | None = None) -> None:
        """A plain JSON answer (control endpoints, and partners that speak plain JSON)."""
        self._send(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(value).encode())

    def _send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        try:
            self.send_response(status, phrase(status))
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:  # the client gave up (e.g. its timeout while we hung)
            self.close_connection = True


# ------------------------------------------------------------------------------------- process


def add_misbehaviour_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the faults an HTTP sandbox injects (:class:`MisbehaviourControls`)."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=0.0)
    parser.add_argument("--status-override", type=int, default=None)
    parser.add_argument("--retry-after", default=None, help="seconds or an HTTP-date")


def misbehaviour_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of a sandbox's faults from :func:`add_misbehaviour_arguments`' flags
    (``--retry-after`` as seconds when it is a number, else as the HTTP-date given)."""
    retry_after: float | str | None = args.retry_after
    if isinstance(retry_after, str):
        try:
            retry_after = float(retry_after)
        except ValueError:
            pass
    return {"seed": args.seed, "fail_rate": args.fail_rate, "hang_rate": args.hang_rate,
            "hang_seconds": args.hang_seconds, "status_override": args.status_override,
            "retry_after": retry_after}


def die_with_parent() -> None:
    """Linux: SIGTERM when the parent dies (:func:`serve_until_signalled` also checks the parent)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def serve_until_signalled(
    server: Any,
    url: str | None = None,
    *,
    farewell: Callable[[], str] | None = None,
    banner: Callable[[], str] | None = None,
    prepare: Callable[[], None] | None = None,
    started: Callable[[], None] | None = None,
) -> int:
    """Start ``server`` (a context manager with ``.url``), print its URL (or ``banner()``), run until
    SIGTERM, SIGINT or SIGHUP, or until the parent process is gone (a sandbox ends with its parent).

    ``prepare`` runs once the server is up, before the banner; ``started`` after it (e.g. sending
    scripted webhooks); ``farewell`` gives a last line to print before the server stops.
    """
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    die_with_parent()
    parent = os.getppid()
    with server:
        if prepare is not None:
            prepare()
        sys.stdout.write((banner() if banner is not None else (url or server.url)) + "\n")
        sys.stdout.flush()
        if started is not None:
            started()
        while not stop.wait(0.5):
            if os.getppid() != parent:  # re-parented: the parent is gone, end with it
                break
        if farewell is not None:
            sys.stdout.write(farewell() + "\n")
    return 0
