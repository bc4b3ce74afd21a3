"""Reading the 999 implementation acknowledgement (005010X231A1) and the TA1 interchange acknowledgement.

A 999 answers one functional group (AK1) of ours: per transaction set (AK2) whether it was accepted
(IK5), and if not, which segments (IK3, with the CTX business unit that names the claim, e.g.
``CTX*CLM01:PCN123``) and which elements (IK4) were wrong; AK9 gives the status of the whole group.

The reader is liberal: optional segments may be missing, unknown codes are kept with
``description=None``. What breaks the structure (no AK1, an IK4 outside an IK3, an AK2 without IK5,
an unknown segment) becomes an :class:`X12Error` in :attr:`AckReport.errors` naming the segment,
its position in the file and the rule; everything around it is still read.
"""

from __future__ import annotations

from dataclasses import dataclass

from mappings.x12.ack_codes import (
    ACCEPTED_STATUSES,
    ACK_STATUS,
    ELEMENT_ERROR,
    GROUP_ERROR,
    SEGMENT_ERROR,
    TA1_NOTE,
    TRANSACTION_ERROR,
    Coded,
    coded,
)
from mappings.x12.reader import Segment, TransactionSet, X12Error

SITUATIONAL_TRIGGER = "SITUATIONAL TRIGGER"
# the 997 functional acknowledgement that some partners still send has the same shape with AK3/AK4/AK5
_FROM_997 = {"AK3": "IK3", "AK4": "IK4", "AK5": "IK5"}


@dataclass(frozen=True, slots=True)
class Context:
    """A CTX segment: a business unit (``CLM01`` + the patient control number) or a situational trigger.

    For a trigger, ``segment_id``/``position``/``loop_id``/``element`` name the segment whose
    presence made the erroneous one required or forbidden.
    """

    name: str  # CTX01-1: "CLM01" (business unit) or "SITUATIONAL TRIGGER"
    reference: str  # CTX01-2: the business unit value (patient control number for CLM01)
    segment_id: str = ""  # CTX02
    position: int | None = None  # CTX03: segment position in the transaction set
    loop_id: str = ""  # CTX04
    element: tuple[str, ...] = ()  # CTX05 components: element, component, repetition position

    @property
    def is_business_unit(self) -> bool:
        return self.name.upper() != SITUATIONAL_TRIGGER


@dataclass(frozen=True, slots=True)
class ElementError:
    """IK4: one element in error inside the segment of the enclosing IK3."""

    position: int | None  # IK401-1: element position in the segment
    component: int | None  # IK401-2: component position in a composite
    repetition: int | None  # IK401-3: repeating element position
    reference_number: str  # IK402: data element reference number (e.g. 66 for NM108)
    error: Coded  # IK403
    bad_value: str  # IK404: copy of the bad data element ('' when not sent)
    contexts: tuple[Context, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentError:
    """IK3: one segment in error, with its contexts and its element errors."""

    segment_id: str  # IK301
    position: int | None  # IK302: segment position in the transaction set (ST = 1)
    loop_id: str  # IK303 (e.g. "2300"), '' when not sent
    error: Coded  # IK304
    contexts: tuple[Context, ...] = ()
    elements: tuple[ElementError, ...] = ()

    @property
    def business_unit(self) -> Context | None:
        """The business unit CTX (e.g. ``CLM01`` + patient control number) naming the claim, if sent."""
        return next((c for c in self.contexts if c.is_business_unit), None)


@dataclass(frozen=True, slots=True)
class TransactionResponse:
    """AK2 .. IK5: the answer for one transaction set of the acknowledged group."""

    set_id: str  # AK201 (837)
    control_number: str  # AK202 = the ST02 we sent
    implementation_reference: str  # AK203 (005010X222A1)
    status: Coded | None  # IK501; None when the IK5 is missing
    errors: tuple[Coded, ...]  # IK502..IK506
    segment_errors: tuple[SegmentError, ...]

    @property
    def accepted(self) -> bool:
        """IK501 A or E (accepted, possibly with errors noted)."""
        return self.status is not None and self.status.code in ACCEPTED_STATUSES

    @property
    def rejected_claims(self) -> tuple[str, ...]:
        """The patient control numbers (CLM01) named by the business unit contexts of the segment errors."""
        seen: list[str] = []
        for error in self.segment_errors:
            unit = error.business_unit
            if unit is not None and unit.name.upper() == "CLM01" and unit.reference not in seen:
                seen.append(unit.reference)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class GroupResponse:
    """AK9: the status of the whole functional group and its counts."""

    status: Coded  # AK901 (A, E, P, R...)
    included: int | None  # AK902: transaction sets in the group
    received: int | None  # AK903
    accepted: int | None  # AK904
    errors: tuple[Coded, ...]  # AK905..AK909


@dataclass(frozen=True, slots=True)
class AckReport:
    """One 999 transaction set, read."""

    control_number: str  # ST02 of the 999
    functional_id: str  # AK101 of the acknowledged group (HC for 837)
    group_control_number: str  # AK102 = the GS06 we sent
    version: str  # AK103 (005010X222A1)
    transactions: tuple[TransactionResponse, ...]
    group: GroupResponse | None  # None when the AK9 is missing
    errors: tuple[X12Error, ...] = ()  # what was wrong with the 999 itself

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class InterchangeAck:
    """TA1: whether an interchange (ISA13) of ours was accepted."""

    control_number: str  # TA101 = the ISA13 we sent
    date: str  # TA102 YYMMDD
    time: str  # TA103 HHMM
    status: Coded  # TA104: A, E or R
    note: Coded  # TA105
    position: int  # position of the TA1 in the file

    @property
    def accepted(self) -> bool:
        return self.status.code in ACCEPTED_STATUSES


def read_ta1(seg: Segment) -> InterchangeAck:
    """Read a TA1 segment (found in :attr:`Interchange.acknowledgements`)."""
    return InterchangeAck(
        control_number=seg.get(1).strip(),
        date=seg.get(2),
        time=seg.get(3),
        status=coded(seg.get(4), ACK_STATUS),
        note=coded(seg.get(5), TA1_NOTE),
        position=seg.position,
    )


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def _codes(seg: Segment, first: int, last: int, table: dict[str, str]) -> tuple[Coded, ...]:
    return tuple(coded(seg.get(i), table) for i in range(first, last + 1) if seg.get(i))


def _context(seg: Segment) -> Context:
    unit = seg.components(1)
    return Context(
        name=unit[0] if unit else "",
        reference=unit[1] if len(unit) > 1 else "",
        segment_id=seg.get(2),
        position=_int(seg.get(3)),
        loop_id=seg.get(4),
        element=seg.components(5),
    )


@dataclass(slots=True)
class _OpenSegmentError:
    seg: Segment
    contexts: list[Context]
    elements: list[ElementError]
    element_contexts: list[Context]
    element: Segment | None = None

    def close_element(self) -> None:
        if self.element is not None:
            ik4 = self.element
            where = ik4.components(1)
            self.elements.append(ElementError(
                position=_int(where[0]) if where else None,
                component=_int(where[1]) if len(where) > 1 else None,
                repetition=_int(where[2]) if len(where) > 2 else None,
                reference_number=ik4.get(2),
                error=coded(ik4.get(3), ELEMENT_ERROR),
                bad_value=ik4.get(4),
                contexts=tuple(self.element_contexts),
            ))
        self.element = None
        self.element_contexts = []

    def build(self) -> SegmentError:
        self.close_element()
        ik3 = self.seg
        return SegmentError(ik3.get(1), _int(ik3.get(2)), ik3.get(3), coded(ik3.get(4), SEGMENT_ERROR),
                            tuple(self.contexts), tuple(self.elements))


class _Reader999:
    def __init__(self, ts: TransactionSet) -> None:
        self.ts = ts
        self.errors: list[X12Error] = list(ts.errors)
        self.transactions: list[TransactionResponse] = []
        self.ak1: Segment | None = None
        self.ak9: Segment | None = None
        self.ak2: Segment | None = None
        self.segment_errors: list[SegmentError] = []
        self.open: _OpenSegmentError | None = None

    def error(self, rule: str, seg: Segment, message: str, element: int | None = None) -> None:
        self.errors.append(X12Error(rule, seg.id, seg.position, message, element, self.ts.control_number))

    def close_segment_error(self) -> None:
        if self.open is not None:
            self.segment_errors.append(self.open.build())
            self.open = None

    def close_transaction(self, ik5: Segment | None, at: Segment) -> None:
        self.close_segment_error()
        if self.ak2 is None:
            return
        if ik5 is None:
            self.error("x12.999.missing-ik5", at, f"the transaction set response (AK2 at segment "
                       f"{self.ak2.position}) has no IK5 before this {at.id}")
        self.transactions.append(TransactionResponse(
            set_id=self.ak2.get(1),
            control_number=self.ak2.get(2),
            implementation_reference=self.ak2.get(3),
            status=coded(ik5.get(1), ACK_STATUS) if ik5 is not None else None,
            errors=_codes(ik5, 2, 6, TRANSACTION_ERROR) if ik5 is not None else (),
            segment_errors=tuple(self.segment_errors),
        ))
        self.ak2 = None
        self.segment_errors = []

    def read(self) -> AckReport:
        if self.ts.id not in ("999", "997"):
            self.error("x12.999.not-999", self.ts.segments[0], f"transaction set {self.ts.id or '(none)'} "
                       "is not a 999 (nor a 997)", element=1)
        for seg in self.ts.body:
            self.segment(seg)
        end = self.ts.segments[-1]
        self.close_transaction(None, end)
        if self.ak1 is None:
            self.error("x12.999.missing-ak1", self.ts.segments[0], "the 999 has no AK1 (the acknowledged group)")
        if self.ak9 is None:
            self.error("x12.999.missing-ak9", end, "the 999 has no AK9 (the status of the group)")
        ak1, ak9 = self.ak1, self.ak9
        group = None
        if ak9 is not None:
            group = GroupResponse(coded(ak9.get(1), ACK_STATUS), _int(ak9.get(2)), _int(ak9.get(3)),
                                  _int(ak9.get(4)), _codes(ak9, 5, 9, GROUP_ERROR))
        return AckReport(
            control_number=self.ts.control_number,
            functional_id=ak1.get(1) if ak1 else "",
            group_control_number=ak1.get(2) if ak1 else "",
            version=ak1.get(3) if ak1 else "",
            transactions=tuple(self.transactions),
            group=group,
            errors=tuple(self.errors),
        )

    def segment(self, seg: Segment) -> None:
        sid = _FROM_997.get(seg.id, seg.id) if self.ts.id == "997" else seg.id
        if sid == "AK1":
            if self.ak1 is not None:
                self.error("x12.999.repeated-ak1", seg, "a second AK1: a 999 acknowledges one group")
            else:
                self.ak1 = seg
        elif sid == "AK2":
            self.close_transaction(None, seg)
            if self.ak1 is None:
                self.error("x12.999.sequence", seg, "AK2 before AK1")
            self.ak2 = seg
        elif sid == "IK3":
            if self.ak2 is None:
                self.error("x12.999.sequence", seg, "IK3 outside a transaction set response (no AK2 before it)")
                return
            self.close_segment_error()
            self.open = _OpenSegmentError(seg, [], [], [])
        elif sid == "IK4":
            if self.open is None:
                self.error("x12.999.sequence", seg, "IK4 outside a segment error (no IK3 before it)")
                return
            self.open.close_element()
            self.open.element = seg
        elif sid == "CTX":
            if self.open is None:
                self.error("x12.999.sequence", seg, "CTX outside a segment error (no IK3 before it)")
            elif self.open.element is not None:
                self.open.element_contexts.append(_context(seg))
            else:
                self.open.contexts.append(_context(seg))
        elif sid == "IK5":
            if self.ak2 is None:
                self.error("x12.999.sequence", seg, "IK5 outside a transaction set response (no AK2 before it)")
                return
            self.close_transaction(seg, seg)
        elif sid == "AK9":
            self.close_transaction(None, seg)
            if self.ak9 is not None:
                self.error("x12.999.repeated-ak9", seg, "a second AK9")
            else:
                self.ak9 = seg
        else:
            self.error("x12.999.unknown-segment", seg, f"segment {sid} is not part of a 999")


def read_999(ts: TransactionSet) -> AckReport:
    """Read one 999 transaction set (see the module docstring for what becomes an error).

    A 997 is read the same way: its AK3/AK4/AK5 are the IK3/IK4/IK5 of the 999.
    """
    return _Reader999(ts).read()
