"""Lossless JSON for FHIR: decimals keep the digits the sender wrote (``1.50`` stays ``1.50``).

``fhir.resources`` validates decimals as ``Decimal`` but writes ``1.50`` back as ``1.5``; the hub
therefore stores and returns the JSON it received (after validation), parsed with ``Decimal`` for
every JSON number that has a fraction or exponent.

:func:`loads` is the one reader of untrusted JSON. Whatever it is given, it returns a value or
raises :class:`InvalidJson` (never ``RecursionError``, ``UnicodeError`` or another surprise), and
refuses what would hurt the code after it:

- nesting deeper than :data:`MAX_DEPTH` (a pre-scan, before the recursive parser runs);
- text that is not UTF-8 (a UTF-8 byte order mark is skipped; UTF-16 and UTF-32 are refused);
- ``NaN`` and ``Infinity`` (not JSON), duplicate member names (two readers could see two
  different resources in one text), and escaped lone surrogates (not encodable as UTF-8).
"""

from __future__ import annotations

import re
from decimal import Decimal
from itertools import accumulate
from typing import Any

import simplejson

#: deepest nesting of arrays and objects accepted. FHIR resources nest a few levels per element
#: (a Bundle entry's Questionnaire with items twenty levels deep stays under 60).
MAX_DEPTH = 100

_BOM = "\ufeff"
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
#: keeps only brackets, as "[" and "]" (objects and arrays nest alike)
_BRACKETS_ONLY = str.maketrans({"{": "[", "}": "]", **{chr(c): None for c in range(128) if chr(c) not in "[]{}"}})
_STEP = {"[": 1, "]": -1}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidJson(ValueError):
    """The text is not JSON; ``line`` and ``column`` locate the problem when known (0: not known).
    No content is echoed."""

    def __init__(self, reason: str, line: int = 0, column: int = 0) -> None:
        super().__init__(f"{reason} at line {line} column {column}" if line else reason)
        self.reason = reason
        self.line = line
        self.column = column


class JsonTooDeep(InvalidJson):
    """Arrays and objects nested deeper than :data:`MAX_DEPTH`."""


def _parse_int(text: str) -> int | Decimal:
    """Integers as ``int``; very long ones as ``Decimal``: Python refuses int() of more than 4300
    digits (a ValueError, then a 500), and no FHIR integer is that long (a decimal may be)."""
    return int(text) if len(text) <= 256 else Decimal(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate member name {duplicate[:64]!r}")
    return value


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonTooDeep` if arrays and objects nest deeper than ``limit`` (strings do not count).

    Linear and at C speed (regex, translate, accumulate); texts with few brackets skip the scan."""
    if text.count("[") + text.count("{") <= limit:
        return
    brackets = _STRING.sub("", text).translate(_BRACKETS_ONLY)
    if len(brackets) != brackets.count("[") + brackets.count("]"):  # non-ASCII outside strings (not JSON)
        brackets = re.sub(r"[^\[\]]+", "", brackets)
    too_deep = "[" * (limit + 1) in brackets or max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit
    if too_deep:  # where? (a second, slower pass for the message only)
        depth = 0
        for match in re.finditer(r'[\[\]{}]|"[^"\\]*(?:\\.[^"\\]*)*"', text, re.S):
            depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(match.group(), 0)
            if depth > limit:
                line, column = _position(text, match.start())
                raise JsonTooDeep(f"arrays and objects nested deeper than {limit} levels", line, column)


def _check_strings(value: Any) -> None:
    """Escaped lone surrogates (``"\\ud800"``) parse into strings that cannot be written as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, member in item.items():
                if _SURROGATE.search(key):
                    raise ValueError("a member name holds a lone UTF-16 surrogate")
                stack.append(member)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise ValueError("a string holds a lone UTF-16 surrogate")


def loads(data: str | bytes, *, exact_numbers: bool = True) -> Any:
    """Parse untrusted JSON. ``exact_numbers=False`` gives ``float`` for decimals (as ``json.loads``)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJson("body is not UTF-8", 1, exc.start + 1) from None
    if data.startswith(_BOM):
        data = data[1:]
    check_depth(data)
    try:
        value = simplejson.loads(
            data,
            use_decimal=exact_numbers,
            parse_int=_parse_int,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_members,
        )
    except simplejson.JSONDecodeError as exc:
        raise InvalidJson(exc.msg, exc.lineno, exc.colno) from None
    except ValueError as exc:  # raised by the hooks above; simplejson gives no position for these
        raise InvalidJson(str(exc)) from None
    except RecursionError:  # the pre-scan should make this unreachable; never a 500 if it is not
        raise JsonTooDeep(f"arrays and objects nested deeper than {MAX_DEPTH} levels") from None
    if _SURROGATE_ESCAPE.search(data):
        try:
            _check_strings(value)
        except ValueError as exc:
            raise InvalidJson(str(exc)) from None
    return value


def dumps(value: Any) -> str:
    text: str = simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":"))
    return text


def dumpb(value: Any) -> bytes:
    return dumps(value).encode("utf-8")
