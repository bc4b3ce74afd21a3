"""Reading X12 element values (amounts, dates) with errors that name the element and the rule."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from mappings.x12.reader import Segment


class BadSegment(Exception):
    def __init__(self, element: int, message: str, rule: str = "x12.value") -> None:
        super().__init__(message)
        self.element = element
        self.rule = rule


def amount_of(seg: Segment, index: int, *, required: bool = False) -> Decimal | None:
    value = seg.get(index).strip()
    if not value:
        if required:
            raise BadSegment(index, f"{seg.id}{index:02d} is required (an amount)", "x12.required")
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise BadSegment(index, f"{seg.id}{index:02d} is not a number", "x12.number") from None
    if not amount.is_finite():
        raise BadSegment(index, f"{seg.id}{index:02d} is not a number", "x12.number")
    return amount


def money_of(seg: Segment, index: int) -> Decimal:
    amount = amount_of(seg, index, required=True)
    assert amount is not None
    return amount


def date_of(seg: Segment, index: int) -> date | None:
    value = seg.get(index).strip()
    if not value:
        return None
    if len(value) != 8 or not value.isdigit():
        raise BadSegment(index, f"{seg.id}{index:02d} is not a date CCYYMMDD", "x12.date")
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise BadSegment(index, f"{seg.id}{index:02d} is not a valid date", "x12.date") from None
