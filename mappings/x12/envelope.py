"""Writing ASC X12 005010: cleaned element values, segments and the ISA/GS/ST envelope around them.

Separators are fixed for what the hub writes: element ``*``, component ``:``, repetition ``^``,
segment ``~`` (optionally followed by a line break, off by default). Every data value goes through
:func:`text` (names, addresses: cleaned and cut to the element's maximum length) or :func:`ident`
(identifiers and codes: cleaned, refused when too long, since a cut identifier names someone else).
Cleaning keeps the X12 extended character set only: accents are dropped (``José`` -> ``Jose``), the
four separators and any other character become a space, runs of spaces become one. A segment is
checked once more when it is printed, so that a separator can never reach the file inside a value.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from mappings.billing.model import ControlNumbers, Submitter

ELEMENT = "*"
COMPONENT = ":"
REPETITION = "^"
SEGMENT = "~"
SEPARATORS = frozenset(ELEMENT + COMPONENT + REPETITION + SEGMENT)

#: the X12 basic and extended character sets, less the separators the hub writes
_ALLOWED = frozenset(string.ascii_letters + string.digits + " !\"&'()+,-./;?=%@[]_{}\\|<>#$")

#: an element value: text, a composite (its components) or None for an empty element
Element = str | tuple[str, ...] | None


class X12WriteError(ValueError):
    """A claim or inquiry cannot be written: the message names the loop, the element and the rule."""

    def __init__(self, message: str, *, loop: str, element: str | None = None, rule: str) -> None:
        super().__init__(f"{loop}{' ' + element if element else ''}: {message} [{rule}]")
        self.loop = loop
        self.element = element
        self.rule = rule


def clean(value: str) -> str:
    """``value`` within the X12 extended character set, without separators, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", value)
    kept = "".join(
        ch if ch in _ALLOWED else " " for ch in decomposed if not unicodedata.combining(ch)
    )
    return " ".join(kept.split())


def text(value: str | None, max_length: int) -> str:
    """A name or address element: cleaned and cut to ``max_length``."""
    if value is None:
        return ""
    return clean(value)[:max_length].rstrip()


def ident(value: str | None, max_length: int, *, loop: str, element: str) -> str:
    """An identifier or code: cleaned; longer than ``max_length`` is an error, never cut."""
    if value is None:
        return ""
    cleaned = clean(value)
    if len(cleaned) > max_length:
        raise X12WriteError(f"longer than {max_length} characters", loop=loop, element=element,
                            rule="x12.element-length")
    return cleaned


def digits(value: str | None) -> str:
    """Only the digits of ``value`` (phone numbers, EIN ``12-3456789``, ZIP ``12345-6789``)."""
    return "".join(ch for ch in value or "" if ch.isdigit())


def amount(value: Decimal) -> str:
    """An X12 decimal (R): two places at most, no trailing zeros, no point when whole (``150``, ``75.5``)."""
    rounded = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    out = format(rounded, "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return "0" if out in ("-0", "") else out


def quantity(value: Decimal) -> str:
    """A quantity (units): like :func:`amount` with up to three places."""
    rounded = value.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    out = format(rounded, "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return out


def ccyymmdd(value: date) -> str:
    return value.strftime("%Y%m%d")


def hhmm(value: datetime) -> str:
    return value.strftime("%H%M")


def render(segment_id: str, *elements: Element) -> str:
    """One segment without its terminator; trailing empty elements and components are dropped."""
    values: list[str] = []
    for element in elements:
        if element is None:
            values.append("")
        elif isinstance(element, tuple):
            parts = list(element)
            while parts and not parts[-1]:
                parts.pop()
            for part in parts:
                _refuse_separators(segment_id, part)
            values.append(COMPONENT.join(parts))
        else:
            _refuse_separators(segment_id, element)
            values.append(element)
    while values and not values[-1]:
        values.pop()
    return ELEMENT.join([segment_id, *values])


def _refuse_separators(segment_id: str, value: str) -> None:
    if SEPARATORS.intersection(value):
        raise X12WriteError("a separator inside a value", loop=segment_id, rule="x12.separator-in-data")


def interchange(
    transaction_sets: Sequence[Sequence[str]],
    *,
    transaction_id: str,
    functional_id: str,
    version: str,
    submitter: Submitter,
    control: ControlNumbers,
    created: datetime,
    ack_requested: bool = False,
    newline: bool = False,
) -> str:
    """ISA, GS, each transaction set between its ST and SE, GE, IEA: the whole file.

    ``transaction_sets`` are the rendered segments between ST and SE, one sequence per set; the
    sets are numbered from ``control.transaction`` on (ST02, four digits at least).
    """
    sender = _isa_id(submitter.etin, "ISA06")
    receiver = _isa_id(submitter.receiver_id, "ISA08")
    qualifier = ident(submitter.isa_qualifier, 2, loop="ISA", element="ISA05").ljust(2)
    segments = [
        # fixed widths, and ISA11/ISA16 are separators themselves: not rendered as data
        ELEMENT.join(["ISA", "00", " " * 10, "00", " " * 10, qualifier, sender, qualifier, receiver,
                      created.strftime("%y%m%d"), hhmm(created), REPETITION, "00501",
                      f"{control.interchange:09d}", "1" if ack_requested else "0", submitter.usage, COMPONENT]),
        render("GS", functional_id, ident(submitter.etin, 15, loop="GS", element="GS02"),
               ident(submitter.receiver_id, 15, loop="GS", element="GS03"), ccyymmdd(created), hhmm(created),
               str(control.group), "X", version),
    ]
    for offset, body in enumerate(transaction_sets):
        number = f"{control.transaction + offset:04d}"
        segments.append(render("ST", transaction_id, number, version))
        segments.extend(body)
        segments.append(render("SE", str(len(body) + 2), number))
    segments.append(render("GE", str(len(transaction_sets)), str(control.group)))
    segments.append(render("IEA", "1", f"{control.interchange:09d}"))
    end = SEGMENT + ("\n" if newline else "")
    return end.join(segments) + end


def _isa_id(value: str, element: str) -> str:
    cleaned = ident(value, 15, loop="ISA", element=element)
    if not cleaned:
        raise X12WriteError("required", loop="ISA", element=element, rule="x12.required")
    return cleaned.ljust(15)
