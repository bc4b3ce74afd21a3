"""Message structures (segment grammars) in HL7's abstract message syntax, and the check of a
message's segment order against them.

``[ X ]`` optional, ``{ X }`` one or more, ``[{ X }]`` any number; groups nest. The check is greedy
(HL7 structures are designed to be read left to right without backtracking) and **liberal**, as
HAPI's and Mirth's parsers are with real partners:

* a segment that cannot be placed where it stands (out of place, repeated where one is allowed, or
  not part of the v2.5.1 structure at all, e.g. PRT from v2.7+) is skipped by the check and reported
  as a *warning*: an :class:`~mappings.hl7v2.errors.Hl7Error` 100 with severity ``W``, located. The
  segment stays in the message (and in the stored raw message); the mappings read segments by name
  and group, so what maps is mapped wherever it stood;
* a required segment that stands elsewhere in the message counts as present where it is needed;
* Z-segments are allowed anywhere, without a warning (they are local by definition);
* only a required segment absent from the whole message (or a structure the check cannot read at
  all) raises :class:`~mappings.hl7v2.errors.Hl7Error` 100, answered AE.

``strict=True`` keeps the old behaviour for readers that want it: the first warning is raised as an
error.

The structures follow HL7 v2.5.1 (REF_I12, OMG_O19, ADT_A01 / ADT_A05, SIU_S12, MDM_T02), slightly
relaxed where senders commonly deviate: PV1 is optional in ADT, OBX may stand without OBR in REF.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from functools import cache

from mappings.hl7v2.errors import SEGMENT_SEQUENCE_ERROR, ErrorLocation, Hl7Error

__all__ = ["MAX_LIBERAL_SEGMENTS", "MAX_WARNINGS", "STRUCTURES", "check_structure", "segments_of"]

#: warnings kept per message (an ACK with hundreds of ERR segments helps nobody)
MAX_WARNINGS = 20

STRUCTURES: dict[str, str] = {
    "REF_I12": """
        MSH [{SFT}] [RF1] [{AUT [CTD]}] {PRD [{CTD}]} PID [{NK1}] [{GT1}] [{IN1 [IN2] [{IN3}]}] [ACC]
        [{DG1}] [{DRG}] [{AL1}] [{PR1 [{AUT [CTD]}]}]
        [{OBR [{NTE}] [{OBX [{NTE}]}]}] [{OBX [{NTE}]}]
        [PV1 [PV2]] [{NTE}]
    """,
    "RRI_I12": """
        MSH [{SFT}] [MSA] [RF1] [{AUT [CTD]}] {PRD [{CTD}]} PID [ACC] [{DG1}] [{DRG}] [{AL1}]
        [{PR1 [{AUT [CTD]}]}] [{OBR [{NTE}] [{OBX [{NTE}]}]}] [PV1 [PV2]] [{NTE}]
    """,
    "OMG_O19": """
        MSH [{SFT}] [{NTE}]
        [PID [PD1] [{NTE}] [{NK1}] [PV1 [PV2]] [{IN1 [IN2] [IN3]}] [GT1] [{AL1}]]
        {ORC [{TQ1 [{TQ2}]}] OBR [{NTE}] [{CTD}] [{DG1}] [{OBX [{NTE}]}] [{FT1}] [{CTI}] [BLG]}
    """,
    "OSU_O51": "MSH [{SFT}] [{NTE}] [PID] {ORC [{TQ1 [{TQ2}]}]}",
    "ADT_A01": """
        MSH [{SFT}] EVN PID [PD1] [{ROL}] [{NK1}] [PV1] [PV2] [{ROL}] [{DB1}] [{OBX [{NTE}]}] [{AL1}]
        [{DG1}] [DRG] [{PR1 [{ROL}]}] [{GT1}] [{IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2] [PDA]
    """,
    "ACK": "MSH [{SFT}] MSA [{ERR}]",
    "SIU_S12": """
        MSH [{SFT}] SCH [TQ1] [{NTE}] [{PID [PD1] [PV1] [PV2] [{OBX}] [{DG1}]}]
        {RGS [{AIS [{NTE}]}] [{AIG [{NTE}]}] [{AIL [{NTE}]}] [{AIP [{NTE}]}]}
    """,
    "MDM_T02": "MSH [{SFT}] EVN PID PV1 [{CON}] TXA {OBX [{NTE}]}",
}
#: message type^event -> structure, when MSH-9.3 is empty
DEFAULT_STRUCTURE: dict[str, str] = {
    "REF^I12": "REF_I12",
    "RRI^I12": "RRI_I12",
    "OMG^O19": "OMG_O19",
    "OSU^O51": "OSU_O51",
    "ADT^A04": "ADT_A01",
    "ADT^A08": "ADT_A01",
    "ADT^A31": "ADT_A01",
    "ADT^A05": "ADT_A01",
    "ADT^A01": "ADT_A01",
    "SIU^S12": "SIU_S12",
    "SIU^S13": "SIU_S12",
    "SIU^S14": "SIU_S12",
    "SIU^S15": "SIU_S12",
    "SIU^S26": "SIU_S12",
    "MDM^T02": "MDM_T02",
    "MDM^T08": "MDM_T02",
    "MDM^T10": "MDM_T02",
}


# ------------------------------------------------------------------------------- grammar nodes


@dataclass(frozen=True, slots=True)
class _Seg:
    name: str


@dataclass(frozen=True, slots=True)
class _Seq:
    items: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class _Opt:
    item: object


@dataclass(frozen=True, slots=True)
class _Rep:
    item: object


_TOKEN = re.compile(r"\s*([\[\]{}]|[A-Z][A-Z0-9]{2})")


@cache
def _grammar(structure: str) -> _Seq:
    text = STRUCTURES[structure]
    tokens = _TOKEN.findall(text)
    pos = 0

    def sequence(closing: str | None) -> _Seq:
        nonlocal pos
        items: list[object] = []
        while pos < len(tokens):
            token = tokens[pos]
            pos += 1
            if token == closing:
                return _Seq(tuple(items))
            if token == "[":
                items.append(_Opt(sequence("]")))
            elif token == "{":
                items.append(_Rep(sequence("}")))
            elif token in "]}":
                raise ValueError(f"unbalanced {token} in structure {structure}")
            else:
                items.append(_Seg(token))
        if closing is not None:
            raise ValueError(f"unclosed group in structure {structure}")
        return _Seq(tuple(items))

    return sequence(None)


class _Matcher:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.furthest = 0
        self.expected: str | None = None

    def match(self, node: object, i: int) -> int | None:
        if isinstance(node, _Seg):
            if i < len(self.names) and self.names[i] == node.name:
                if i + 1 > self.furthest:
                    self.furthest, self.expected = i + 1, None
                return i + 1
            if i >= self.furthest:  # the last segment tried at the furthest point: the one required
                self.furthest, self.expected = i, node.name
            return None
        if isinstance(node, _Seq):
            for item in node.items:
                result = self.match(item, i)
                if result is None:
                    return None
                i = result
            return i
        if isinstance(node, _Opt):
            result = self.match(node.item, i)
            return i if result is None else result
        assert isinstance(node, _Rep)
        result = self.match(node.item, i)
        if result is None:
            return None
        while True:
            again = self.match(node.item, result)
            if again is None or again == result:
                return result
            result = again


@cache
def segments_of(structure: str) -> frozenset[str]:
    """The segment ids that ``structure`` names anywhere."""
    return frozenset(t for t in _TOKEN.findall(STRUCTURES[structure]) if t not in "[]{}")


def _warning(text: str, names: list[str], index: int) -> Hl7Error:
    name = names[index]
    location = ErrorLocation(name, names[: index + 1].count(name))
    return Hl7Error(SEGMENT_SEQUENCE_ERROR, text, location, severity="W")


def _missing(structure: str, name: str) -> Hl7Error:
    return Hl7Error(
        SEGMENT_SEQUENCE_ERROR, f"required segment {name} is missing ({structure})", ErrorLocation(name, 1)
    )


# ------------------------------------------------------------------ the liberal check: fewest changes

Edges = tuple[tuple[tuple[str | None, int], ...], ...]


@cache
def _automaton(structure: str) -> tuple[Edges, int]:
    """The structure as a nondeterministic automaton: per state its (segment id or None for an empty
    move, next state) edges; state 0 starts, the returned state accepts. Loops only ever go back to a
    state of their own, so a repetition never re-enters what stands before it."""
    edges: list[list[tuple[str | None, int]]] = [[]]

    def new() -> int:
        edges.append([])
        return len(edges) - 1

    def build(node: object, start: int) -> int:
        if isinstance(node, _Seg):
            end = new()
            edges[start].append((node.name, end))
            return end
        if isinstance(node, _Seq):
            for item in node.items:
                start = build(item, start)
            return start
        if isinstance(node, _Opt):
            end = build(node.item, start)
            edges[start].append((None, end))
            return end
        assert isinstance(node, _Rep)
        inner = new()
        edges[start].append((None, inner))
        end = build(node.item, inner)
        edges[end].append((None, inner))
        exit_ = new()
        edges[end].append((None, exit_))
        return exit_

    accept = build(_grammar(structure), 0)
    return tuple(tuple(e) for e in edges), accept


#: cost of skipping a segment (out of place) / an NTE (notes are what legacy systems put where they
#: like: a misplaced note is the likelier reading) / counting a segment that stands elsewhere in the
#: message where the structure needs it / one that the message lacks
_SKIP, _SKIP_NOTE, _ELSEWHERE, _ABSENT = 3, 1, 1, 10_000
#: beyond this many segments the liberal search is not tried (the greedy check's verdict stands)
MAX_LIBERAL_SEGMENTS = 1000


def _fewest_changes(structure: str, kept: list[str], present: set[str]) -> tuple[list[int], list[str]] | None:
    """The cheapest reading of ``kept`` as ``structure`` (Dijkstra over (position, state)): the
    positions skipped as out of place, and the segments the message lacks altogether (in order)."""
    edges, accept = _automaton(structure)
    n = len(kept)
    best: dict[tuple[int, int], int] = {(0, 0): 0}
    back: dict[tuple[int, int], tuple[tuple[int, int], str, str | int]] = {}
    queue: list[tuple[int, int, int]] = [(0, 0, 0)]
    while queue:
        cost, i, state = heapq.heappop(queue)
        if cost > best.get((i, state), cost):
            continue
        if i == n and state == accept:
            skipped: list[int] = []
            absent: list[str] = []
            node = (i, state)
            while node in back:
                node, kind, what = back[node]
                if kind == "skip":
                    skipped.append(int(what))
                elif kind == "absent":
                    absent.append(str(what))
            return skipped[::-1], absent[::-1]
        moves: list[tuple[int, int, int, str, str | int]] = []
        if i < n:
            moves.append((cost + (_SKIP_NOTE if kept[i] == "NTE" else _SKIP), i + 1, state, "skip", i))
        for label, target in edges[state]:
            if label is None:
                moves.append((cost, i, target, "empty", ""))
            elif i < n and kept[i] == label:
                moves.append((cost, i + 1, target, "read", i))
            elif label in present:
                moves.append((cost + _ELSEWHERE, i, target, "elsewhere", label))
            else:
                moves.append((cost + _ABSENT, i, target, "absent", label))
        for new_cost, j, target, kind, what in moves:
            if new_cost < best.get((j, target), new_cost + 1):
                best[(j, target)] = new_cost
                back[(j, target)] = ((i, state), kind, what)
                heapq.heappush(queue, (new_cost, j, target))
    return None


def check_structure(structure: str, names: list[str], *, strict: bool = False) -> list[Hl7Error]:
    """Check the segment ``names`` (in order) against ``structure``; the warnings (severity W, HL7 100)
    for segments kept although out of place, repeated or unknown to the structure.

    Raises Hl7Error 100 when a required segment is absent from the message, or (``strict``) at the
    first segment out of place."""
    known = segments_of(structure)
    warnings: list[Hl7Error] = []
    positions: list[int] = []  # indices in ``names`` of the segments the structure knows
    for index, name in enumerate(names):
        if name.startswith("Z"):
            continue
        if name not in known:
            text = f"segment {name} is not part of {structure} (v2.5.1); kept, not validated"
            if strict:
                raise _warning(text.split(";")[0], names, index).as_error()
            if all(w.location is None or w.location.segment != name for w in warnings):
                warnings.append(_warning(text, names, index))
            continue
        positions.append(index)
    kept = [names[i] for i in positions]
    greedy = _greedy_error(structure, names, positions)
    if greedy is None:
        return warnings[:MAX_WARNINGS]
    if strict or len(kept) > MAX_LIBERAL_SEGMENTS:
        raise greedy
    found = _fewest_changes(structure, kept, set(kept))
    if found is None:  # pragma: no cover - every structure accepts some reading
        raise greedy
    skipped, absent = found
    if absent:
        raise _missing(structure, absent[0])
    skipped_set = set(skipped)
    for k in skipped:
        before = next((kept[j] for j in range(k - 1, -1, -1) if j not in skipped_set), None)
        how = f"is repeated where {structure} allows one" if before == kept[k] else f"is out of place in {structure}"
        warnings.append(_warning(f"segment {kept[k]} {how}; kept", names, positions[k]))
    return warnings[:MAX_WARNINGS]


def _greedy_error(structure: str, names: list[str], positions: list[int]) -> Hl7Error | None:
    """The greedy left-to-right check of the known segments: None when they fit, else the error the
    strict check gives (the first segment it cannot place, or the required segment it misses)."""
    kept = [names[i] for i in positions]
    matcher = _Matcher(kept)
    end = matcher.match(_grammar(structure), 0)
    if end == len(kept):
        return None
    stop = matcher.furthest if end is None else end
    missing = matcher.expected if end is None else None
    if missing and missing not in kept:  # a required segment is absent altogether: name it
        return _missing(structure, missing)
    if stop < len(kept):
        index = positions[stop]
        name = names[index]
        return Hl7Error(
            SEGMENT_SEQUENCE_ERROR,
            f"segment {name} is not expected here in {structure}",
            ErrorLocation(name, names[: index + 1].count(name)),
        )
    return _missing(structure, missing or "?")
