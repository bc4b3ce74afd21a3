"""Signed JSON webhooks to a partner URL, and a sandbox receiver (:mod:`sandboxes.webhook`).

See :mod:`connectors.webhook.connector` for the request format and outcome rules and
:mod:`connectors.webhook.signing` for the signature scheme receivers verify.
"""

from connectors.webhook.connector import WebhookConfig, WebhookConnector
from connectors.webhook.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signature_header,
    verify_signature,
)

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookConfig",
    "WebhookConnector",
    "sign",
    "signature_header",
    "verify_signature",
]
