"""The vendor-neutral fax model: what a fax connector sends and what a fax vendor reports back.

A vendor profile (:mod:`connectors.fax.profiles`) turns these into one vendor's HTTP shapes and back:

* :class:`OutboundFax` - one fax to send: recipient number, the PDF files in order, a callback URL;
* :class:`FaxStatus` - a status report about a fax we sent (``queued`` -> ``sending`` ->
  ``delivered`` | ``failed`` with a reason and the vendor's error code), with its page count;
* :class:`ReceivedFax` - a fax that arrived at the clinic's number (sender, recipient, PDF bytes).

Every value that may hold PHI (numbers, file content) stays out of ``repr``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FAX_STATES", "FaxEvent", "FaxFile", "FaxState", "FaxStatus", "OutboundFax", "ReceivedFax",
           "valid_fax_number"]

FaxState = Literal["queued", "sending", "delivered", "failed"]
FAX_STATES: tuple[FaxState, ...] = ("queued", "sending", "delivered", "failed")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def valid_fax_number(value: str) -> bool:
    """An E.164 number (``+`` and 7-15 digits)."""
    return _E164.fullmatch(value) is not None


@dataclass(frozen=True)
class FaxFile:
    name: str
    content: bytes = field(repr=False)
    content_type: str = "application/pdf"


@dataclass(frozen=True)
class OutboundFax:
    to: str = field(repr=False)
    files: tuple[FaxFile, ...]
    callback_url: str | None = field(default=None, repr=False)
    #: our id of the fax (the delivery's idempotency key), kept as a vendor tag where possible
    reference: str | None = None

    def __post_init__(self) -> None:
        if not valid_fax_number(self.to):
            raise ValueError("OutboundFax.to must be an E.164 fax number")
        if not self.files:
            raise ValueError("OutboundFax.files must hold at least one file")


@dataclass(frozen=True)
class FaxStatus:
    """A vendor's report about a fax we sent. ``event_id`` dedupes repeated webhooks."""

    fax_id: str
    state: FaxState
    event_id: str
    pages: int | None = None
    reason: str | None = None  # short, coded vendor text; never the fax content
    vendor_code: str | None = None

    def __post_init__(self) -> None:
        if self.state not in FAX_STATES:
            raise ValueError("FaxStatus.state must be one of " + ", ".join(FAX_STATES))


@dataclass(frozen=True)
class ReceivedFax:
    fax_id: str
    event_id: str
    content: bytes = field(repr=False)
    sender: str | None = field(default=None, repr=False)
    recipient: str | None = field(default=None, repr=False)
    pages: int | None = None
    content_type: str = "application/pdf"


FaxEvent = FaxStatus | ReceivedFax
