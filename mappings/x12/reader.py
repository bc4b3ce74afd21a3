"""Reading ASC X12 interchanges the way partners really write them.

The separators come from the ISA segment itself (element separator = the 4th character, component
separator = ISA16, repetition separator = ISA11 from version 00501 on, segment terminator = the
character after ISA16), so ``*``/``:``/``^``/``~`` are not assumed. Line breaks after (or instead of
nothing after) the segment terminator are tolerated, as are several interchanges in one file (each
split with the separators its own ISA declares), a byte order mark and spaces padding the fixed-width
ISA fields. TA1 interchange acknowledgements, which stand outside any group, are kept on their
:class:`Interchange`.

:func:`read_interchanges` never raises on a bad transaction set: it returns every transaction set
it could delimit (ST..SE) and an :class:`X12Error` for each problem, naming the segment, its position
in the file (1-based segment number), the element when there is one and the rule broken. A problem
in one transaction set (missing SE, wrong segment count, control numbers that do not match) marks
only that set; the others are read. Only a file whose first interchange header cannot be read at all
(no ``ISA``, too short to hold the separators) is unreadable as a whole: :class:`X12SyntaxError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field


class X12SyntaxError(ValueError):
    """The file cannot be read as X12 at all (the message names what was expected)."""

    def __init__(self, message: str, *, position: int = 1, rule: str = "x12.interchange-header") -> None:
        super().__init__(message)
        self.position = position
        self.rule = rule


@dataclass(frozen=True, slots=True)
class X12Error:
    """One problem found while reading: where, which rule, what (never the content of a field)."""

    rule: str  # e.g. "x12.se-count", "x12.missing-se", "x12.control-number", "x12.truncated"
    segment_id: str  # the segment at fault ("SE", "ST", "IEA"...)
    position: int  # 1-based number of the segment in the file
    message: str
    element: int | None = None  # 1-based element position, when one element is at fault
    transaction: str | None = None  # ST02 of the transaction set concerned, if any

    def __str__(self) -> str:
        where = f"{self.segment_id} (segment {self.position}" + (f", element {self.element}" if self.element else "")
        return f"{where}): {self.message} [{self.rule}]"


@dataclass(frozen=True, slots=True)
class Separators:
    element: str
    component: str
    repetition: str | None
    segment: str


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: its id, its elements (``elements[0]`` is the id) and its 1-based position in the file."""

    elements: tuple[str, ...]
    position: int
    separators: Separators

    @property
    def id(self) -> str:
        return self.elements[0]

    def get(self, index: int, default: str = "") -> str:
        """Element ``index`` (1-based, as the implementation guides number them), '' when absent."""
        return self.elements[index] if index < len(self.elements) else default

    def components(self, index: int) -> tuple[str, ...]:
        """The components of a composite element (``HC:97110:GP`` -> ``("HC", "97110", "GP")``)."""
        value = self.get(index)
        return tuple(value.split(self.separators.component)) if value else ()

    def repeats(self, index: int) -> tuple[str, ...]:
        """The repetitions of a repeatable element (EB03 ``PT^AD``); one value when none is used."""
        value = self.get(index)
        if not value:
            return ()
        if self.separators.repetition:
            return tuple(value.split(self.separators.repetition))
        return (value,)


@dataclass(slots=True)
class TransactionSet:
    """ST..SE: the segments between them (ST and SE included) and what was wrong with them."""

    id: str  # ST01: 837, 999, 277, 835, 271...
    control_number: str  # ST02
    version: str  # ST03 if present, else GS08
    segments: list[Segment]
    functional_id: str  # GS01 of the enclosing group (HC, FA, HN, HP, HB...)
    errors: list[X12Error] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def body(self) -> list[Segment]:
        """The segments between ST and SE."""
        end = len(self.segments) - 1 if self.segments and self.segments[-1].id == "SE" else len(self.segments)
        return self.segments[1:end]


@dataclass(slots=True)
class FunctionalGroup:
    functional_id: str  # GS01
    sender: str  # GS02
    receiver: str  # GS03
    control_number: str  # GS06
    version: str  # GS08
    transactions: list[TransactionSet] = field(default_factory=list)


@dataclass(slots=True)
class Interchange:
    separators: Separators
    sender_qualifier: str
    sender: str  # ISA06, trimmed
    receiver_qualifier: str
    receiver: str  # ISA08, trimmed
    date: str  # ISA09 YYMMDD
    time: str  # ISA10 HHMM
    control_number: str  # ISA13
    usage: str  # ISA15 P or T
    groups: list[FunctionalGroup] = field(default_factory=list)
    acknowledgements: list[Segment] = field(default_factory=list)  # TA1 segments, outside any group


@dataclass(slots=True)
class X12File:
    interchanges: list[Interchange]
    errors: list[X12Error]  # every problem, those of transaction sets included

    @property
    def transactions(self) -> Iterator[TransactionSet]:
        for interchange in self.interchanges:
            for group in interchange.groups:
                yield from group.transactions


def separators_of(text: str, start: int = 0) -> Separators:
    """The separators declared by the ISA segment that starts at ``start``.

    The ISA fields have fixed widths (106 characters with the terminator), but some senders do not
    pad them: ISA16 is found as the character after the 16th element separator, the segment
    terminator as the one after it.
    """
    if text[start : start + 3] != "ISA":
        raise X12SyntaxError("the file does not start with an ISA interchange header")
    if len(text) < start + 4:
        raise X12SyntaxError("the ISA interchange header is truncated")
    element = text[start + 3]
    if element.isalnum() or element.isspace():
        raise X12SyntaxError(f"ISA element separator {element!r} is a letter, digit or space")
    cut = start + 3
    fields: list[str] = []
    for _ in range(15):
        following = text.find(element, cut + 1, start + 400)
        if following < 0:
            raise X12SyntaxError(f"the ISA header has {len(fields)} elements; 16 are required")
        fields.append(text[cut + 1 : following])
        cut = following
    if len(text) < cut + 3:
        raise X12SyntaxError("the ISA interchange header is truncated (no ISA16 and segment terminator)")
    component, segment = text[cut + 1], text[cut + 2]
    if segment in "\r\n":
        segment = "\n"  # some payers end segments with a line break alone (CR LF or LF)
    repetition: str | None = fields[10] if fields[11].strip() >= "00501" and len(fields[10]) == 1 else None
    if repetition is not None and (repetition.isalnum() or repetition in (element, component, segment)):
        repetition = None
    if len({element, component, segment}) < 3 or component.isalnum() or segment.isalnum():
        raise X12SyntaxError("the ISA header uses a letter, a digit or one character for two separators")
    return Separators(element=element, component=component, repetition=repetition, segment=segment)


def split_segments(text: str, separators: Separators, *, first_position: int = 1) -> list[Segment]:
    """Split ``text`` into segments, dropping the line breaks partners put around terminators."""
    out: list[Segment] = []
    position = first_position
    for raw in text.split(separators.segment):
        chunk = raw.strip("\r\n")
        if not chunk.strip():
            continue
        out.append(Segment(tuple(chunk.strip().split(separators.element)), position, separators))
        position += 1
    return out


def read_interchanges(text: str | bytes) -> X12File:
    """Read every interchange of a file. See the module docstring for what is an error and what is fatal."""
    if isinstance(text, bytes):
        text = text.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark some systems write
        text = text.decode("latin-1")  # X12 basic/extended character sets are within latin-1
    text = text.removeprefix("\ufeff")
    start = text.find("ISA")
    if start < 0 or text[:start].strip():
        raise X12SyntaxError("the file does not start with an ISA interchange header")
    separators = separators_of(text, start)
    segments: list[Segment] = []
    errors: list[X12Error] = []
    while True:  # each interchange is split with the separators its own ISA declares
        following = _next_interchange(text, start + 3, separators.segment)
        chunk = text[start:following] if following >= 0 else text[start:]
        segments.extend(split_segments(chunk, separators, first_position=len(segments) + 1))
        if following < 0:
            break
        start = following
        try:
            separators = separators_of(text, start)
        except X12SyntaxError as exc:  # keep the previous separators; the interchange is reported
            errors.append(X12Error("x12.interchange-header", "ISA", len(segments) + 1, str(exc)))
    return _Structure(segments, errors).read()


def _next_interchange(text: str, start: int, terminator: str) -> int:
    """Where the next ISA segment begins after ``start`` (after a terminator and line breaks), or -1."""
    found = re.compile(re.escape(terminator) + r"[\r\n \t]*(ISA)(?=[^A-Za-z0-9\s])").search(text, start)
    return found.start(1) if found else -1


class _Structure:
    """Walks the flat list of segments into interchanges, groups and transaction sets."""

    def __init__(self, segments: list[Segment], errors: list[X12Error] | None = None) -> None:
        self.segments = segments
        self.errors: list[X12Error] = list(errors or [])
        self.interchanges: list[Interchange] = []

    def _error(self, rule: str, seg: Segment, message: str, *, element: int | None = None,
               transaction: TransactionSet | None = None) -> None:
        error = X12Error(rule, seg.id[:3], seg.position, message, element,
                         transaction.control_number if transaction else None)
        self.errors.append(error)
        if transaction is not None:
            transaction.errors.append(error)

    def read(self) -> X12File:
        interchange: Interchange | None = None
        group: FunctionalGroup | None = None
        transaction: TransactionSet | None = None
        for seg in self.segments:
            if seg.id == "ISA":
                if transaction is not None:
                    self._close_unterminated(transaction, seg)
                    transaction = None
                if interchange is not None:
                    self._error("x12.missing-iea", seg, "a new interchange starts before the previous one's IEA")
                interchange = _interchange(seg)
                self.interchanges.append(interchange)
                group = None
            elif interchange is None:
                self._error("x12.outside-interchange", seg, "segment outside an interchange (after IEA or before ISA)")
            elif seg.id == "GS":
                if transaction is not None:
                    self._close_unterminated(transaction, seg)
                    transaction = None
                if group is not None:
                    self._error("x12.missing-ge", seg, "a new functional group starts before the previous one's GE")
                group = FunctionalGroup(seg.get(1), seg.get(2), seg.get(3), seg.get(6), seg.get(8))
                interchange.groups.append(group)
            elif seg.id == "ST":
                if transaction is not None:
                    self._close_unterminated(transaction, seg)
                if group is None:
                    self._error("x12.missing-gs", seg, "transaction set outside a functional group (no GS)")
                    group = FunctionalGroup("", "", "", "", "")
                    interchange.groups.append(group)
                transaction = TransactionSet(seg.get(1), seg.get(2), seg.get(3) or group.version, [seg],
                                             group.functional_id)
                group.transactions.append(transaction)
            elif seg.id == "SE":
                if transaction is None:
                    self._error("x12.se-without-st", seg, "SE without a transaction set open")
                    continue
                transaction.segments.append(seg)
                self._check_se(transaction, seg)
                transaction = None
            elif seg.id == "GE":
                if transaction is not None:
                    self._close_unterminated(transaction, seg)
                    transaction = None
                if group is None:
                    self._error("x12.ge-without-gs", seg, "GE without a functional group open")
                    continue
                self._check_trailer(seg, "GE", len(group.transactions), group.control_number, "GS06")
                group = None
            elif seg.id == "IEA":
                if transaction is not None:
                    self._close_unterminated(transaction, seg)
                    transaction = None
                if group is not None:
                    self._error("x12.missing-ge", seg, "IEA closes an interchange whose group has no GE")
                    group = None
                self._check_trailer(seg, "IEA", len(interchange.groups), interchange.control_number, "ISA13")
                interchange = None
            elif transaction is not None:
                transaction.segments.append(seg)
            elif seg.id == "TA1":
                interchange.acknowledgements.append(seg)  # an interchange acknowledgement stands outside GS..GE
            else:
                self._error("x12.outside-transaction", seg, "segment outside a transaction set (between SE and ST)")
        last = self.segments[-1] if self.segments else None
        if last is not None and transaction is not None:
            self._error("x12.truncated", last, "the file ends inside a transaction set: no SE", transaction=transaction)
        if last is not None and interchange is not None and (transaction is None):
            self._error("x12.truncated", last, "the file ends before the interchange's IEA")
        return X12File(self.interchanges, self.errors)

    def _close_unterminated(self, transaction: TransactionSet, seg: Segment) -> None:
        self._error("x12.missing-se", seg, f"transaction set {transaction.id} has no SE before this {seg.id}",
                    transaction=transaction)

    def _check_se(self, transaction: TransactionSet, se: Segment) -> None:
        count = se.get(1)
        if not count.isdigit() or int(count) != len(transaction.segments):
            self._error("x12.se-count", se, f"SE01 says {count or 'nothing'} segments; the set has "
                        f"{len(transaction.segments)} (ST and SE included)", element=1, transaction=transaction)
        if se.get(2) != transaction.control_number:
            self._error("x12.control-number", se, "SE02 does not match ST02", element=2, transaction=transaction)

    def _check_trailer(self, seg: Segment, name: str, count: int, control: str, header: str) -> None:
        declared = seg.get(1)
        if not declared.isdigit() or int(declared) != count:
            self._error(f"x12.{name.lower()}-count", seg, f"{name}01 says {declared or 'nothing'}; there are {count}",
                        element=1)
        if seg.get(2).strip() != control.strip():
            self._error("x12.control-number", seg, f"{name}02 does not match {header}", element=2)


def _interchange(isa: Segment) -> Interchange:
    return Interchange(
        separators=isa.separators,
        sender_qualifier=isa.get(5).strip(),
        sender=isa.get(6).strip(),
        receiver_qualifier=isa.get(7).strip(),
        receiver=isa.get(8).strip(),
        date=isa.get(9).strip(),
        time=isa.get(10).strip(),
        control_number=isa.get(13).strip(),
        usage=isa.get(15).strip(),
    )
