"""Documo-style REST fax API (JSON answers, bearer API key).

Send: ``POST {base}/v1/faxes`` (``multipart/form-data``: ``recipientFax``, ``attachments`` (one part
per file), ``callbackUrl``, ``tags``), ``Authorization: Bearer <api key>``; the answer is a JSON
object with ``messageId``.

Webhooks (``application/json``): ``{"messageId", "eventId", "direction": "outbound"|"inbound",
"status": "success"|"failed", "pagesCount", "resultCode", "resultInfo", "faxCallerId",
"faxNumber", "attachment" (base64 PDF, inbound only)}``.

Signature: ``X-Documo-Signature`` = hex HMAC-SHA256 of the raw body, keyed with the webhook secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from connectors.fax.model import FaxEvent, FaxStatus, OutboundFax, ReceivedFax
from connectors.fax.profiles.base import Credentials, SendRequest, SignedWebhook, WebhookRefused

__all__ = ["SIGNATURE_HEADER", "DocumoProfile"]

SIGNATURE_HEADER = "X-Documo-Signature"


def _sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class DocumoProfile:
    name = "documo"

    def send_request(self, base_url: str, fax: OutboundFax, credentials: Credentials) -> SendRequest:
        data = {"recipientFax": fax.to}
        if fax.callback_url:
            data["callbackUrl"] = fax.callback_url
        if fax.reference:
            data["tags"] = fax.reference
        files = [("attachments", (f.name, f.content, f.content_type)) for f in fax.files]
        return SendRequest("POST", base_url.rstrip("/") + "/v1/faxes",
                           {"Authorization": f"Bearer {credentials.api_key}"}, data, files)

    def fax_id(self, body: bytes) -> str | None:
        try:
            answer = json.loads(body)
        except ValueError:
            return None
        value = answer.get("messageId") if isinstance(answer, dict) else None
        return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None

    def verify(self, secret: str, url: str, body: bytes, headers: dict[str, str]) -> bool:
        given = headers.get(SIGNATURE_HEADER.lower(), "")
        return bool(given) & hmac.compare_digest(_sign(secret, body), given.strip().lower())

    def parse_webhook(self, body: bytes, headers: dict[str, str]) -> FaxEvent:
        try:
            event = json.loads(body)
            fax_id = str(event["messageId"])
        except (KeyError, ValueError, TypeError):
            raise WebhookRefused("Documo webhook without a messageId") from None
        pages = event.get("pagesCount") if isinstance(event.get("pagesCount"), int) else None
        event_id = str(event.get("eventId") or f"{fax_id}:{event.get('direction')}:{event.get('status')}")
        if event.get("direction") == "inbound":
            try:
                content = base64.b64decode(event["attachment"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                raise WebhookRefused("Documo inbound webhook without an attachment") from None
            return ReceivedFax(fax_id=fax_id, event_id=event_id, content=content, sender=event.get("faxCallerId"),
                               recipient=event.get("faxNumber"), pages=pages)
        status = event.get("status")
        if status not in ("success", "failed"):
            raise WebhookRefused("Documo webhook with an unknown status")
        failed = status == "failed"
        code = event.get("resultCode")
        return FaxStatus(fax_id=fax_id, state="failed" if failed else "delivered", event_id=event_id, pages=pages,
                         reason=str(event.get("resultInfo") or "fax failed")[:64] if failed else None,
                         vendor_code=str(code)[:32] if failed and code is not None else None)

    def _signed(self, secret: str, event: dict[str, Any]) -> SignedWebhook:
        body = json.dumps(event).encode()
        return SignedWebhook(body, "application/json", {SIGNATURE_HEADER: _sign(secret, body)})

    def status_webhook(self, secret: str, url: str, status: FaxStatus, *,
                       extra: dict[str, Any] | None = None) -> SignedWebhook:
        event = {"messageId": status.fax_id, "eventId": status.event_id, "direction": "outbound",
                 "status": "success" if status.state == "delivered" else "failed",
                 "pagesCount": status.pages or 0, "resultCode": status.vendor_code or "0",
                 "resultInfo": status.reason or "OK", **(extra or {})}
        return self._signed(secret, event)

    def receive_webhook(self, secret: str, url: str, fax: ReceivedFax) -> SignedWebhook:
        event = {"messageId": fax.fax_id, "eventId": fax.event_id, "direction": "inbound", "status": "success",
                 "pagesCount": fax.pages or 1, "faxCallerId": fax.sender, "faxNumber": fax.recipient,
                 "attachment": base64.b64encode(fax.content).decode("ascii")}
        return self._signed(secret, event)
