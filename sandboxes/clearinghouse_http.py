"""The HTTP API of the sandbox clearinghouse (:mod:`sandboxes.clearinghouse` documents it)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from sandboxes.base import SandboxHandler

if TYPE_CHECKING:
    from sandboxes.clearinghouse import SandboxClearinghouse

__all__ = ["ClearinghouseHandler"]

_NAME_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def _safe_name(name: str) -> bool:
    return 0 < len(name) <= 200 and set(name) <= _NAME_OK and not name.startswith(".")


class ClearinghouseHandler(SandboxHandler):
    summary_path = "/_summary"

    def setup(self) -> None:
        context = self.server.sandbox.tls_context
        if context is not None:  # the handshake happens here, in this connection's own thread
            self.request = context.wrap_socket(self.request, server_side=True)
        super().setup()

    def _partner(self, body: bytes) -> None:
        house: SandboxClearinghouse = self.sandbox
        controls, fail, stopped = house._draw()
        if stopped:
            return
        if controls.slow_seconds and house._stopping.wait(controls.slow_seconds):
            return
        if controls.status_override is not None or fail:
            status = controls.status_override or 503
            self._send_json(status, {"error": "unavailable"}, controls.retry_after_headers(status))
            return
        if not house.check_http(self.headers.get("Authorization", "")):
            with house._lock:
                house.auth_failures += 1
            self._send_json(401, {"error": "unauthorized"}, {"WWW-Authenticate": "Bearer"})
            return
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/claims" and self.command == "POST":
            self._claim(house, body)
        elif path == "/responses" and self.command == "GET":
            self._send_json(200, {"responses": [{"name": n, "size": len(house.response(n))}
                                                for n in house.responses()]})
        elif path.startswith("/responses/") and self.command in ("GET", "DELETE"):
            name = unquote(path.removeprefix("/responses/"))
            file = house.user_root(house.http_user) / "outbound" / name
            if not _safe_name(name) or not file.is_file():
                self._send_json(404, {"error": "not found"})
            elif self.command == "GET":
                self._send(200, {"Content-Type": "application/edi-x12"}, file.read_bytes())
            else:
                file.unlink(missing_ok=True)
                self._send(204, {}, b"")
        else:
            self._send_json(404, {"error": "not found"})

    def _claim(self, house: SandboxClearinghouse, body: bytes) -> None:
        key = self.headers.get("Idempotency-Key", "")
        if not key:
            self._send_json(400, {"error": "Idempotency-Key required"})
            return
        name = self.headers.get("X-Filename") or f"claims-{hashlib.sha256(key.encode()).hexdigest()[:16]}.x12"
        if not _safe_name(name):
            self._send_json(400, {"error": "bad X-Filename"})
            return
        record, duplicate = house.receive(house.http_user, name, body, channel="http", key=key)
        self._send_json(202, {"id": record.sha256[:24] if record else None, "name": name, "duplicate": duplicate})

    def do_POST(self) -> None:
        limit = self.sandbox.controls.drop_after_bytes
        if limit is not None and urlsplit(self.path).path == "/claims":
            try:
                length = int(self.headers.get("Content-Length", "0") or 0)
            except ValueError:
                length = 0  # the base handler refuses it
            if length > limit:
                self.rfile.read(limit)
                self.close_connection = True
                self.connection.shutdown(2)  # the line goes dead mid-upload: no answer
                return
        super().do_POST()

    def do_DELETE(self) -> None:
        self._partner(b"")
