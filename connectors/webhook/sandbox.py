"""A partner's webhook receiver on 127.0.0.1, for tests, demos and load runs.

A real HTTP server (``http.server.ThreadingHTTPServer``, daemon threads) that verifies signatures,
dedupes by ``Idempotency-Key`` and misbehaves on request.

In process::

    with SandboxReceiver(port=0, secret="a-long-shared-secret") as sandbox:
        connector = WebhookConnector(WebhookConfig(url=sandbox.url, secret="a-long-shared-secret"))
        sandbox.configure(fail_rate=0.2, seed=7)
        ...
        assert sandbox.summary()["deliveries"] == 10

As a process (prints its URL on stdout, runs until SIGTERM or SIGINT)::

    python -m connectors.webhook.sandbox --port 8765 --secret a-long-shared-secret [--fail-rate 0.2 ...]

HTTP interface (``url`` is ``http://127.0.0.1:<port>``):

* ``POST <any other path>`` - a delivery. Answered, in this order: after an optional hang
  (``hang_rate``/``hang_seconds``); ``status_override`` if set; 401 if the signature is invalid or
  stale (recorded as rejected); 400 without an ``Idempotency-Key``; the status of ``fail_keys[key]``;
  503 for a ``fail_rate`` share; else 200 ``{"id": ..., "status": "accepted" | "duplicate"}``. A
  repeat of an accepted key is answered 200 with the first id and counted in ``duplicates``.
  A request whose key is in ``accept_then_hang_keys`` is recorded (accepted or duplicate) and then
  answered only after ``hang_seconds`` (or never, if the receiver stops first): a partner that took
  the delivery but whose answer the sender never sees (sender killed, or timed out).
  Injected 429/503 answers carry ``Retry-After: <retry_after>`` when it is set.
* ``GET``/``HEAD <any other path>`` - 200 (or ``status_override``): a health probe target.
* ``GET /_received`` - JSON summary: counts, accepted keys, duplicates, signature validity, controls.
  ``?bodies=1`` adds each accepted body (UTF-8 text).
* ``POST /_control`` - JSON object of controls to change (see :class:`SandboxControls`); ``fail_keys``
  may be ``{key: status}`` or a list of keys plus ``fail_keys_status`` (default 503).
* ``POST /_reset`` - forget all records; restore the controls the receiver started with; re-seed.

Random choices use ``random.Random(seed)`` (one generator for failures, one for hangs), so a given
sequence of requests sees the same failures on every run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.sandboxing import ThreadedHttpSandbox, serve_until_signalled
from connectors.webhook.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

__all__ = ["ReceivedRequest", "SandboxControls", "SandboxReceiver", "main"]

HOST = "127.0.0.1"
MAX_BODY_BYTES = 10 * 1024 * 1024
CONTROL_PATHS = ("/_control", "/_received", "/_reset")


@dataclass(frozen=True)
class SandboxControls:
    """How the sandbox misbehaves. All rates are shares of requests in [0, 1]."""

    fail_rate: float = 0.0  # POSTs answered 503
    hang_rate: float = 0.0  # requests that sleep hang_seconds before being answered
    hang_seconds: float = 0.0
    status_override: int | None = None  # answer every non-control request with this status
    fail_keys: Mapping[str, int] = field(default_factory=dict)  # idempotency key -> status
    accept_then_hang_keys: Sequence[str] = ()  # recorded as received, then answered after hang_seconds
    retry_after: float | str | None = None  # Retry-After on injected 429/503 (seconds or HTTP-date)
    seed: int = 0
    signature_tolerance: float = 300.0  # replay window, seconds

    def __post_init__(self) -> None:
        for name in ("fail_rate", "hang_rate"):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1")
        if not _is_number(self.hang_seconds) or not 0.0 <= self.hang_seconds <= 600:
            raise ValueError("hang_seconds must be a number between 0 and 600")
        if not _is_number(self.signature_tolerance) or self.signature_tolerance < 0:
            raise ValueError("signature_tolerance must be a non-negative number")
        if self.status_override is not None and not _is_status(self.status_override):
            raise ValueError("status_override must be null or an HTTP status between 200 and 599")
        if not isinstance(self.fail_keys, Mapping) or not all(
            isinstance(k, str) and _is_status(v) for k, v in self.fail_keys.items()
        ):
            raise ValueError("fail_keys must map idempotency keys to HTTP statuses between 200 and 599")
        object.__setattr__(self, "fail_keys", dict(self.fail_keys))
        hold = self.accept_then_hang_keys
        if isinstance(hold, str) or not isinstance(hold, Iterable) or not all(isinstance(k, str) for k in hold):
            raise ValueError("accept_then_hang_keys must be a list of idempotency keys")
        object.__setattr__(self, "accept_then_hang_keys", tuple(hold))
        retry_after = self.retry_after
        if isinstance(retry_after, str):
            valid = bool(retry_after) and retry_after.isprintable() and retry_after.isascii()
        else:
            valid = retry_after is None or (_is_number(retry_after) and retry_after >= 0)
        if not valid:
            raise ValueError("retry_after must be null, non-negative seconds or an HTTP-date string")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError("seed must be an integer")

    def updated(self, updates: Mapping[str, Any]) -> SandboxControls:
        """A copy with ``updates`` applied; ``fail_keys`` may be a list plus ``fail_keys_status``."""
        changes = dict(updates)
        keys_status = changes.pop("fail_keys_status", 503)
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown control(s): {', '.join(unknown)}")
        keys = changes.get("fail_keys")
        if keys is not None and not isinstance(keys, Mapping):
            if isinstance(keys, str) or not isinstance(keys, Iterable):
                raise ValueError("fail_keys must be an object or a list of keys")
            changes["fail_keys"] = {str(key): keys_status for key in keys}
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReceivedRequest:
    """One webhook request the sandbox answered. ``outcome``: accepted, duplicate, rejected, failed."""

    method: str
    path: str
    idempotency_key: str | None
    correlation_id: str | None
    event: str | None
    content_type: str | None
    signature_valid: bool
    body: bytes = field(repr=False)
    received_at: float
    status: int
    outcome: str
    delivery_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # lower-case names

    def to_json(self, *, body: bool = False) -> dict[str, Any]:
        data = {
            "id": self.delivery_id,
            "idempotency_key": self.idempotency_key,
            "correlation_id": self.correlation_id,
            "event": self.event,
            "content_type": self.content_type,
            "signature_valid": self.signature_valid,
            "received_at": self.received_at,
            "status": self.status,
            "outcome": self.outcome,
            "bytes": len(self.body),
            "sha256": hashlib.sha256(self.body).hexdigest(),
        }
        if body:
            data["body"] = self.body.decode("utf-8", "replace")
        return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: SandboxReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:  # no tracebacks on stderr
        pass


class SandboxReceiver(ThreadedHttpSandbox):
    """The sandbox webhook receiver. ``start()``/``stop()`` or use it as a context manager."""

    _owner_attr = "receiver"
    _thread_name = "webhook-sandbox"

    def __init__(self, port: int = 0, secret: str = "sandbox-webhook-secret", **controls: Any) -> None:
        if not secret:
            raise ValueError("secret must not be empty")
        self.port = port
        self.secret = secret
        self._initial = SandboxControls().updated(controls)
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._set_controls(self._initial)
        self._clear()

    # ------------------------------------------------------------------------- lifecycle


    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; POST deliveries to it (or to any path below it)."""
        return self.root

    # -------------------------------------------------------------------------- controls

    @property
    def controls(self) -> SandboxControls:
        with self._lock:
            return self._controls

    def configure(self, **updates: Any) -> SandboxControls:
        """Change controls (see :class:`SandboxControls`); a new ``seed`` re-seeds the generators."""
        with self._lock:
            controls = self._controls.updated(updates)
            self._set_controls(controls, reseed="seed" in updates)
            return controls

    def reset(self) -> None:
        """Forget all records, restore the starting controls, re-seed."""
        with self._lock:
            self._set_controls(self._initial)
            self._clear()

    def _set_controls(self, controls: SandboxControls, *, reseed: bool = True) -> None:
        self._controls = controls
        if reseed:
            self._fail_rng = random.Random(controls.seed)
            self._hang_rng = random.Random(controls.seed + 1)

    def _clear(self) -> None:
        self._requests: list[ReceivedRequest] = []
        self._accepted: dict[str, ReceivedRequest] = {}
        self._duplicate_keys: dict[str, int] = {}

    # --------------------------------------------------------------------------- records

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every webhook request answered, in order (accepted, duplicate, rejected and failed)."""
        with self._lock:
            return list(self._requests)

    @property
    def deliveries(self) -> list[ReceivedRequest]:
        """Accepted deliveries, one per idempotency key, in order of acceptance."""
        with self._lock:
            return list(self._accepted.values())

    @property
    def rejected(self) -> list[ReceivedRequest]:
        """Requests refused for a missing, wrong or stale signature."""
        with self._lock:
            return [r for r in self._requests if r.outcome == "rejected"]

    @property
    def duplicates(self) -> int:
        with self._lock:
            return sum(self._duplicate_keys.values())

    @property
    def duplicate_keys(self) -> dict[str, int]:
        with self._lock:
            return dict(self._duplicate_keys)

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` deliveries were accepted; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._accepted) >= count, timeout=timeout)

    def summary(self, *, bodies: bool = False) -> dict[str, Any]:
        with self._lock:
            requests = list(self._requests)
            accepted = list(self._accepted.values())
            duplicate_keys = dict(self._duplicate_keys)
            controls = self._controls
        return {
            "requests": len(requests),
            "deliveries": len(accepted),
            "keys": [r.idempotency_key for r in accepted],
            "duplicates": sum(duplicate_keys.values()),
            "duplicate_keys": duplicate_keys,
            "rejected": sum(1 for r in requests if r.outcome == "rejected"),
            "failed": sum(1 for r in requests if r.outcome == "failed"),
            "signatures": {
                "valid": sum(1 for r in requests if r.signature_valid),
                "invalid": sum(1 for r in requests if not r.signature_valid),
            },
            "items": [r.to_json(body=bodies) for r in accepted],
            "controls": controls.to_json(),
        }

    # -------------------------------------------------------------------------- handling

    def _handle_webhook(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any]] | None:
        """Decide the answer to one webhook request: (status, headers, JSON) or None to hang up.

        ``headers`` has lower-case names.
        """
        is_post = method == "POST"
        with self._lock:
            controls = self._controls
            hang = controls.hang_rate > 0 and self._hang_rng.random() < controls.hang_rate
            fail = is_post and controls.fail_rate > 0 and self._fail_rng.random() < controls.fail_rate
        if hang and self._stopping.wait(controls.hang_seconds):
            return None  # stopped while hanging
        if not is_post:
            status = controls.status_override or 200
            return status, self._retry_after(status, controls), {"status": "ok" if status < 400 else "error"}

        key = headers.get("idempotency-key")
        signature_valid = verify_signature(
            self.secret,
            headers.get(TIMESTAMP_HEADER.lower()),
            body,
            headers.get(SIGNATURE_HEADER.lower()),
            tolerance_seconds=controls.signature_tolerance,
            idempotency_key=key,
        )
        if controls.status_override is not None:
            status, outcome, error = controls.status_override, "failed", "status_override"
        elif not signature_valid:
            status, outcome, error = 401, "rejected", "invalid or stale signature"
        elif not key:
            status, outcome, error = 400, "failed", "missing Idempotency-Key"
        elif key in controls.fail_keys:
            status, outcome, error = controls.fail_keys[key], "failed", "fail_keys"
        elif fail:
            status, outcome, error = 503, "failed", "fail_rate"
        else:
            status, outcome, error = 200, "", ""

        with self._lock:
            delivery_id = None
            if status == 200 and key:
                first = self._accepted.get(key)
                if first is not None:
                    outcome, delivery_id = "duplicate", first.delivery_id
                    self._duplicate_keys[key] = self._duplicate_keys.get(key, 0) + 1
                else:
                    outcome, delivery_id = "accepted", f"dlv-{len(self._accepted) + 1:06d}"
            record = ReceivedRequest(
                method=method,
                path=path,
                idempotency_key=key,
                correlation_id=headers.get("x-correlation-id"),
                event=headers.get("x-hub-event"),
                content_type=headers.get("content-type"),
                signature_valid=signature_valid,
                body=body,
                received_at=time.time(),
                status=status,
                outcome=outcome,
                delivery_id=delivery_id,
                headers=dict(headers),
            )
            self._requests.append(record)
            if outcome == "accepted" and key:
                self._accepted[key] = record
                self._lock.notify_all()
        if status == 200 and key in controls.accept_then_hang_keys and self._stopping.wait(controls.hang_seconds):
            return None  # stopped while holding the answer
        if status == 200:
            return status, {}, {"id": delivery_id, "status": outcome}
        return status, self._retry_after(status, controls), {"error": error, "status": status}

    @staticmethod
    def _retry_after(status: int, controls: SandboxControls) -> dict[str, str]:
        if status not in (429, 503) or controls.retry_after is None:
            return {}
        value = controls.retry_after
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return {"Retry-After": str(value)}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like a real partner: the connector reuses connections
    server_version = "WebhookSandbox/1"
    timeout = 30  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms ACK stalls

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def receiver(self) -> SandboxReceiver:
        return self.server.receiver

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/_received":
            bodies = parse_qs(parts.query).get("bodies", ["0"])[0] not in ("0", "", "false")
            self._reply(200, self.receiver.summary(bodies=bodies))
        elif parts.path in CONTROL_PATHS:
            self._reply(405, {"error": "use POST"}, {"Allow": "POST"})
        else:
            self._webhook(b"")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path == "/_control":
            self._control(body)
        elif path == "/_reset":
            self.receiver.reset()
            self._reply(200, {"status": "reset"})
        elif path == "/_received":
            self._reply(405, {"error": "use GET"}, {"Allow": "GET"})
        else:
            self._webhook(body)

    def _webhook(self, body: bytes) -> None:
        answer = self.receiver._handle_webhook(
            self.command, urlsplit(self.path).path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        if answer is None:
            self.close_connection = True
            return
        status, headers, payload = answer
        self._reply(status, payload, headers)

    def _control(self, body: bytes) -> None:
        try:
            updates = json.loads(body or b"{}")
            if not isinstance(updates, dict):
                raise ValueError("expected a JSON object")
            controls = self.receiver.configure(**updates)
        except (ValueError, TypeError) as exc:
            self._reply(400, {"error": str(exc)})
            return
        self._reply(200, {"controls": controls.to_json()})

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._reply(411, {"error": "Content-Length required"})
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply(413 if length > 0 else 400, {"error": "bad or too large Content-Length"})
            return None
        return self.rfile.read(length) if length else b""

    def _reply(
        self, status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status, _phrase(status))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:  # the client gave up (e.g. its timeout while we hung)
            self.close_connection = True


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_status(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= 599


# ------------------------------------------------------------------------------------- process


SandboxReceiver._server_class = _Server
SandboxReceiver._handler_class = _Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.webhook.sandbox", description="Sandbox webhook receiver on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--secret",
        default=os.environ.get("WEBHOOK_SANDBOX_SECRET"),
        help="HMAC secret (default: $WEBHOOK_SANDBOX_SECRET)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=0.0)
    parser.add_argument("--status-override", type=int, default=None)
    parser.add_argument("--retry-after", default=None, help="seconds or an HTTP-date")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret (or WEBHOOK_SANDBOX_SECRET) is required")
    retry_after: float | str | None = args.retry_after
    if isinstance(retry_after, str):
        try:
            retry_after = float(retry_after)
        except ValueError:
            pass
    try:
        receiver = SandboxReceiver(
            port=args.port,
            secret=args.secret,
            seed=args.seed,
            fail_rate=args.fail_rate,
            hang_rate=args.hang_rate,
            hang_seconds=args.hang_seconds,
            status_override=args.status_override,
            retry_after=retry_after,
        )
    except ValueError as exc:
        parser.error(str(exc))

    return serve_until_signalled(receiver)


if __name__ == "__main__":
    sys.exit(main())
