"""Phaxio API v2.1.

Send: ``POST {base}/faxes`` (``multipart/form-data``: ``to``, ``file``, ``callback_url``,
``tag[hub_reference]``), HTTP Basic with the API key and secret; the answer is
``{"success": true, "data": {"id": 1234}}``.

Webhooks (``multipart/form-data``): ``success`` ("true"/"false"), ``is_test``, ``direction``
("sent"/"received"), ``event_type`` (``fax_completed`` for a fax we sent, ``fax_received`` for one
that arrived), ``fax`` (JSON: ``id``, ``num_pages``, ``status``, ``from_number``, ``to_number``,
``recipients`` with ``error_code``/``error_type``/``error_message``) and, for a received fax, the
PDF as the ``file`` part.

Signature: ``X-Phaxio-Signature`` = hex HMAC-SHA1, keyed with the account's callback (webhook)
token, of the callback URL followed by every POST field name and value sorted by name, followed by
every file's field name and the hex SHA-1 of its content, sorted by field name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from connectors.fax.model import FaxEvent, FaxState, FaxStatus, OutboundFax, ReceivedFax
from connectors.fax.profiles.base import (
    Credentials,
    SendRequest,
    SignedWebhook,
    WebhookRefused,
    parse_multipart,
)

__all__ = ["SIGNATURE_HEADER", "PhaxioProfile", "phaxio_signature"]

SIGNATURE_HEADER = "X-Phaxio-Signature"
_STATES: dict[str, FaxState] = {"queued": "queued", "pendingbatch": "queued", "inprogress": "sending",
                                "success": "delivered", "failure": "failed", "partialsuccess": "failed"}
_BOUNDARY = "phaxio-webhook-boundary-7f3a"


def phaxio_signature(token: str, url: str, fields: dict[str, str], files: dict[str, bytes]) -> str:
    material = url + "".join(name + fields[name] for name in sorted(fields))
    material += "".join(name + hashlib.sha1(files[name], usedforsecurity=False).hexdigest() for name in sorted(files))
    return hmac.new(token.encode("utf-8"), material.encode("utf-8"), hashlib.sha1).hexdigest()


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> bytes:
    out = bytearray()
    for name, value in fields.items():
        out += (f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n').encode()
        out += value.encode("utf-8") + b"\r\n"
    for name, (filename, content) in files.items():
        out += (f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/pdf\r\n\r\n").encode()
        out += content + b"\r\n"
    out += f"--{_BOUNDARY}--\r\n".encode()
    return bytes(out)


class PhaxioProfile:
    name = "phaxio"

    def send_request(self, base_url: str, fax: OutboundFax, credentials: Credentials) -> SendRequest:
        token = base64.b64encode(f"{credentials.api_key}:{credentials.api_secret or ''}".encode()).decode()
        data = {"to": fax.to}
        if fax.callback_url:
            data["callback_url"] = fax.callback_url
        if fax.reference:
            data["tag[hub_reference]"] = fax.reference
        files = [("file", (f.name, f.content, f.content_type)) for f in fax.files]
        return SendRequest("POST", base_url.rstrip("/") + "/faxes", {"Authorization": f"Basic {token}"},
                           data, files)

    def fax_id(self, body: bytes) -> str | None:
        try:
            answer = json.loads(body)
        except ValueError:
            return None
        data = answer.get("data") if isinstance(answer, dict) else None
        value = data.get("id") if isinstance(data, dict) else None
        return str(value) if isinstance(value, int | str) and not isinstance(value, bool) else None

    def verify(self, secret: str, url: str, body: bytes, headers: dict[str, str]) -> bool:
        given = headers.get(SIGNATURE_HEADER.lower(), "")
        try:
            form = parse_multipart(body, headers.get("content-type", ""))
            fields, files = form.fields, {k: v[1] for k, v in form.files.items()}
        except (WebhookRefused, ValueError):
            fields, files = {}, {}
        expected = phaxio_signature(secret, url, fields, files)
        return bool(given) and hmac.compare_digest(expected, given.strip().lower())

    def parse_webhook(self, body: bytes, headers: dict[str, str]) -> FaxEvent:
        form = parse_multipart(body, headers.get("content-type", ""))
        try:
            fax = json.loads(form.fields["fax"])
            fax_id = str(fax["id"]) if isinstance(fax, dict) else ""
        except (KeyError, ValueError, TypeError):
            fax_id = ""
        if not fax_id:
            raise WebhookRefused("Phaxio webhook without a fax object")
        event_type = form.fields.get("event_type", "")
        pages = fax.get("num_pages") if isinstance(fax.get("num_pages"), int) else None
        if event_type == "fax_received" or form.fields.get("direction") == "received":
            if "file" not in form.files:
                raise WebhookRefused("Phaxio receive webhook without a file")
            return ReceivedFax(fax_id=fax_id, event_id=f"{fax_id}:received", content=form.files["file"][1],
                               sender=fax.get("from_number"), recipient=fax.get("to_number"), pages=pages)
        status = str(fax.get("status", ""))
        state = _STATES.get(status)
        if state is None:
            state = "delivered" if form.fields.get("success") == "true" else "failed"
        reason = code = None
        if state == "failed":
            recipients = fax.get("recipients")
            first = recipients[0] if isinstance(recipients, list) and recipients else {}
            first = first if isinstance(first, dict) else {}
            reason = str(first.get("error_type") or "fax failed")[:64]
            code = str(first["error_code"])[:32] if first.get("error_code") is not None else None
        return FaxStatus(fax_id=fax_id, state=state, event_id=f"{fax_id}:{event_type}:{status}", pages=pages,
                         reason=reason, vendor_code=code)

    # ------------------------------------------------------------------ building (sandbox)

    def _signed(self, secret: str, url: str, fields: dict[str, str],
                files: dict[str, tuple[str, bytes]]) -> SignedWebhook:
        signature = phaxio_signature(secret, url, fields, {k: v[1] for k, v in files.items()})
        return SignedWebhook(_multipart(fields, files), f"multipart/form-data; boundary={_BOUNDARY}",
                             {SIGNATURE_HEADER: signature})

    def status_webhook(self, secret: str, url: str, status: FaxStatus, *,
                       extra: dict[str, Any] | None = None) -> SignedWebhook:
        vendor = {"delivered": "success", "failed": "failure", "queued": "queued", "sending": "inprogress"}
        fax: dict[str, Any] = {"id": int(status.fax_id) if status.fax_id.isdigit() else status.fax_id,
                               "direction": "sent", "num_pages": status.pages or 0,
                               "status": vendor[status.state], **(extra or {})}
        if status.state == "failed":
            fax["recipients"] = [{"status": "failure", "error_type": status.reason or "generalError",
                                  "error_code": status.vendor_code, "error_message": "Fax failed"}]
        fields = {"success": "true" if status.state == "delivered" else "false", "is_test": "true",
                  "direction": "sent", "event_type": "fax_completed", "fax": json.dumps(fax)}
        return self._signed(secret, url, fields, {})

    def receive_webhook(self, secret: str, url: str, fax: ReceivedFax) -> SignedWebhook:
        described = {"id": int(fax.fax_id) if fax.fax_id.isdigit() else fax.fax_id, "direction": "received",
                     "num_pages": fax.pages or 1, "status": "success", "from_number": fax.sender,
                     "to_number": fax.recipient}
        fields = {"success": "true", "is_test": "true", "direction": "received", "event_type": "fax_received",
                  "fax": json.dumps(described)}
        return self._signed(secret, url, fields, {"file": ("fax.pdf", fax.content)})
