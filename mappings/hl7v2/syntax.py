"""HL7 v2 encoding rules: bytes -> text, segment separators, delimiters (MSH-1/MSH-2), escape
sequences, and a parsed :class:`V2Message` with 1-based accessors that return unescaped text.

Tokenising is python-hl7's (``hl7.parse``, ~0.3 ms for a referral). Everything around it is ours,
because python-hl7 leaves it to the caller or does it in a way the hub cannot use:

* **Segment separators.** HL7 separates segments with CR only. python-hl7 splits on CR, so a message
  whose segments end in LF comes out as one long MSH segment ("silently merged"). :func:`decode`
  turns CRLF and LF into CR (``line_endings="normalise"``, the default) or refuses a message that has
  any LF with a clear :class:`Hl7Error` (``line_endings="reject"``).
* **Character set.** MSH-18 picks the decoding of the bytes: empty, ``UNICODE UTF-8`` or ``ASCII``
  -> UTF-8, ``8859/1`` -> Latin-1. Bytes that are not valid in it are a data type error (102).
* **Escapes.** :func:`unescape` and :func:`escape` implement HL7 v2.5.1 section 2.7: ``\\F\\ \\S\\
  \\T\\ \\R\\ \\E\\`` for the delimiters, ``\\Xhh..\\`` (bytes in the message's character set),
  ``\\.br\\`` and friends in formatted text, ``\\H\\``/``\\N\\`` highlighting (dropped). python-hl7's own
  unescape logs the field's content on a bad sequence (PHI in logs) and its escape turns every
  non-ASCII character into hex, so neither is used.

Accessors number like the standard: ``seg.get(3, rep=1, comp=1, sub=1)`` is PID-3.1; for MSH the
field separator is MSH-1 and the encoding characters MSH-2, so ``msh.get(9)`` is the message type.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import hl7

from mappings.hl7v2.errors import (
    DATA_TYPE_ERROR,
    SEGMENT_SEQUENCE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    ErrorLocation,
    Hl7Error,
    at,
)

__all__ = [
    "CHARSETS",
    "DEFAULT_SEPARATORS",
    "Separators",
    "V2Message",
    "V2Segment",
    "decode",
    "escape",
    "parse",
    "unescape",
]

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")

#: MSH-18 value -> Python codec (HL7 table 0211); empty means the default, UTF-8
CHARSETS: dict[str, str] = {
    "": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "ASCII": "utf-8",  # ASCII is a subset of UTF-8: accept what lenient senders mislabel
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
}


@dataclass(frozen=True, slots=True)
class Separators:
    """The delimiters of one message (MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2."""
        return f"{self.component}{self.repetition}{self.escape}{self.subcomponent}"

    @classmethod
    def from_msh(cls, text: str) -> Separators:
        """The separators declared at the start of ``text`` (which starts with ``MSH``)."""
        if len(text) < 8 or not text.startswith("MSH"):
            raise Hl7Error(
                SEGMENT_SEQUENCE_ERROR, "the message does not start with an MSH segment", at("MSH")
            )
        fsep = text[3]
        end = text.find(fsep, 4)
        chars = text[4:end] if end > 0 else text[4:8]
        seps = fsep + chars
        if (
            len(chars) not in (4, 5)
            or len(set(seps)) != len(seps)
            or any(c.isalnum() or c in " \r\n\t" for c in seps)
        ):
            raise Hl7Error(DATA_TYPE_ERROR, "invalid field separator or encoding characters", at("MSH", 1, 2))
        return cls(fsep, chars[0], chars[1], chars[2], chars[3])


DEFAULT_SEPARATORS = Separators()


# ------------------------------------------------------------------------------------ escapes


@cache
def _escape_table(seps: Separators, newline: str) -> dict[int, str]:
    e = seps.escape
    return {
        ord(seps.escape): f"{e}E{e}",
        ord(seps.field): f"{e}F{e}",
        ord(seps.component): f"{e}S{e}",
        ord(seps.repetition): f"{e}R{e}",
        ord(seps.subcomponent): f"{e}T{e}",
        ord("\r"): f"{e}X0D{e}",
        ord("\n"): f"{e}{newline}{e}",
    }


def escape(text: str, seps: Separators = DEFAULT_SEPARATORS, *, formatted: bool = False) -> str:
    """``text`` with the delimiters, CR and LF escaped (LF as ``\\.br\\`` in formatted text (FT),
    else ``\\X0A\\``). Other characters, non-ASCII included, are kept: the message is UTF-8."""
    return text.translate(_escape_table(seps, ".br" if formatted else "X0A"))


class EscapeError(ValueError):
    """An escape sequence that cannot be read (the message is not quoted)."""


def unescape(text: str, seps: Separators = DEFAULT_SEPARATORS, charset: str = "utf-8") -> str:
    """``text`` with its escape sequences replaced. Raises :class:`EscapeError` on a malformed one."""
    esc = seps.escape
    start = text.find(esc)
    if start < 0:
        return text
    out: list[str] = [text[:start]]
    i = start
    n = len(text)
    while i < n:
        j = text.find(esc, i + 1)
        if j < 0:
            raise EscapeError("unterminated escape sequence")
        seq = text[i + 1 : j]
        out.append(_expand(seq, seps, charset))
        i = j + 1
        k = text.find(esc, i)
        if k < 0:
            out.append(text[i:])
            break
        out.append(text[i:k])
        i = k
    return "".join(out)


def _expand(seq: str, seps: Separators, charset: str) -> str:
    if seq == "F":
        return seps.field
    if seq == "S":
        return seps.component
    if seq == "R":
        return seps.repetition
    if seq == "T":
        return seps.subcomponent
    if seq == "E":
        return seps.escape
    if seq in ("H", "N"):  # highlighting on/off: no meaning in FHIR text
        return ""
    if seq.startswith("X"):
        digits = seq[1:]
        if not digits or len(digits) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", digits):
            raise EscapeError("invalid hexadecimal escape sequence")
        try:
            return bytes.fromhex(digits).decode(charset)
        except UnicodeDecodeError:
            raise EscapeError("hexadecimal escape is not valid in the message's character set") from None
    if seq.startswith("."):  # formatted text commands (FT)
        command, count = seq[:3], seq[3:].strip()
        repeat = int(count) if count.lstrip("+-").isdigit() else 1
        if command == ".br":
            return "\n"
        if command == ".sp":
            return "\n" * max(1, repeat)
        if command in (".fi", ".nf", ".in", ".ti", ".sk", ".ce"):
            return " " if command == ".sk" else ""
        raise EscapeError("unknown formatting escape sequence")
    if seq.startswith("Z"):  # locally defined escape: no meaning here
        return ""
    if seq.startswith(("C", "M")):  # character set switches (ISO 2022): not supported
        raise EscapeError("character set switching escape sequences are not supported")
    raise EscapeError("unknown escape sequence")


# ------------------------------------------------------------------------------------- decoding


def decode(raw: bytes | str, *, line_endings: str = "normalise") -> str:
    """The message as text with CR segment separators (no empty segments, no framing remnants).

    ``line_endings``: ``"normalise"`` turns CRLF and LF into CR; ``"reject"`` refuses any LF with a
    102 error at MSH (python-hl7 would otherwise merge every segment into MSH).
    """
    if isinstance(raw, bytes):
        raw = raw.strip(b"\x0b\x1c\r\n\t \x00")
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        head = raw[:1024].decode("latin-1")
        charset_name = _charset_name(head)
        codec = CHARSETS.get(charset_name.upper())
        if codec is None:
            raise Hl7Error(TABLE_VALUE_NOT_FOUND, "unsupported character set", at("MSH", 1, 18))
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            raise Hl7Error(
                DATA_TYPE_ERROR, "the bytes are not valid in the declared character set", at("MSH", 1, 18)
            ) from None
    else:
        text = raw.strip("\x0b\x1c\r\n\t \x00").lstrip("\ufeff")
    if "\n" in text:
        if line_endings == "reject":
            raise Hl7Error(
                DATA_TYPE_ERROR,
                "segments must be separated by carriage returns (CR); line feeds (LF) are not accepted",
                at("MSH"),
            )
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    if "\r\r" in text:
        text = "\r".join(s for s in text.split("\r") if s)
    if not text.startswith("MSH"):
        raise Hl7Error(SEGMENT_SEQUENCE_ERROR, "the message does not start with an MSH segment", at("MSH"))
    return text


def _charset_name(head: str) -> str:
    """MSH-18 read from the first segment (before decoding: only ASCII matters there)."""
    if not head.startswith("MSH") or len(head) < 4:
        return ""
    fsep = head[3]
    first = re.split(r"[\r\n]", head, maxsplit=1)[0]
    fields = first.split(fsep)
    # fields[0] = "MSH", fields[1] = MSH-2, so MSH-n = fields[n - 1]
    if len(fields) < 18:
        return ""
    return fields[17].split(head[4] if len(head) > 4 else "^")[0].strip()


# -------------------------------------------------------------------------------------- access

Tree = list[list[list[str]]]  # repetitions -> components -> subcomponents (escaped text)


def _leaves(node: Any, depth: int) -> Any:
    """python-hl7 keeps a part as a plain string when it has no deeper separators: make it uniform."""
    if isinstance(node, str):
        value: Any = node
        for _ in range(depth):
            value = [value]
        return value
    if depth == 0:
        return str(node)
    return [_leaves(child, depth - 1) for child in node]


@dataclass(slots=True)
class V2Segment:
    """One segment: ``name``, ``sequence`` (its occurrence number among segments of that name) and
    ``index`` (position in the message, 0 = MSH)."""

    name: str
    sequence: int
    index: int
    _fields: Any = field(repr=False)
    _seps: Separators = field(repr=False)
    _charset: str = field(repr=False, default="utf-8")
    _cache: dict[int, Tree] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        """The number of the last field present."""
        return len(self._fields) - 1

    def loc(
        self,
        field: int | None = None,
        repetition: int | None = None,
        component: int | None = None,
        subcomponent: int | None = None,
    ) -> ErrorLocation:
        return ErrorLocation(self.name, self.sequence, field, repetition, component, subcomponent)

    def tree(self, n: int) -> Tree:
        """Field ``n`` as repetitions -> components -> subcomponents, still escaped."""
        cached = self._cache.get(n)
        if cached is not None:
            return cached
        if n >= len(self._fields) or n < 1:
            tree: Tree = []
        elif self.name == "MSH" and n <= 2:
            tree = [[[str(self._fields[n][0] if not isinstance(self._fields[n], str) else self._fields[n])]]]
        else:
            raw = self._fields[n]
            tree = [] if raw == "" or raw == [""] else _leaves(raw, 3)
            if tree == [[[""]]]:
                tree = []
        self._cache[n] = tree
        return tree

    def _text(self, value: str, n: int, rep: int, comp: int, sub: int | None = None) -> str:
        if self._seps.escape not in value:
            return value.strip()
        try:
            return unescape(value, self._seps, self._charset).strip()
        except EscapeError as exc:
            raise Hl7Error(DATA_TYPE_ERROR, str(exc), self.loc(n, rep, comp, sub)) from None

    def count(self, n: int) -> int:
        """How many repetitions field ``n`` has (0 when empty)."""
        return len(self.tree(n))

    def get(self, n: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        """The unescaped text of PID-n(rep).comp.sub ('' when absent)."""
        tree = self.tree(n)
        if self.name == "MSH" and n <= 2:
            return tree[0][0][0] if rep == comp == sub == 1 else ""
        try:
            value = tree[rep - 1][comp - 1][sub - 1]
        except IndexError:
            return ""
        return self._text(value, n, rep, comp, sub) if value else ""

    def components(self, n: int, rep: int = 1) -> list[str]:
        """The unescaped first subcomponents of each component of one repetition."""
        tree = self.tree(n)
        if rep > len(tree):
            return []
        return [self._text(c[0], n, rep, i + 1) if c and c[0] else "" for i, c in enumerate(tree[rep - 1])]

    def subcomponents(self, n: int, rep: int = 1, comp: int = 1) -> list[str]:
        tree = self.tree(n)
        try:
            subs = tree[rep - 1][comp - 1]
        except IndexError:
            return []
        return [self._text(s, n, rep, comp, i + 1) if s else "" for i, s in enumerate(subs)]

    def repetitions(self, n: int) -> Iterator[int]:
        """1-based numbers of the non-empty repetitions of field ``n``."""
        for i, rep in enumerate(self.tree(n)):
            if any(any(s for s in c) for c in rep):
                yield i + 1


@dataclass(slots=True)
class V2Message:
    """A parsed message: its segments (Z-segments included), separators and character set."""

    text: str
    separators: Separators
    segments: list[V2Segment]
    charset: str = "utf-8"

    @property
    def msh(self) -> V2Segment:
        return self.segments[0]

    def all(self, name: str) -> list[V2Segment]:
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> V2Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.segments]


def parse(raw: bytes | str, *, line_endings: str = "normalise") -> V2Message:
    """Decode, check the delimiters and segment ids, and tokenise (python-hl7). Raises Hl7Error."""
    text = decode(raw, line_endings=line_endings)
    seps = Separators.from_msh(text)
    charset = CHARSETS.get(_charset_name(text[:1024]).upper(), "utf-8")
    lines = text.split("\r")
    for index, line in enumerate(lines):
        name = line[:3]
        if not _SEGMENT_ID.fullmatch(name) or (len(line) > 3 and line[3] != seps.field):
            raise Hl7Error(
                SEGMENT_SEQUENCE_ERROR,
                f"segment {index + 1} does not start with a segment id",
                ErrorLocation(name if _SEGMENT_ID.fullmatch(name) else "MSH", 1),
            )
        if name == "MSH" and index:
            raise Hl7Error(
                SEGMENT_SEQUENCE_ERROR, "more than one MSH segment (batches are not supported)", at("MSH", 2)
            )
    try:
        parsed = hl7.parse(text)
    except Exception:  # python-hl7 raises assorted errors on broken delimiters; none quotes safely
        raise Hl7Error(DATA_TYPE_ERROR, "the message cannot be tokenised", at("MSH")) from None
    counts: dict[str, int] = {}
    segments = []
    for index, raw_segment in enumerate(parsed):
        fields: Sequence[Any] = raw_segment
        name = str(fields[0])
        counts[name] = counts.get(name, 0) + 1
        segments.append(V2Segment(name, counts[name], index, list(fields), seps, charset))
    return V2Message(text, seps, segments, charset)


# -------------------------------------------------------------------------------------- writing


class Writer:
    """Builds a message: fields given as text (escaped here) or nested lists for components.

    A field value is ``str`` (one component), ``list`` of components (each ``str`` or ``list`` of
    subcomponents), or :class:`Reps` (repetitions of either). Trailing empty parts are dropped.
    """

    def __init__(self, seps: Separators = DEFAULT_SEPARATORS) -> None:
        self.seps = seps
        self.lines: list[str] = []

    def _component(self, value: Any, formatted: bool) -> str:
        if isinstance(value, list):
            return _join(
                self.seps.subcomponent, [escape(v or "", self.seps, formatted=formatted) for v in value]
            )
        return escape(value or "", self.seps, formatted=formatted)

    def _repetition(self, value: Any, formatted: bool) -> str:
        if isinstance(value, list):
            return _join(self.seps.component, [self._component(c, formatted) for c in value])
        return self._component(value, formatted)

    def _field(self, value: Any, formatted: bool = False) -> str:
        if isinstance(value, Reps):
            return _join(self.seps.repetition, [self._repetition(r, value.formatted) for r in value.items])
        if isinstance(value, Raw):
            return value.text
        return self._repetition(value, formatted)

    def segment(self, name: str, *fields: Any) -> None:
        """Append a segment; ``fields[0]`` is field 1 (for MSH: MSH-3, the separators are added here)."""
        parts = [self._field(f) for f in fields]
        while parts and parts[-1] == "":
            parts.pop()
        if name == "MSH":
            head = f"MSH{self.seps.field}{self.seps.encoding_characters}"
            self.lines.append(head + "".join(self.seps.field + p for p in parts))
        else:
            self.lines.append(self.seps.field.join([name, *parts]))

    def text(self) -> str:
        return "\r".join(self.lines) + "\r"


@dataclass(frozen=True, slots=True)
class Reps:
    """Repetitions of a field (``formatted``: FT text, where LF becomes ``\\.br\\``)."""

    items: list[Any]
    formatted: bool = False


@dataclass(frozen=True, slots=True)
class Raw:
    """A field written as is (already encoded)."""

    text: str


def _join(sep: str, parts: list[str]) -> str:
    while parts and parts[-1] == "":
        parts.pop()
    return sep.join(parts)
