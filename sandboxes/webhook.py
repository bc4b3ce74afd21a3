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

    python -m sandboxes.webhook --port 8765 --secret a-long-shared-secret [--fail-rate 0.2 ...]

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
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.webhook.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from sandboxes.base import (
    MisbehaviourControls,
    SandboxHandler,
    ThreadedHttpSandbox,
    add_misbehaviour_arguments,
    is_number,
    misbehaviour_options,
    serve_until_signalled,
)

__all__ = ["ReceivedRequest", "SandboxControls", "SandboxReceiver", "main"]


@dataclass(frozen=True)
class SandboxControls(MisbehaviourControls):
    """How the receiver misbehaves (see :class:`~sandboxes.base.MisbehaviourControls`), plus its own."""

    accept_then_hang_keys: Sequence[str] = ()  # recorded as received, then answered after hang_seconds
    signature_tolerance: float = 300.0  # replay window, seconds

    def __post_init__(self) -> None:
        super().__post_init__()
        if not is_number(self.signature_tolerance) or self.signature_tolerance < 0:
            raise ValueError("signature_tolerance must be a non-negative number")
        hold = self.accept_then_hang_keys
        if isinstance(hold, str) or not isinstance(hold, Iterable) or not all(isinstance(k, str) for k in hold):
            raise ValueError("accept_then_hang_keys must be a list of idempotency keys")
        object.__setattr__(self, "accept_then_hang_keys", tuple(hold))


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


class SandboxReceiver(ThreadedHttpSandbox[SandboxControls]):
    """The sandbox webhook receiver. ``start()``/``stop()`` or use it as a context manager."""

    controls_class = SandboxControls
    thread_name = "webhook-sandbox"

    def __init__(self, port: int = 0, secret: str = "sandbox-webhook-secret", **controls: Any) -> None:
        if not secret:
            raise ValueError("secret must not be empty")
        self.secret = secret
        super().__init__(port, **controls)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; POST deliveries to it (or to any path below it)."""
        return self.root

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
        return self._wait_until(lambda: len(self._accepted) >= count, timeout)

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
        controls, fail, stopped = self._draw(may_fail=is_post)
        if stopped:
            return None  # stopped while hanging
        if not is_post:
            status = controls.status_override or 200
            return status, controls.retry_after_headers(status), {"status": "ok" if status < 400 else "error"}

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
        return status, controls.retry_after_headers(status), {"error": error, "status": status}


class _Handler(SandboxHandler):
    server_version = "WebhookSandbox/1"
    summary_path = "/_received"

    def _summary(self, query: str) -> dict[str, Any]:
        bodies = parse_qs(query).get("bodies", ["0"])[0] not in ("0", "", "false")
        return self.sandbox.summary(bodies=bodies)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _partner(self, body: bytes) -> None:
        path = urlsplit(self.path).path
        if self.command == "POST" and path == self.summary_path:
            self._send_json(405, {"error": "use GET"}, {"Allow": "GET"})
            return
        answer = self.sandbox._handle_webhook(
            self.command, path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        if answer is None:
            self.close_connection = True
            return
        status, headers, payload = answer
        self._send_json(status, payload, headers)


# ------------------------------------------------------------------------------------- process


SandboxReceiver.handler_class = _Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandboxes.webhook", description="Sandbox webhook receiver on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--secret",
        default=os.environ.get("WEBHOOK_SANDBOX_SECRET"),
        help="HMAC secret (default: $WEBHOOK_SANDBOX_SECRET)",
    )
    add_misbehaviour_arguments(parser)
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret (or WEBHOOK_SANDBOX_SECRET) is required")
    try:
        receiver = SandboxReceiver(port=args.port, secret=args.secret, **misbehaviour_options(args))
    except ValueError as exc:
        parser.error(str(exc))

    return serve_until_signalled(receiver)


if __name__ == "__main__":
    sys.exit(main())
