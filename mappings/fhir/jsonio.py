"""Lossless JSON for FHIR: decimals keep the digits the sender wrote (``1.50`` stays ``1.50``).

``fhir.resources`` validates decimals as ``Decimal`` but writes ``1.50`` back as ``1.5``; the hub
therefore stores and returns the JSON it received (after validation), parsed with ``Decimal`` for
every JSON number that has a fraction or exponent.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import simplejson


class InvalidJson(ValueError):
    """The text is not JSON; ``line`` and ``column`` locate the problem (no content is echoed)."""

    def __init__(self, reason: str, line: int, column: int) -> None:
        super().__init__(f"{reason} at line {line} column {column}")
        self.reason = reason
        self.line = line
        self.column = column


def _parse_int(text: str) -> int | Decimal:
    """Integers as ``int``; very long ones as ``Decimal``: Python refuses int() of more than 4300
    digits (a ValueError, then a 500), and no FHIR integer is that long (a decimal may be)."""
    return int(text) if len(text) <= 256 else Decimal(text)


def loads(data: str | bytes) -> Any:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJson("body is not UTF-8", 1, exc.start + 1) from None
    try:
        return simplejson.loads(data, use_decimal=True, parse_int=_parse_int)
    except simplejson.JSONDecodeError as exc:
        raise InvalidJson(exc.msg, exc.lineno, exc.colno) from None


def dumps(value: Any) -> str:
    return simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":"))


def dumpb(value: Any) -> bytes:
    return dumps(value).encode("utf-8")
