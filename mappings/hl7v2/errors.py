"""HL7 v2 errors: one exception carrying an HL7 error code (table 0357) and an error location (ERL).

:class:`Hl7Error` is what every function of :mod:`mappings.hl7v2` raises for a message it cannot
read or translate. ``str(error)`` names the code, the location (segment^sequence^field^...) and a
fixed description of the problem; it never quotes the message's content (which is PHI), so it is
safe to log, to store as a rejection reason and to send back in an ACK's ERR segment.

Which acknowledgement code follows (original mode): header problems the receiver cannot handle at all
(unsupported message type, event, processing id or version) and internal errors are rejections
(``AR``); problems with the content of a message it understands are errors (``AE``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "APPLICATION_INTERNAL_ERROR",
    "DATA_TYPE_ERROR",
    "DUPLICATE_KEY",
    "ERROR_NAMES",
    "ErrorLocation",
    "Hl7Error",
    "REQUIRED_FIELD_MISSING",
    "SEGMENT_SEQUENCE_ERROR",
    "TABLE_VALUE_NOT_FOUND",
    "UNSUPPORTED_EVENT_CODE",
    "UNSUPPORTED_MESSAGE_TYPE",
    "UNSUPPORTED_PROCESSING_ID",
    "UNSUPPORTED_VERSION_ID",
    "UNKNOWN_KEY_IDENTIFIER",
]

SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION_ID = 203
UNKNOWN_KEY_IDENTIFIER = 204
DUPLICATE_KEY = 205
APPLICATION_INTERNAL_ERROR = 207

#: HL7 table 0357 (message error condition codes) used by the hub
ERROR_NAMES: dict[int, str] = {
    0: "Message accepted",
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION_ID: "Unsupported version id",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    DUPLICATE_KEY: "Duplicate key identifier",
    206: "Application record locked",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}

#: codes answered with AR (application reject) in original mode; every other code gives AE
REJECT_CODES = frozenset(
    {
        UNSUPPORTED_MESSAGE_TYPE,
        UNSUPPORTED_EVENT_CODE,
        UNSUPPORTED_PROCESSING_ID,
        UNSUPPORTED_VERSION_ID,
        APPLICATION_INTERNAL_ERROR,
    }
)


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    """An HL7 ERL: segment id, segment sequence (1 = first occurrence) and, when known, the field
    position, field repetition, component and subcomponent (all 1-based)."""

    segment: str
    sequence: int = 1
    field: int | None = None
    repetition: int | None = None
    component: int | None = None
    subcomponent: int | None = None

    def components(self) -> list[str]:
        parts = [
            self.segment,
            str(self.sequence),
            self.field,
            self.repetition,
            self.component,
            self.subcomponent,
        ]
        out = ["" if p is None else str(p) for p in parts]
        while out and out[-1] == "":
            out.pop()
        return out

    def __str__(self) -> str:
        return "^".join(self.components())


class Hl7Error(ValueError):
    """A message the hub cannot accept: ``code`` (HL7 table 0357), ``location``, a PHI-free ``text``.

    ``severity`` is the ERR-4 severity (E error, W warning, I information, F fatal).
    """

    def __init__(
        self,
        code: int,
        text: str,
        location: ErrorLocation | None = None,
        *,
        severity: str = "E",
        ack: str | None = None,
    ) -> None:
        self.code = code
        self.text = text
        self.location = location
        self.severity = severity
        self._ack = ack
        super().__init__(str(self))

    @property
    def is_warning(self) -> bool:
        return self.severity in ("W", "I")

    def as_error(self) -> Hl7Error:
        """The same problem with severity E (a strict reader refuses what a liberal one warns of)."""
        return Hl7Error(self.code, self.text, self.location, ack=self._ack)

    @property
    def name(self) -> str:
        return ERROR_NAMES.get(self.code, "Error")

    @property
    def ack_code(self) -> str:
        """``AR`` for header rejections and internal errors, else ``AE`` (original mode), unless
        the raiser chose one."""
        if self._ack:
            return self._ack
        return "AR" if self.code in REJECT_CODES else "AE"

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"HL7 {self.code} ({self.name}){where}: {self.text}"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild, (self.code, self.text, self.location, self.severity, self._ack))


def _rebuild(
    code: int, text: str, location: ErrorLocation | None, severity: str, ack: str | None
) -> Hl7Error:
    return Hl7Error(code, text, location, severity=severity, ack=ack)


def at(
    segment: str,
    sequence: int = 1,
    field: int | None = None,
    repetition: int | None = None,
    component: int | None = None,
    subcomponent: int | None = None,
) -> ErrorLocation:
    """Shorthand for :class:`ErrorLocation`."""
    return ErrorLocation(segment, sequence, field, repetition, component, subcomponent)
