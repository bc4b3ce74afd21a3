"""Reading the 277CA health care claim acknowledgement (005010X214).

The 277CA is a hierarchy of HL levels: 20 information source (the payer or clearinghouse, 2000A),
21 information receiver (the submitter, 2000B), 19 billing provider (2000C), PT patient (2000D).
Under a patient each claim (2200D) starts with ``TRN*2*<CLM01 we sent>`` and carries its statuses
(STC: category:status:entity composite in STC01, repeated in STC10/STC11, date, action code, amount),
``REF*1K`` the payer's claim control number, ``REF*D9`` the clearinghouse trace number and
``DTP*472`` the service dates; service lines (2220D) start with SVC and carry their own STC,
``REF*FJ`` line item control number and ``DTP*472``.

Each claim and line gets a classification (``accepted | rejected | pending | other``, see
:func:`mappings.x12.ack_codes.classify_category`). Liberal: missing optional segments are fine,
unknown codes are kept with ``description=None``; what breaks the structure (no BHT, an HL whose
parent is unknown, a status outside any claim, a bad date or amount, an unknown segment) becomes an
:class:`X12Error` in :attr:`ClaimAckReport.errors` naming segment, position and rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from mappings.x12.ack_codes import (
    CLAIM_STATUS,
    CLAIM_STATUS_CATEGORY,
    ENTITY,
    Classification,
    Coded,
    classify_category,
    coded,
    overall,
)
from mappings.x12.reader import Segment, TransactionSet, X12Error

LEVELS = {"20": "information source", "21": "information receiver", "19": "billing provider", "PT": "patient"}
_KNOWN = frozenset({"BHT", "HL", "NM1", "TRN", "STC", "REF", "DTP", "QTY", "AMT", "SVC", "PER"})


@dataclass(frozen=True, slots=True)
class Party:
    """NM1 of a level: who the payer, the receiver, the billing provider or the patient is."""

    entity: str  # NM101: PR, 41, 85, QC
    name: str  # NM103: last or organisation name
    first_name: str  # NM104
    id_qualifier: str  # NM108: PI, 46, XX, MI...
    id: str  # NM109


@dataclass(frozen=True, slots=True)
class StatusDetail:
    """One category:status:entity composite (STC01, STC10 or STC11)."""

    category: Coded  # C043-1, code source 507 (A1, A2, A7...)
    status: Coded  # C043-2, code source 508 (19, 20, 21, 562...); code '' when not sent
    entity: Coded | None  # C043-3 entity identifier (85 billing provider, QC patient...)

    @property
    def classification(self) -> Classification:
        return classify_category(self.category.code)


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """One STC segment."""

    details: tuple[StatusDetail, ...]  # STC01, STC10, STC11 in that order
    effective_date: date | None  # STC02: status information effective date
    action: str  # STC03: WQ accept, U reject ('' when not sent)
    amount: Decimal | None  # STC04: total claim (or line) charge
    message: str  # STC12: free-form message text ('' when not sent)
    position: int  # the STC's position in the file

    @property
    def classification(self) -> Classification:
        return overall([d.classification for d in self.details])


@dataclass(frozen=True, slots=True)
class LevelStatus:
    """A status given above the claims (2200A/B/C): e.g. the receipt of the whole batch by the receiver."""

    level: str  # HL03: 20, 21 or 19
    party: Party | None
    trace: str  # TRN02 of the level ('' when none)
    statuses: tuple[StatusInfo, ...]
    quantities: tuple[tuple[str, Decimal], ...]  # QTY: (90 accepted | AA rejected | QA | QC, count)
    amounts: tuple[tuple[str, Decimal], ...]  # AMT: (YU accepted | YY rejected, amount)
    dates: tuple[tuple[str, date], ...] = ()  # DTP: (050 received | 009 processed, date)


@dataclass(frozen=True, slots=True)
class ServiceLineAck:
    """2220D: the status of one service line."""

    procedure: tuple[str, ...]  # SVC01 components: qualifier, code, modifiers (HC, 97110, GP)
    charge: Decimal | None  # SVC02
    revenue_code: str  # SVC04
    units: Decimal | None  # SVC07
    line_control_number: str  # REF*FJ = the REF*6R line item control number we sent
    service_from: date | None  # DTP*472
    service_to: date | None
    statuses: tuple[StatusInfo, ...]
    position: int

    @property
    def classification(self) -> Classification:
        return overall([s.classification for s in self.statuses])


@dataclass(frozen=True, slots=True)
class ClaimAck:
    """2200D: the acknowledgement of one claim we sent."""

    patient_control_number: str  # TRN02 = the CLM01 we sent
    payer_claim_control_number: str  # REF*1K ('' when not assigned, e.g. rejected)
    clearinghouse_trace: str  # REF*D9
    bill_type: str  # REF*BLT (institutional)
    references: tuple[tuple[str, str], ...]  # every REF of the claim (1K, D9, BLT, EA medical record...)
    service_from: date | None  # DTP*472 (D8 or RD8)
    service_to: date | None
    statuses: tuple[StatusInfo, ...]
    lines: tuple[ServiceLineAck, ...]
    payer: Party | None  # from the 2000A level above the claim
    receiver: Party | None  # 2000B
    provider: Party | None  # 2000C
    patient: Party | None  # 2000D
    position: int  # the claim's TRN position in the file

    @property
    def classification(self) -> Classification:
        """Of the claim's own statuses; when it has none, of its lines.

        A rejected line under an accepted claim leaves the claim accepted (the payer took the claim
        in); the line's own classification says it was not.
        """
        if self.statuses:
            return overall([s.classification for s in self.statuses])
        return overall([line.classification for line in self.lines])


@dataclass(frozen=True, slots=True)
class ClaimAckReport:
    """One 277CA transaction set, read."""

    control_number: str  # ST02
    reference: str  # BHT03: originator application transaction identifier
    created: date | None  # BHT04
    levels: tuple[LevelStatus, ...]
    claims: tuple[ClaimAck, ...]
    errors: tuple[X12Error, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(slots=True)
class _Level:
    code: str
    parent: str
    party: Party | None = None
    trace: str = ""
    statuses: list[StatusInfo] = field(default_factory=list)
    quantities: list[tuple[str, Decimal]] = field(default_factory=list)
    amounts: list[tuple[str, Decimal]] = field(default_factory=list)
    dates: list[tuple[str, date]] = field(default_factory=list)


@dataclass(slots=True)
class _Line:
    seg: Segment
    control: str = ""
    dates: tuple[date | None, date | None] = (None, None)
    statuses: list[StatusInfo] = field(default_factory=list)


@dataclass(slots=True)
class _Claim:
    trn: Segment
    level: str  # HL01 of the patient level
    references: dict[str, str] = field(default_factory=dict)
    dates: tuple[date | None, date | None] = (None, None)
    statuses: list[StatusInfo] = field(default_factory=list)
    lines: list[_Line] = field(default_factory=list)


class _Reader277:
    def __init__(self, ts: TransactionSet) -> None:
        self.ts = ts
        self.errors: list[X12Error] = list(ts.errors)
        self.levels: dict[str, _Level] = {}
        self.order: list[str] = []
        self.level: _Level | None = None
        self.level_id = ""
        self.claims: list[_Claim] = []
        self.claim: _Claim | None = None
        self.line: _Line | None = None
        self.bht: Segment | None = None

    def error(self, rule: str, seg: Segment, message: str, element: int | None = None) -> None:
        self.errors.append(X12Error(rule, seg.id, seg.position, message, element, self.ts.control_number))

    # values ---------------------------------------------------------------------------------
    def parse_date(self, seg: Segment, index: int, value: str) -> date | None:
        if not value:
            return None
        try:
            if len(value) != 8 or not value.isdigit():
                raise ValueError(value)
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            self.error("x12.277.date", seg, f"element {index} is not a CCYYMMDD date", element=index)
            return None

    def decimal(self, seg: Segment, index: int) -> Decimal | None:
        value = seg.get(index).strip()
        if not value:
            return None
        try:
            return Decimal(value)
        except InvalidOperation:
            self.error("x12.277.number", seg, f"element {index} is not a number", element=index)
            return None

    def period(self, seg: Segment) -> tuple[date | None, date | None]:
        qualifier, value = seg.get(2), seg.get(3)
        if qualifier == "RD8" and "-" in value:
            start, _, end = value.partition("-")
            return self.parse_date(seg, 3, start), self.parse_date(seg, 3, end)
        one = self.parse_date(seg, 3, value)
        return one, one

    def status(self, seg: Segment) -> StatusInfo:
        details: list[StatusDetail] = []
        for index in (1, 10, 11):
            parts = seg.components(index)
            if not parts or not parts[0]:
                if index == 1:
                    self.error("x12.277.stc-category", seg, "STC01 has no claim status category code", element=1)
                continue
            entity = parts[2] if len(parts) > 2 and parts[2] else ""
            details.append(StatusDetail(
                category=coded(parts[0], CLAIM_STATUS_CATEGORY),
                status=coded(parts[1] if len(parts) > 1 else "", CLAIM_STATUS),
                entity=coded(entity, ENTITY) if entity else None,
            ))
        return StatusInfo(tuple(details), self.parse_date(seg, 2, seg.get(2)), seg.get(3), self.decimal(seg, 4),
                          seg.get(12), seg.position)

    # structure ------------------------------------------------------------------------------
    def read(self) -> ClaimAckReport:
        if self.ts.id != "277":
            self.error("x12.277.not-277", self.ts.segments[0], f"transaction set {self.ts.id or '(none)'} "
                       "is not a 277", element=1)
        for seg in self.ts.body:
            self.segment(seg)
        if self.bht is None:
            self.error("x12.277.missing-bht", self.ts.segments[0], "the 277 has no BHT (beginning of hierarchy)")
        if not self.levels:
            self.error("x12.277.no-hierarchy", self.ts.segments[-1], "the 277 has no HL level")
        for claim in self.claims:
            if not claim.statuses and not any(line.statuses for line in claim.lines):
                self.error("x12.277.missing-stc", claim.trn, "the claim (TRN) has no STC status")
        bht = self.bht
        created = self.parse_date(bht, 4, bht.get(4)) if bht else None
        levels = tuple(self.level_status(hl) for hl in self.order if self.levels[hl].code != "PT")
        claims = tuple(self.build(c) for c in self.claims)  # before the errors: a bad amount is one
        return ClaimAckReport(
            control_number=self.ts.control_number,
            reference=bht.get(3) if bht else "",
            created=created,
            levels=levels,
            claims=claims,
            errors=tuple(self.errors),
        )

    def level_status(self, hl: str) -> LevelStatus:
        level = self.levels[hl]
        return LevelStatus(level.code, level.party, level.trace, tuple(level.statuses), tuple(level.quantities),
                           tuple(level.amounts), tuple(level.dates))

    def parties(self, hl: str) -> dict[str, Party | None]:
        found: dict[str, Party | None] = {}
        seen: set[str] = set()
        while hl in self.levels and hl not in seen:
            seen.add(hl)
            level = self.levels[hl]
            found.setdefault(level.code, level.party)
            hl = level.parent
        return found

    def build(self, claim: _Claim) -> ClaimAck:
        parties = self.parties(claim.level)
        lines = tuple(
            ServiceLineAck(
                procedure=line.seg.components(1),
                charge=self.decimal(line.seg, 2),
                revenue_code=line.seg.get(4),
                units=self.decimal(line.seg, 7),
                line_control_number=line.control,
                service_from=line.dates[0],
                service_to=line.dates[1],
                statuses=tuple(line.statuses),
                position=line.seg.position,
            )
            for line in claim.lines
        )
        return ClaimAck(
            patient_control_number=claim.trn.get(2),
            payer_claim_control_number=claim.references.get("1K", ""),
            clearinghouse_trace=claim.references.get("D9", ""),
            bill_type=claim.references.get("BLT", ""),
            references=tuple(claim.references.items()),
            service_from=claim.dates[0],
            service_to=claim.dates[1],
            statuses=tuple(claim.statuses),
            lines=lines,
            payer=parties.get("20"),
            receiver=parties.get("21"),
            provider=parties.get("19"),
            patient=parties.get("PT"),
            position=claim.trn.position,
        )

    def segment(self, seg: Segment) -> None:
        sid = seg.id
        if sid not in _KNOWN:
            self.error("x12.277.unknown-segment", seg, f"segment {sid} is not part of a 277CA")
            return
        if sid == "BHT":
            self.bht = seg
            return
        if sid == "HL":
            self.hl(seg)
            return
        level = self.level
        if level is None:
            self.error("x12.277.sequence", seg, f"{sid} before the first HL")
            return
        if sid == "NM1":
            if self.claim is None:
                level.party = Party(seg.get(1), seg.get(3), seg.get(4), seg.get(8), seg.get(9))
        elif sid == "TRN":
            self.trn(seg, level)
        elif sid == "STC":
            status = self.status(seg)
            if self.line is not None:
                self.line.statuses.append(status)
            elif self.claim is not None:
                self.claim.statuses.append(status)
            elif level.code == "PT":
                self.error("x12.277.sequence", seg, "STC at the patient level before the claim's TRN")
            else:
                level.statuses.append(status)
        elif sid == "REF":
            if self.line is not None:
                if seg.get(1) == "FJ":
                    self.line.control = seg.get(2)
            elif self.claim is not None:
                self.claim.references.setdefault(seg.get(1), seg.get(2))
        elif sid == "DTP":
            if self.line is not None:
                if seg.get(1) == "472":
                    self.line.dates = self.period(seg)
            elif self.claim is not None:
                if seg.get(1) == "472":
                    self.claim.dates = self.period(seg)
            else:
                start, _ = self.period(seg)
                if start is not None:
                    level.dates.append((seg.get(1), start))
        elif sid == "SVC":
            if self.claim is None:
                self.error("x12.277.sequence", seg, "SVC outside a claim (no TRN before it at the patient level)")
                return
            self.line = _Line(seg)
            self.claim.lines.append(self.line)
        elif sid in ("QTY", "AMT"):
            value = self.decimal(seg, 2)
            if value is not None and self.claim is None:
                (level.quantities if sid == "QTY" else level.amounts).append((seg.get(1), value))

    def hl(self, seg: Segment) -> None:
        hl_id, parent, code = seg.get(1), seg.get(2), seg.get(3)
        if code not in LEVELS:
            self.error("x12.277.hl-level", seg, f"HL03 {code or '(none)'} is not a 277CA level (20, 21, 19, PT)",
                       element=3)
        if parent and parent not in self.levels:
            self.error("x12.277.hl-parent", seg, "HL02 names a parent level that was not given before",
                       element=2)
        if hl_id in self.levels:
            self.error("x12.277.hl-id", seg, "HL01 repeats the id of an earlier level", element=1)
            hl_id = f"{hl_id}@{seg.position}"
        self.level = _Level(code, parent)
        self.levels[hl_id] = self.level
        self.order.append(hl_id)
        self.level_id = hl_id
        self.claim = None
        self.line = None

    def trn(self, seg: Segment, level: _Level) -> None:
        if level.code == "PT":
            self.claim = _Claim(seg, self.level_id)
            self.claims.append(self.claim)
            self.line = None
            if not seg.get(2):
                self.error("x12.277.trn", seg, "the claim's TRN02 (patient control number) is empty", element=2)
        else:
            level.trace = seg.get(2)


def read_277(ts: TransactionSet) -> ClaimAckReport:
    """Read one 277CA transaction set (see the module docstring for what becomes an error)."""
    return _Reader277(ts).read()
