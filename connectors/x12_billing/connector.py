"""The clearinghouse connector: 837P claim files out, 999/277CA/835 response files in, over SFTP or HTTPS.

Operations (a sync facade; both transports implement :class:`~connectors.x12_billing.model.ClaimTransport`)::

    submit(filename, content, idempotency_key) -> SubmitReceipt     atomic upload, retry-safe name
    poll_responses() -> list[RemoteFile]                            the response files waiting
    acknowledge(remote_file) -> None                                after the hub stored it

A crash between ``poll_responses`` and ``acknowledge`` downloads the file again on the next poll: the
hub must dedupe on the file's name (and content digest), never lose it. The method is not called
``poll``: the hub's poller treats any connector with ``poll`` as a FHIR feed (``Poller``), and response
files are X12 for the billing service, not FHIR resources.

As a :class:`~connectors.base.Sender`: a delivery whose ``content_type`` is
:data:`X12_CONTENT_TYPE` (``application/edi-x12``) and whose payload is an X12 interchange is
submitted as ``<event>.x12`` with the delivery's idempotency key; ``SendResult.remote_id`` is the
remote file name. Any other delivery (a FHIR resource) is refused as a ``PermanentError``.

Errors: see :mod:`connectors.x12_billing.sftp` and :mod:`connectors.x12_billing.https`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.base import (
    ConfigError,
    ConnectorError,
    Delivery,
    HealthResult,
    PermanentError,
    SendResult,
    validate_config,
)
from connectors.httputil import ms_since
from connectors.x12_billing.config import X12BillingConfig
from connectors.x12_billing.https import X12_CONTENT_TYPE, HttpsTransport
from connectors.x12_billing.model import ClaimTransport, RemoteFile, SubmitReceipt
from connectors.x12_billing.sftp import SftpTransport

__all__ = ["X12BillingConnector"]

_EVENT_NAME = re.compile(r"[^A-Za-z0-9]+")


class X12BillingConnector:
    """Claim files to one clearinghouse account. ``close()`` ends the transport's loop or pool."""

    slug: ClassVar[str] = "x12_billing"
    Config: ClassVar[type[BaseModel]] = X12BillingConfig

    def __init__(self, config: X12BillingConfig | Mapping[str, Any]) -> None:
        self.config = validate_config(X12BillingConfig, config, connector=self.slug)
        c = self.config
        self.transport: ClaimTransport
        if c.sftp is not None and c.transport == "sftp":
            self.transport = SftpTransport(c.sftp, timeout=c.timeout_seconds, connect_timeout=c.connect_timeout_seconds,
                                           max_bytes=c.max_response_bytes)
        elif c.https is not None:
            self.transport = HttpsTransport(c.https, timeout=c.timeout_seconds,
                                            connect_timeout=c.connect_timeout_seconds, max_bytes=c.max_response_bytes)
        else:  # pragma: no cover - the config's validator requires the section of its transport
            raise ConfigError("invalid x12_billing config: no section for the transport", fields=["transport"])

    def __repr__(self) -> str:
        return f"X12BillingConnector(transport={self.config.transport!r})"

    # -------------------------------------------------------------------- clearinghouse

    def submit(self, filename: str, content: bytes, idempotency_key: str) -> SubmitReceipt:
        if not content.lstrip().startswith(b"ISA"):
            raise PermanentError("x12_billing: the claim file is not an X12 interchange (no ISA header)")
        return self.transport.submit(filename, content, idempotency_key)

    def poll_responses(self) -> list[RemoteFile]:
        return self.transport.poll_responses()

    def acknowledge(self, remote_file: RemoteFile) -> None:
        self.transport.acknowledge(remote_file)

    # --------------------------------------------------------------------------- Sender

    def send(self, delivery: Delivery) -> SendResult:
        if delivery.content_type != X12_CONTENT_TYPE:
            raise PermanentError(f"x12_billing: sends claim files ({X12_CONTENT_TYPE}) only, "
                                 f"not {delivery.content_type}")
        filename = (_EVENT_NAME.sub("_", delivery.event).strip("_") or "claims") + ".x12"
        receipt = self.submit(filename, delivery.payload, delivery.idempotency_key)
        detail = f"x12_billing {receipt.transport}: claim file of {receipt.size} bytes submitted"
        if receipt.duplicate:
            detail += " (the clearinghouse had it already)"
        return SendResult(status=receipt.status, remote_id=receipt.remote_name, detail=detail,
                          duration_ms=receipt.duration_ms)

    # -------------------------------------------------------------------- HealthChecker

    def health(self) -> HealthResult:
        started = time.perf_counter()
        try:
            detail = self.transport.probe()
        except ConnectorError as exc:
            return HealthResult(ok=False, detail=exc.message, duration_ms=ms_since(started))
        return HealthResult(ok=True, detail=detail, duration_ms=ms_since(started))

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> X12BillingConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
