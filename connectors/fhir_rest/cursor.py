"""The poll cursor of the FHIR REST connector: per resource type, a ``_lastUpdated`` high-water mark.

Wire form (compact JSON, opaque to the hub, which stores it and passes it back)::

    {"v": 1, "types": {"Patient": {"since": "2024-05-01T10:00:00.123456Z",
                                   "seen": ["Patient/p1/_history/3"]}}}

* ``since`` - the greatest ``meta.lastUpdated`` returned so far for the type, exactly as the server
  wrote it; the next search asks for ``_lastUpdated=ge<since>``. ``ge`` rather than ``gt`` because
  several resources may share one ``lastUpdated`` (a transaction Bundle stamps all its entries with
  one instant) and a page or the ``limit`` may end between them: ``gt`` would skip the rest.
* ``seen`` - the external ids already returned whose ``lastUpdated`` equals ``since``. The next
  poll skips them, so the boundary items are not returned again and a batch of more than ``limit``
  resources sharing one instant still makes progress (without it, every poll would return the same
  first ``limit`` items). It only ever holds the items of one instant: usually one id.

Marks of types that are no longer configured are kept, so that adding a type back resumes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["CURSOR_VERSION", "PollCursor", "TypeMark", "parse_instant"]

CURSOR_VERSION = 1
RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_INSTANT = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,12}))?(?P<zone>Z|[+-]\d{2}:\d{2})"
)


def parse_instant(value: object) -> datetime | None:
    """A FHIR ``instant`` (seconds, optional fraction, mandatory zone) as an aware datetime, or None.

    Fractions beyond microseconds are truncated (Python's resolution); equal truncated values are
    treated as one instant, which the ``seen`` list makes harmless.
    """
    if not isinstance(value, str):
        return None
    match = _INSTANT.fullmatch(value)
    if match is None:
        return None
    fraction = (match["fraction"] or "")[:6]
    text = match["base"] + (f".{fraction.ljust(6, '0')}" if fraction else "")
    zone = match["zone"]
    try:
        return datetime.fromisoformat(text + ("+00:00" if zone == "Z" else zone))
    except ValueError:  # e.g. month 13
        return None


@dataclass
class TypeMark:
    """Where polling of one resource type resumes: ``_lastUpdated=ge<since>`` minus ``seen``."""

    since: str
    instant: datetime
    seen: set[str] = field(default_factory=set)

    def covers(self, instant: datetime, external_id: str) -> bool:
        """True if an item was returned by an earlier poll (older than the mark, or seen at it)."""
        return instant < self.instant or (instant == self.instant and external_id in self.seen)

    def advance(self, last_updated: str, instant: datetime, external_id: str) -> None:
        if instant > self.instant:
            self.since, self.instant, self.seen = last_updated, instant, {external_id}
        elif instant == self.instant:
            self.seen.add(external_id)


@dataclass
class PollCursor:
    marks: dict[str, TypeMark] = field(default_factory=dict)

    @classmethod
    def decode(cls, text: str | None) -> PollCursor:
        """Parse a cursor (None: from the beginning). Raises ValueError for anything else."""
        if text is None:
            return cls()
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError("the cursor is not JSON") from None
        if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
            raise ValueError(f"the cursor is not a version {CURSOR_VERSION} fhir_rest cursor")
        types = data.get("types")
        if not isinstance(types, dict):
            raise ValueError("the cursor has no 'types' object")
        marks: dict[str, TypeMark] = {}
        for name, raw in types.items():
            if not RESOURCE_TYPE.fullmatch(name) or not isinstance(raw, dict):
                raise ValueError("the cursor holds an invalid resource type entry")
            since = raw.get("since")
            instant = parse_instant(since)
            seen = raw.get("seen", [])
            if instant is None or not isinstance(seen, list) or not all(isinstance(s, str) for s in seen):
                raise ValueError(f"the cursor entry for {name} is invalid")
            assert isinstance(since, str)
            marks[name] = TypeMark(since=since, instant=instant, seen=set(seen))
        return cls(marks)

    def encode(self) -> str:
        types: dict[str, Any] = {
            name: {"since": mark.since, "seen": sorted(mark.seen)}
            for name, mark in sorted(self.marks.items())
        }
        return json.dumps({"v": CURSOR_VERSION, "types": types}, separators=(",", ":"))

    def advance(self, resource_type: str, last_updated: str, instant: datetime, external_id: str) -> None:
        mark = self.marks.get(resource_type)
        if mark is None:
            self.marks[resource_type] = TypeMark(last_updated, instant, {external_id})
        else:
            mark.advance(last_updated, instant, external_id)
