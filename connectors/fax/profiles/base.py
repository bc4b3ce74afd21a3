"""What a fax vendor profile provides: the send request, its answer, and the signed webhooks.

A profile is stateless and does no I/O: the connector sends what :meth:`FaxProfile.send_request`
describes; the hub's inbound endpoint hands the raw webhook to :meth:`FaxProfile.verify` and
:meth:`FaxProfile.parse_webhook`; the sandbox builds webhooks with :meth:`FaxProfile.status_webhook`
and :meth:`FaxProfile.receive_webhook` and signs them like the vendor does.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectors.fax.model import FaxEvent, FaxStatus, OutboundFax, ReceivedFax

__all__ = ["Credentials", "FaxProfile", "FormData", "SendRequest", "SignedWebhook", "WebhookRefused",
           "parse_multipart"]


class WebhookRefused(ValueError):
    """A webhook body that is not what the vendor sends (unparseable, missing fields)."""


@dataclass(frozen=True)
class Credentials:
    api_key: str = field(repr=False)
    api_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SendRequest:
    """An HTTP request for ``httpx``: ``data`` form fields and ``files`` (field, (name, bytes, type))."""

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)
    data: dict[str, str] = field(repr=False)
    files: list[tuple[str, tuple[str, bytes, str]]] = field(repr=False)


@dataclass(frozen=True)
class SignedWebhook:
    """A webhook as the vendor would POST it: body, content type and signature headers."""

    body: bytes = field(repr=False)
    content_type: str
    headers: dict[str, str]


@dataclass(frozen=True)
class FormData:
    fields: dict[str, str] = field(repr=False)
    files: dict[str, tuple[str, bytes]] = field(repr=False)  # field -> (file name, bytes)


def parse_multipart(body: bytes, content_type: str) -> FormData:
    """Fields and files of a ``multipart/form-data`` body (stdlib ``email`` parser, no I/O)."""
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise WebhookRefused("not a multipart body")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, data)
        else:
            fields[name] = data.decode(part.get_content_charset() or "utf-8", "replace")
    return FormData(fields, files)


class FaxProfile(Protocol):
    name: str

    def send_request(self, base_url: str, fax: OutboundFax, credentials: Credentials) -> SendRequest: ...

    def fax_id(self, body: bytes) -> str | None:
        """The vendor's fax id from a successful send answer (None when it has none)."""
        ...

    def verify(self, secret: str, url: str, body: bytes, headers: dict[str, str]) -> bool:
        """Whether the webhook is signed with ``secret`` (``headers`` with lower-case names)."""
        ...

    def parse_webhook(self, body: bytes, headers: dict[str, str]) -> FaxEvent:
        """The event a verified webhook reports; raises :class:`WebhookRefused`."""
        ...

    def status_webhook(self, secret: str, url: str, status: FaxStatus, *, extra: dict[str, Any] | None = None
                       ) -> SignedWebhook: ...

    def receive_webhook(self, secret: str, url: str, fax: ReceivedFax) -> SignedWebhook: ...
