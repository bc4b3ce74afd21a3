"""Home exercise program vendors: push a plan's exercises as a program, verify the vendor's webhooks.

See :mod:`connectors.hep.connector` for what a send does and :mod:`connectors.hep.signature` for
the webhook signature scheme; the sandbox vendor is :mod:`sandboxes.hep`.
"""

from connectors.hep.connector import ACCESS_LINK_REL, HepConfig, HepConnector
from connectors.hep.signature import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    BadSignature,
    MalformedSignature,
    SignatureError,
    StaleSignature,
    signature_header,
    verify_webhook,
)

__all__ = [
    "ACCESS_LINK_REL",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "BadSignature",
    "HepConfig",
    "HepConnector",
    "MalformedSignature",
    "SignatureError",
    "StaleSignature",
    "signature_header",
    "verify_webhook",
]
