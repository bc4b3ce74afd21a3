"""A fax vendor on 127.0.0.1 (Phaxio or Documo profile), for tests and demos.

It takes sends the way the vendor does (its path, its authentication, multipart files), records
them, answers with a vendor fax id, and then reports what became of the fax: a signed status
webhook POSTed to the send's callback URL (``delivered`` with the page count, or ``failed`` with a
vendor error code for numbers in ``fail_numbers`` or while ``fail_next`` is positive). It can also
deliver a fax "received" at the clinic's number: :meth:`SandboxFaxServer.inject_inbound` POSTs a
signed receive webhook with a PDF to a given URL, and :meth:`SandboxFaxServer.return_signed` is the
referring office answering a fax it was sent: the fax's pages after its cover sheet (the plan's
certification page) printed, signed by hand and scanned (:func:`sandboxes.scans.scanned_pdf`, an
image-only PDF), faxed back to the clinic as a received fax.

In process::

    with SandboxFaxServer(profile="phaxio", api_key="key", api_secret="secret",
                          webhook_secret="callback-token") as vendor:
        ...  # FaxConnector(base_url=vendor.url, ...)
        vendor.wait_for_sends(1)
        vendor.sent[0].files[0]  # the PDF bytes

HTTP interface (``url`` is ``http://127.0.0.1:<port>``): ``POST /faxes`` (phaxio) or
``POST /v1/faxes`` (documo); ``GET /`` health; ``GET /_sent`` summary; ``POST /_control``,
``POST /_reset`` (see :mod:`sandboxes.base`). Callbacks go out from a thread after the send was
answered (``callback_delay`` seconds later, ``auto_callback`` to turn them off); their outcome (the
hub's HTTP status) is kept in ``callbacks``.
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import hmac
import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.base import ConnectorError
from connectors.fax.document import page_count
from connectors.fax.model import FaxStatus, ReceivedFax
from connectors.fax.profiles import profile as fax_profile
from connectors.fax.profiles.base import SignedWebhook, WebhookRefused, parse_multipart
from sandboxes.base import (
    MisbehaviourControls,
    SandboxHandler,
    ThreadedHttpSandbox,
    add_misbehaviour_arguments,
    is_number,
    misbehaviour_options,
    serve_until_signalled,
)
from sandboxes.scans import page_range, scanned_pdf

__all__ = ["FaxControls", "SandboxFaxServer", "SentFax", "main"]

_PATHS = {"phaxio": "/faxes", "documo": "/v1/faxes"}
_FIELDS = {"phaxio": ("to", "file", "callback_url"), "documo": ("recipientFax", "attachments", "callbackUrl")}


@dataclass(frozen=True)
class FaxControls(MisbehaviourControls):
    auto_callback: bool = True
    callback_delay: float = 0.2
    fail_numbers: Sequence[str] = ()  # faxes to these numbers fail (status callback "failed")
    fail_next: int = 0  # the next N faxes fail
    fail_code: str = "2004"  # the vendor's error code in a failure callback

    def __post_init__(self) -> None:
        super().__post_init__()
        if not is_number(self.callback_delay) or not 0 <= self.callback_delay <= 60:
            raise ValueError("callback_delay must be between 0 and 60 seconds")
        if isinstance(self.fail_numbers, str) or not isinstance(self.fail_numbers, Iterable):
            raise ValueError("fail_numbers must be a list of fax numbers")
        object.__setattr__(self, "fail_numbers", tuple(self.fail_numbers))
        if isinstance(self.fail_next, bool) or not isinstance(self.fail_next, int) or self.fail_next < 0:
            raise ValueError("fail_next must be a non-negative integer")


@dataclass(frozen=True)
class SentFax:
    fax_id: str
    to: str = field(repr=False)
    files: tuple[bytes, ...] = field(repr=False)
    callback_url: str | None = field(repr=False)
    fields: dict[str, str] = field(repr=False)


class _Handler(SandboxHandler):
    summary_path = "/_sent"

    def _partner(self, body: bytes) -> None:
        sandbox: SandboxFaxServer = self.sandbox
        controls, fail, stopped = sandbox._draw()
        if stopped:
            return
        if self.command in ("GET", "HEAD"):
            self._send_json(controls.status_override or 200, {"ok": True})
            return
        if controls.status_override is not None:
            self._send_json(controls.status_override, {"success": False, "message": "overridden"})
            return
        if self.path.split("?")[0] != _PATHS[sandbox.profile_name]:
            self._send_json(404, {"success": False, "message": "not found"})
            return
        if not sandbox.authorised(self.headers.get("Authorization", "")):
            self._send_json(401, {"success": False, "message": "invalid credentials"})
            return
        if fail:
            self._send_json(503, {"success": False}, controls.retry_after_headers(503))
            return
        try:
            form = parse_multipart(body, self.headers.get("Content-Type", ""))
        except WebhookRefused:
            self._send_json(422, {"success": False, "message": "multipart required"})
            return
        sent = sandbox.record(form.fields, [content for _, content in _files(body, self.headers)])
        if sent is None:
            self._send_json(422, {"success": False, "message": "a number and a file are required"})
            return
        if sandbox.profile_name == "phaxio":
            self._send_json(200, {"success": True, "message": "Fax queued for sending",
                                  "data": {"id": int(sent.fax_id)}})
        else:
            self._send_json(200, {"messageId": sent.fax_id, "status": "queued"})


def _files(body: bytes, headers: Any) -> list[tuple[str, bytes]]:
    """Every file part in order (a field name may repeat: several files)."""
    head = f"Content-Type: {headers.get('Content-Type', '')}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    out = []
    for part in message.iter_parts() if message.is_multipart() else ():
        if part.get_filename() is not None:
            payload = part.get_payload(decode=True)
            out.append((str(part.get_param("name", header="content-disposition")),
                        payload if isinstance(payload, bytes) else b""))
    return out


class SandboxFaxServer(ThreadedHttpSandbox[FaxControls]):
    controls_class = FaxControls
    handler_class = _Handler
    thread_name = "sandbox-fax"

    def __init__(self, port: int = 0, *, profile: str = "phaxio", api_key: str = "sandbox-key",
                 api_secret: str = "sandbox-secret", webhook_secret: str = "sandbox-webhook-secret",
                 **controls: Any) -> None:
        self.profile_name = profile
        self.profile = fax_profile(profile)
        self.api_key, self.api_secret, self.webhook_secret = api_key, api_secret, webhook_secret
        self._ids = itertools.count(70001)
        self._threads: list[threading.Thread] = []
        super().__init__(port, **controls)

    def _clear(self) -> None:
        self.sent: list[SentFax] = []
        self.callbacks: list[tuple[str, str, int | None]] = []  # (fax id, state, hub's answer)

    @property
    def url(self) -> str:
        return self.root

    def authorised(self, header: str) -> bool:
        if self.profile_name == "phaxio":
            expected = "Basic " + base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        else:
            expected = f"Bearer {self.api_key}"
        return hmac.compare_digest(header.encode(), expected.encode())

    def record(self, fields: dict[str, str], files: list[bytes]) -> SentFax | None:
        number_field, _, callback_field = _FIELDS[self.profile_name]
        to = fields.get(number_field)
        if not to or not files:
            return None
        with self._lock:
            controls = self._controls
            fail = to in controls.fail_numbers or controls.fail_next > 0
            if controls.fail_next > 0:
                self._controls = controls.updated({"fail_next": controls.fail_next - 1})
            sent = SentFax(str(next(self._ids)), to, tuple(files), fields.get(callback_field), dict(fields))
            self.sent.append(sent)
            self._lock.notify_all()
        if controls.auto_callback and sent.callback_url:
            state = "failed" if fail else "delivered"
            thread = threading.Thread(target=self._callback_later, args=(sent, state, controls), daemon=True)
            self._threads.append(thread)
            thread.start()
        return sent

    def _callback_later(self, sent: SentFax, state: str, controls: FaxControls) -> None:
        if self._stopping.wait(controls.callback_delay):
            return
        self.send_status(sent.fax_id, state, pages=_pages(sent), vendor_code=controls.fail_code)

    def status_webhook(self, fax_id: str, state: str, *, url: str, pages: int | None = None,
                       vendor_code: str | None = None) -> SignedWebhook:
        failed = state == "failed"
        status = FaxStatus(fax_id=fax_id, state=state, event_id=f"evt-{fax_id}-{state}",  # type: ignore[arg-type]
                           pages=pages, reason="lineError" if failed else None,
                           vendor_code=vendor_code if failed else None)
        return self.profile.status_webhook(self.webhook_secret, url, status)

    def send_status(self, fax_id: str, state: str, *, pages: int | None = None,
                    vendor_code: str | None = None, url: str | None = None) -> int | None:
        """POST the signed status webhook of a fax (to its callback URL); the hub's HTTP status."""
        target = url or next((s.callback_url for s in self.sent if s.fax_id == fax_id), None)
        if target is None:
            raise ValueError("no callback URL for this fax")
        webhook = self.status_webhook(fax_id, state, url=target, pages=pages, vendor_code=vendor_code)
        answer = _post(target, webhook)
        with self._lock:
            self.callbacks.append((fax_id, state, answer))
            self._lock.notify_all()
        return answer

    def receive_webhook(self, url: str, pdf: bytes, *, sender: str, recipient: str,
                        fax_id: str | None = None) -> SignedWebhook:
        fax_id = fax_id or str(next(self._ids))
        fax = ReceivedFax(fax_id=fax_id, event_id=f"evt-{fax_id}-received", content=pdf, sender=sender,
                          recipient=recipient, pages=1)
        return self.profile.receive_webhook(self.webhook_secret, url, fax)

    def inject_inbound(self, url: str, pdf: bytes, *, sender: str, recipient: str,
                       fax_id: str | None = None) -> int | None:
        """POST a signed receive webhook carrying ``pdf`` to ``url``; the hub's HTTP status."""
        return _post(url, self.receive_webhook(url, pdf, sender=sender, recipient=recipient, fax_id=fax_id))

    def signed_scan(self, sent: SentFax, **scan: Any) -> bytes:
        """The pages of ``sent`` after its cover sheet, signed and scanned (``scan``: the options of
        :func:`sandboxes.scans.scanned_pdf`): what the referring office faxes back."""
        return scanned_pdf(page_range(sent.files[0], 1), **scan)

    def return_signed(self, sent: SentFax, *, recipient: str, url: str | None = None,
                      fax_id: str | None = None, **scan: Any) -> tuple[int | None, bytes]:
        """Fax back the signed scan of ``sent`` (:meth:`signed_scan`) from the number it was sent to,
        to the clinic's ``recipient`` number: a signed receive webhook POSTed to ``url`` (else the
        send's callback URL). Returns (the hub's HTTP status, the scanned PDF)."""
        target = url or sent.callback_url
        if target is None:
            raise ValueError("no URL to deliver the received fax to")
        pdf = self.signed_scan(sent, **scan)
        return self.inject_inbound(target, pdf, sender=sent.to, recipient=recipient, fax_id=fax_id), pdf

    def wait_for_sends(self, count: int, timeout: float = 5.0) -> bool:
        return self._wait_until(lambda: len(self.sent) >= count, timeout)

    def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> bool:
        return self._wait_until(lambda: len(self.callbacks) >= count, timeout)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"profile": self.profile_name, "sent": [s.fax_id for s in self.sent],
                    "callbacks": [list(c) for c in self.callbacks], "controls": self._controls.to_json()}

    def stop(self) -> None:
        super().stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()


def _pages(sent: SentFax) -> int:
    try:
        return sum(page_count(f) for f in sent.files)
    except ConnectorError:
        return 0


def _post(url: str, webhook: SignedWebhook) -> int | None:
    try:
        with httpx.Client(timeout=10, trust_env=False) as client:
            response = client.post(url, content=webhook.body,
                                   headers={"Content-Type": webhook.content_type, **webhook.headers})
            return response.status_code
    except httpx.HTTPError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.fax", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--profile", choices=sorted(_PATHS), default="phaxio")
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument("--api-secret", default="sandbox-secret")
    parser.add_argument("--webhook-secret", default="sandbox-webhook-secret")
    add_misbehaviour_arguments(parser)
    args = parser.parse_args(argv)
    server = SandboxFaxServer(args.port, profile=args.profile, api_key=args.api_key, api_secret=args.api_secret,
                              webhook_secret=args.webhook_secret, **misbehaviour_options(args))
    return serve_until_signalled(server, farewell=lambda: f"sent {len(server.sent)} faxes")


if __name__ == "__main__":
    raise SystemExit(main())
