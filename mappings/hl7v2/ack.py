"""The message header (MSH) and acknowledgements: ACK builders (original and enhanced mode) and
the reading of an ACK that a partner sent back.

Original mode (MSH-15 and MSH-16 empty): one application acknowledgement, ``AA`` accepted, ``AE``
error (content), ``AR`` rejected (unsupported type/version/processing id, internal error).

Enhanced mode (MSH-15 or MSH-16 valued): the answer on the connection is the accept (commit)
acknowledgement ``CA``/``CE``/``CR``, sent only when MSH-15 asks for it (``AL`` always, ``ER`` on an
error, ``SU`` on success, ``NE`` never; empty means always). MSH-16 says the same of the later
application acknowledgement, which :func:`application_ack_wanted` tells the caller.

Every ERR segment holds ERR-2 the location (segment^sequence^field^repetition^component^
subcomponent), ERR-3 the HL7 error code (table 0357), ERR-4 the severity and ERR-8 a message for
the user; none of them quotes the message's content. An ``AA`` may carry ERR segments of severity
``W`` (HL7 table 0516): what the hub kept although it did not expect it there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mappings.hl7v2 import tables
from mappings.hl7v2.datatypes import parse_dtm, v2_dtm
from mappings.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    Hl7Error,
    at,
)
from mappings.hl7v2.structures import DEFAULT_STRUCTURE, MAX_WARNINGS
from mappings.hl7v2.syntax import DEFAULT_SEPARATORS, Separators, V2Message, Writer

__all__ = [
    "AckResult",
    "Header",
    "accept_ack_wanted",
    "application_ack_wanted",
    "build_ack",
    "check_supported",
    "is_enhanced",
    "read_ack",
    "read_header",
]

ACK_CONDITIONS = frozenset({"AL", "NE", "ER", "SU", ""})


@dataclass(frozen=True, slots=True)
class Header:
    """What the MSH says (unescaped). ``structure`` defaults from type^event when MSH-9.3 is empty."""

    separators: Separators
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    timestamp: datetime | None
    message_code: str
    trigger_event: str
    structure: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str = ""
    application_ack_type: str = ""
    charset: str = ""

    @property
    def message_type(self) -> str:
        return f"{self.message_code}^{self.trigger_event}"


def read_header(message: V2Message, *, required: bool = True) -> Header:
    """The header of ``message``; with ``required``, 101/102/103 for missing or malformed fields."""
    msh = message.msh
    timestamp = None
    stamp = msh.get(7)
    if stamp:
        try:
            timestamp = parse_dtm(stamp)[0]
        except ValueError:
            if required:
                raise Hl7Error(DATA_TYPE_ERROR, "invalid date/time of message", at("MSH", 1, 7)) from None
    code, trigger, structure = msh.get(9, 1, 1).upper(), msh.get(9, 1, 2).upper(), msh.get(9, 1, 3).upper()
    header = Header(
        separators=message.separators,
        sending_application=msh.get(3),
        sending_facility=msh.get(4),
        receiving_application=msh.get(5),
        receiving_facility=msh.get(6),
        timestamp=timestamp,
        message_code=code,
        trigger_event=trigger,
        structure=structure or DEFAULT_STRUCTURE.get(f"{code}^{trigger}", ""),
        control_id=msh.get(10),
        processing_id=msh.get(11, 1, 1).upper(),
        version=msh.get(12, 1, 1),
        accept_ack_type=msh.get(15).upper(),
        application_ack_type=msh.get(16).upper(),
        charset=msh.get(18),
    )
    if required:
        for position, value in (
            (7, stamp),
            (9, code),
            (10, header.control_id),
            (11, header.processing_id),
            (12, header.version),
        ):
            if not value:
                raise Hl7Error(REQUIRED_FIELD_MISSING, f"MSH-{position} is required", at("MSH", 1, position))
        if not trigger and code != "ACK":
            raise Hl7Error(
                REQUIRED_FIELD_MISSING, "MSH-9.2 (trigger event) is required", at("MSH", 1, 9, 1, 2)
            )
        for position, value in ((15, header.accept_ack_type), (16, header.application_ack_type)):
            if value not in ACK_CONDITIONS:
                raise Hl7Error(
                    TABLE_VALUE_NOT_FOUND,
                    f"MSH-{position} is not an acknowledgment condition (table 0155)",
                    at("MSH", 1, position),
                )
    return header


def check_supported(header: Header) -> None:
    """200/201/202/203 (answered AR) for what the hub does not take at all."""
    if header.version not in tables.SUPPORTED_VERSIONS:
        raise Hl7Error(
            UNSUPPORTED_VERSION_ID, "unsupported HL7 version (the hub takes 2.5.1)", at("MSH", 1, 12)
        )
    if header.processing_id not in tables.PROCESSING_IDS:
        raise Hl7Error(UNSUPPORTED_PROCESSING_ID, "unsupported processing id", at("MSH", 1, 11))
    events = tables.SUPPORTED_MESSAGES.get(header.message_code)
    if events is None:
        raise Hl7Error(UNSUPPORTED_MESSAGE_TYPE, "unsupported message type", at("MSH", 1, 9, 1, 1))
    if header.trigger_event not in events:
        raise Hl7Error(
            UNSUPPORTED_EVENT_CODE, "unsupported trigger event for this message type", at("MSH", 1, 9, 1, 2)
        )


# ------------------------------------------------------------------------------------------ modes


def is_enhanced(header: Header | None) -> bool:
    return bool(header and (header.accept_ack_type or header.application_ack_type))


def _wanted(condition: str, ok: bool) -> bool:
    return condition in ("", "AL") or (condition == "ER" and not ok) or (condition == "SU" and ok)


def accept_ack_wanted(header: Header, ok: bool) -> bool:
    """Enhanced mode: does MSH-15 ask for the accept acknowledgement of this outcome?"""
    return _wanted(header.accept_ack_type, ok)


def application_ack_wanted(header: Header, ok: bool) -> bool:
    """Does MSH-16 ask for an application acknowledgement of this outcome (original mode: always)?"""
    if not is_enhanced(header):
        return True
    return _wanted(header.application_ack_type, ok) if header.application_ack_type else False


# ---------------------------------------------------------------------------------------- builders


def build_ack(
    header: Header | None,
    code: str,
    *,
    control_id: str,
    now: datetime,
    error: Hl7Error | None = None,
    sending_application: str = "THERAPY_HUB",
    sending_facility: str = "",
    accept_ack_type: str = "",
    application_ack_type: str = "",
    warnings: Sequence[Hl7Error] = (),
) -> str:
    """An ACK (``code``: AA/AE/AR or, enhanced mode, CA/CE/CR) answering ``header`` (None when the
    message had no readable header). ``control_id`` is the ACK's own MSH-10; ``now`` naive UTC.
    ``accept_ack_type`` / ``application_ack_type`` (MSH-15/16) are for an application ACK sent on its
    own connection in enhanced mode, which asks the partner to confirm it (``AL``, ``NE``).
    ``warnings`` (severity W: what was kept although out of place) follow as ERR segments of their own,
    after the error if there is one; at most :data:`~mappings.hl7v2.structures.MAX_WARNINGS`."""
    seps = header.separators if header else DEFAULT_SEPARATORS
    writer = Writer(seps)
    trigger = header.trigger_event if header else ""
    version = header.version if header and header.version in tables.SUPPORTED_VERSIONS else tables.VERSION
    writer.segment(
        "MSH",
        sending_application,
        sending_facility or (header.receiving_facility if header else ""),
        header.sending_application if header else "",
        header.sending_facility if header else "",
        v2_dtm(now),
        "",
        ["ACK", trigger, "ACK"],
        control_id,
        (header.processing_id if header and header.processing_id in tables.PROCESSING_IDS else "P"),
        version,
        "",
        "",
        accept_ack_type,
        application_ack_type,
        "",
        "UNICODE UTF-8",
    )
    text = error.name if error else ""
    writer.segment("MSA", code, header.control_id if header else "", text)
    for problem in ([error] if error is not None else []) + list(warnings[:MAX_WARNINGS]):
        location = problem.location.components() if problem.location else []
        writer.segment(
            "ERR",
            "",
            location,
            [str(problem.code), problem.name, "HL70357"],
            problem.severity,
            "",
            "",
            "",
            problem.text,
        )
    return writer.text()


# ---------------------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class AckResult:
    """An acknowledgement received: MSA-1 code, MSA-2 control id acknowledged, the first ERR."""

    code: str
    acknowledged_control_id: str
    error_code: str = ""
    error_text: str = ""
    error_location: str = ""

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")

    def describe(self) -> str:
        """Short and PHI-free as far as the partner keeps its ERR text so: code, location, text."""
        parts = [self.code]
        if self.error_code:
            parts.append(f"HL7 {self.error_code}")
        if self.error_location:
            parts.append(f"at {self.error_location}")
        if self.error_text:
            parts.append(self.error_text[:200])
        return " ".join(parts)


def read_ack(message: V2Message) -> AckResult:
    """The outcome an ACK reports (any message with an MSA is accepted: RRI, OSU... may carry one)."""
    msa = message.first("MSA")
    if msa is None:
        raise Hl7Error(REQUIRED_FIELD_MISSING, "the acknowledgement has no MSA segment", at("MSA"))
    code = msa.get(1).upper()
    if code not in ("AA", "AE", "AR", "CA", "CE", "CR"):
        raise Hl7Error(TABLE_VALUE_NOT_FOUND, "MSA-1 is not an acknowledgment code", msa.loc(1))
    err = message.first("ERR")
    if err is None:
        return AckResult(code, msa.get(2), error_text=msa.get(3))
    location = "^".join(c for c in err.components(2) if c) or err.get(1)
    text = err.get(8) or err.get(3, 1, 2) or err.get(7) or msa.get(3)
    return AckResult(code, msa.get(2), err.get(3, 1, 1), text, location)
