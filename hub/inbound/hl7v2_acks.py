"""The acknowledgements of the MLLP intake (:mod:`hub.inbound.hl7v2`) and the errors they carry.

What goes back on the connection (the application ACK in original mode, the accept ACK in enhanced
mode), the enhanced-mode application ACK sent to the sender's own listener through the outbox, the
``acknowledged`` event that keeps the answer sent (so a repeated control id gets the same answer),
and the ``AE``/``AR`` errors for a store that refuses the translated resources or cannot be written.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from hub.errors import HubError, NotFound, describe
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import Message
from hub.sync import events as ev
from hub.sync.inbox import Inbox
from hub.sync.outbox import Outbox
from hub.unit_of_work import unit_of_work
from mappings.hl7v2 import Header, Hl7Error, accept_ack_wanted, build_ack, is_enhanced
from mappings.hl7v2.errors import APPLICATION_INTERNAL_ERROR, ErrorLocation

__all__ = [
    "ACK_APPLICATION",
    "ACK_PREFIX",
    "ack_text",
    "earlier_answer",
    "internal_error",
    "new_control_id",
    "record_ack",
    "send_application_ack",
    "store_refused",
    "wire_answer",
]

#: MSH-3 of the hub's acknowledgements
ACK_APPLICATION = "THERAPY_HUB"
#: marks the ``acknowledged`` event whose detail is the acknowledgement sent (kept for repeats)
ACK_PREFIX = "MSH"


def new_control_id() -> str:
    return uuid.uuid4().hex[:20].upper()


def ack_text(
    header: Header | None,
    code: str,
    now: datetime,
    error: Hl7Error | None = None,
    warnings: list[Hl7Error] | None = None,
) -> str:
    return build_ack(
        header, code, control_id=new_control_id(), now=now, error=error, sending_application=ACK_APPLICATION,
        warnings=warnings or (),
    )


def internal_error(header: Header, now: datetime, text: str) -> bytes:
    error = Hl7Error(APPLICATION_INTERNAL_ERROR, text, ErrorLocation("MSH", 1, 10), ack="AR")
    code = "CE" if is_enhanced(header) else "AR"
    return ack_text(header, code, now, error).encode("utf-8")


def wire_answer(header: Header, ack_code: str, now: datetime, error: Hl7Error | None, text: str) -> bytes:
    """What goes back on the connection: the application ACK (original mode), else the accept ACK."""
    if not is_enhanced(header):
        return text.encode("utf-8")
    ok = ack_code == "AA"
    if not accept_ack_wanted(header, ok):
        return b""
    commit = "CR" if ack_code == "AR" else "CA"
    return ack_text(header, commit, now, error if commit == "CR" else None).encode("utf-8")


def send_application_ack(
    inbox: Inbox,
    outbox: Outbox,
    row: Message,
    header: Header,
    ack_code: str,
    error: Hl7Error | None,
    now: datetime,
    ack_connector: str | None,
    warnings: list[Hl7Error] | None = None,
) -> None:
    """Enhanced mode: the application ACK goes to the sender's listener as a message of its own,
    through the outbox (retried, visible, replayable). It asks for an accept ACK (MSH-15 ``AL``) so
    that the delivery knows it arrived, and for no application ACK of itself (MSH-16 ``NE``)."""
    if ack_connector is None:
        inbox.event(row, ev.DEFERRED, at=now,
                    detail="the sender asked for an application acknowledgement (MSH-16) and no back-channel "
                           "is configured (hub mllp --ack-connector)")
        return
    text = build_ack(header, ack_code, control_id=new_control_id(), now=now, error=error,
                     sending_application=ACK_APPLICATION, accept_ack_type="AL", application_ack_type="NE",
                     warnings=warnings or ())
    try:
        outbox.send_raw(connector=ack_connector, raw=text, event="hl7v2.ACK", reply_to=row, kind="hl7v2")
    except NotFound:
        inbox.event(row, ev.FAILED, at=now, detail="the application acknowledgement cannot be sent: "
                                                   f"no hl7v2 connector named {ack_connector!r}")


def store_refused(exc: HubError) -> Hl7Error:
    """The FHIR store refused the translated resources: an AE naming the FHIR element (no values)."""
    detail = describe(exc, limit=3)
    return Hl7Error(
        APPLICATION_INTERNAL_ERROR,
        f"the FHIR store refused the translated resources ({detail})",
        ErrorLocation("MSH"),
        ack="AE",
    )


def record_ack(inbox: Inbox, row: Message, text: str, now: datetime) -> None:
    """Keep the acknowledgement sent (no PHI: header fields, codes and locations only)."""
    inbox.event(row, ev.ACKNOWLEDGED, at=now, detail=text)
    inbox.session.flush()


def earlier_answer(settings: Settings, tenant: str, source: str, control_id: str) -> bytes | None:
    with unit_of_work(settings) as session:
        row = repo.message_by_external_id(session, tenant=tenant, source=source, external_id=control_id)
        if row is None:
            return None
        for event in reversed(repo.events_of(session, message_id=row.id)):
            if event.event == ev.ACKNOWLEDGED and (event.detail or "").startswith(ACK_PREFIX):
                return (event.detail or "").encode("utf-8")
    return None
