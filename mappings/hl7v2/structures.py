"""Message structures (segment grammars) in HL7's abstract message syntax, and the check of a
message's segment order against them.

``[ X ]`` optional, ``{ X }`` one or more, ``[{ X }]`` any number; groups nest. Z-segments are
allowed anywhere and ignored. The check is greedy (HL7 structures are designed to be read left to
right without backtracking) and reports the first segment it cannot place, or the first required
segment missing, as HL7 error 100 with its location.

The structures follow HL7 v2.5.1 (REF_I12, OMG_O19, ADT_A01 / ADT_A05, SIU_S12, MDM_T02), slightly
relaxed where senders commonly deviate: PV1 is optional in ADT, OBX may stand without OBR in REF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from mappings.hl7v2.errors import SEGMENT_SEQUENCE_ERROR, ErrorLocation, Hl7Error

__all__ = ["STRUCTURES", "check_structure"]

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


def check_structure(structure: str, names: list[str]) -> None:
    """Raise Hl7Error 100 when the segment ``names`` (in order) do not fit ``structure``."""
    positions = [i for i, name in enumerate(names) if not name.startswith("Z")]
    kept = [names[i] for i in positions]
    matcher = _Matcher(kept)
    end = matcher.match(_grammar(structure), 0)
    if end == len(kept):
        return
    stop = matcher.furthest if end is None else end
    missing = matcher.expected if end is None else None
    if missing and missing not in kept:  # a required segment is absent altogether: name it
        raise Hl7Error(
            SEGMENT_SEQUENCE_ERROR,
            f"required segment {missing} is missing ({structure})",
            ErrorLocation(missing, 1),
        )
    if stop < len(kept):
        index = positions[stop]
        name = names[index]
        sequence = names[: index + 1].count(name)
        raise Hl7Error(
            SEGMENT_SEQUENCE_ERROR,
            f"segment {name} is not expected here in {structure}",
            ErrorLocation(name, sequence),
        )
    missing = missing or "?"
    raise Hl7Error(
        SEGMENT_SEQUENCE_ERROR,
        f"required segment {missing} is missing ({structure})",
        ErrorLocation(missing, 1),
    )
