"""Reading 835 health care claim payment/advice (005010X221A1) into plain typed values.

:func:`read835` reads every 835 transaction set of a file (several interchanges, groups and sets
are fine) into a :class:`Remittance` each: the payment (BPR, TRN), payer and payee (1000A/1000B),
the claims paid (2100 CLP) with their service lines (2110 SVC), adjustments (CAS), remark codes
(LQ, MOA, MIA) and the provider level adjustments (PLB). Optional and repeated segments are taken
in any order within their loop; codes we do not know are kept with a ``None`` description.

Nothing here is fatal but a file that is not X12 at all (:class:`~mappings.x12.reader.X12SyntaxError`):
a segment that cannot be read (a claim without amounts, an amount that is not a number) becomes an
:class:`X12Error` naming the segment, its position and the rule, and the claim concerned is left out
while the others are read. The sums the guide requires to balance (BPR02 against the claims and PLB,
each claim's charge against its payment and adjustments, each line likewise) are checked and a
difference is reported in :attr:`Remittance.warnings`, never refused. Money is ``Decimal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from mappings.x12.carc import carc_description, group_description, plb_description, rarc_description
from mappings.x12.reader import Segment, TransactionSet, X12Error, read_interchanges

#: CLP02 claim status codes
CLAIM_STATUS: dict[str, str] = {
    "1": "Processed as primary",
    "2": "Processed as secondary",
    "3": "Processed as tertiary",
    "4": "Denied",
    "19": "Processed as primary, forwarded to additional payer(s)",
    "20": "Processed as secondary, forwarded to additional payer(s)",
    "21": "Processed as tertiary, forwarded to additional payer(s)",
    "22": "Reversal of previous payment",
    "23": "Not our claim, forwarded to additional payer(s)",
    "25": "Predetermination pricing only, no payment",
}
#: BPR04 payment method
PAYMENT_METHODS: dict[str, str] = {
    "CHK": "Check",
    "ACH": "Automated clearing house (EFT)",
    "NON": "Non-payment data",
    "BOP": "Financial institution option",
    "FWT": "Federal reserve funds/wire transfer",
}
ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class Adjustment:
    """One reason/amount/quantity of a CAS segment."""

    group: str  # CAS01: CO, PR, OA, PI, CR
    reason: str  # CARC
    amount: Decimal
    quantity: Decimal | None = None

    @property
    def group_description(self) -> str | None:
        return group_description(self.group)

    @property
    def reason_description(self) -> str | None:
        return carc_description(self.reason)


@dataclass(frozen=True, slots=True)
class Remark:
    code: str  # RARC (LQ*HE, MOA, MIA) or NCPDP reject code (LQ*RX)
    qualifier: str = "HE"

    @property
    def description(self) -> str | None:
        return rarc_description(self.code) if self.qualifier == "HE" else None


@dataclass(frozen=True, slots=True)
class Procedure:
    """A composite procedure (SVC01, SVC06): qualifier (HC, AD, ER, IV, N4, NU...), code, modifiers."""

    qualifier: str
    code: str
    modifiers: tuple[str, ...] = ()
    description: str | None = None


@dataclass(slots=True)
class Party:
    """A payer, payee or person named in the 835 (N1 or NM1 and what follows it)."""

    entity: str  # N101 / NM101: PR, PE, QC, IL, 82, 74, TT, PR...
    name: str = ""
    first_name: str | None = None
    middle_name: str | None = None
    id_qualifier: str | None = None  # N103 / NM108: XX (NPI), FI (TIN), MI, PI, XV...
    identifier: str | None = None
    address_lines: tuple[str, ...] = ()
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    references: list[tuple[str, str]] = field(default_factory=list)  # (REF01, REF02): 2U, TJ, EO...
    contacts: list[tuple[str, str, str]] = field(default_factory=list)  # (PER01 function, name, first number)


@dataclass(slots=True)
class ServicePayment:
    """2110: one service line paid (SVC) and what came with it."""

    procedure: Procedure
    charge: Decimal
    paid: Decimal
    position: int
    revenue_code: str | None = None
    units: Decimal | None = None
    original_procedure: Procedure | None = None  # SVC06: the code billed when the payer paid another
    original_units: Decimal | None = None
    dates: dict[str, date] = field(default_factory=dict)  # DTM01: 472 service, 150 start, 151 end
    adjustments: list[Adjustment] = field(default_factory=list)
    references: list[tuple[str, str]] = field(default_factory=list)
    amounts: dict[str, Decimal] = field(default_factory=dict)  # AMT01: B6 allowed, KH late filing...
    quantities: dict[str, Decimal] = field(default_factory=dict)
    remarks: list[Remark] = field(default_factory=list)

    @property
    def line_control_number(self) -> str | None:
        return next((value for qualifier, value in self.references if qualifier == "6R"), None)

    @property
    def allowed(self) -> Decimal | None:
        return self.amounts.get("B6")


@dataclass(slots=True)
class ClaimPayment:
    """2100: one claim paid, denied or reversed (CLP) with its adjustments and service lines."""

    patient_control_number: str  # CLP01: the hub's claim number (837P CLM01)
    status_code: str  # CLP02
    charge: Decimal  # CLP03
    paid: Decimal  # CLP04
    position: int
    patient_responsibility: Decimal | None = None  # CLP05
    filing_indicator: str | None = None  # CLP06: MB, MC, CI, 12...
    payer_claim_control_number: str | None = None  # CLP07
    facility_type: str | None = None  # CLP08: place of service for professional claims
    frequency: str | None = None  # CLP09: 1 original, 7 replacement, 8 void
    header_number: str | None = None  # LX01 of the header it is listed under
    adjustments: list[Adjustment] = field(default_factory=list)
    patient: Party | None = None  # NM1*QC
    insured: Party | None = None  # NM1*IL
    corrected_patient: Party | None = None  # NM1*74
    rendering: Party | None = None  # NM1*82
    crossover: Party | None = None  # NM1*TT
    corrected_payer: Party | None = None  # NM1*PR
    references: list[tuple[str, str]] = field(default_factory=list)  # REF*EA, 1K, 1L, F8, G1...
    dates: dict[str, date] = field(default_factory=dict)  # DTM01: 232/233 statement, 050 received, 036...
    contacts: list[tuple[str, str, str]] = field(default_factory=list)
    amounts: dict[str, Decimal] = field(default_factory=dict)  # AMT01: AU coverage, DY, F5 patient paid...
    quantities: dict[str, Decimal] = field(default_factory=dict)
    remarks: list[Remark] = field(default_factory=list)  # MOA / MIA remark codes
    services: list[ServicePayment] = field(default_factory=list)

    @property
    def status_description(self) -> str | None:
        return CLAIM_STATUS.get(self.status_code)

    @property
    def is_reversal(self) -> bool:
        return self.status_code == "22"

    @property
    def is_denied(self) -> bool:
        return self.status_code == "4"


@dataclass(frozen=True, slots=True)
class ProviderAdjustment:
    """One reason/amount pair of a PLB segment (positive amounts reduce the payment)."""

    provider_id: str  # PLB01
    fiscal_period_date: date | None  # PLB02
    reason: str  # PLB03-1
    reference: str | None  # PLB03-2: the claim or the letter the adjustment is about
    amount: Decimal
    position: int

    @property
    def description(self) -> str | None:
        return plb_description(self.reason)


@dataclass(slots=True)
class Remittance:
    """One 835 transaction set: one payment (or non-payment) to one payee."""

    control_number: str  # ST02
    handling_code: str = ""  # BPR01: I remittance + payment, H notification only, X...
    total_paid: Decimal = ZERO  # BPR02
    credit_debit: str = ""  # BPR03: C credit, D debit
    payment_method: str = ""  # BPR04
    payment_format: str | None = None  # BPR05: CCP, CTX
    payment_date: date | None = None  # BPR16
    trace_number: str = ""  # TRN02: check or EFT number
    trace_payer_id: str | None = None  # TRN03: 1 + payer's TIN, or another payer id
    trace_originating_company: str | None = None  # TRN04
    receiver_id: str | None = None  # REF*EV
    version_id: str | None = None  # REF*F2
    production_date: date | None = None  # DTM*405
    currency: str | None = None  # CUR02
    payment_position: int = 0  # position of BPR in the file
    payer: Party = field(default_factory=lambda: Party("PR"))
    payee: Party = field(default_factory=lambda: Party("PE"))
    headers: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # LX01 with its TS3 elements
    claims: list[ClaimPayment] = field(default_factory=list)
    provider_adjustments: list[ProviderAdjustment] = field(default_factory=list)
    errors: list[X12Error] = field(default_factory=list)  # segments not read (claims left out)
    warnings: list[X12Error] = field(default_factory=list)  # sums that do not balance

    @property
    def payer_id(self) -> str:
        """The payer's id as the 835 gives it: REF*2U of 1000A, else N104, else TRN03."""
        ref = next((value for qualifier, value in self.payer.references if qualifier == "2U"), None)
        return ref or self.payer.identifier or self.trace_payer_id or ""

    @property
    def payment_method_description(self) -> str | None:
        return PAYMENT_METHODS.get(self.payment_method)


@dataclass(slots=True)
class RemittanceFile:
    remittances: list[Remittance]
    errors: list[X12Error]  # every problem: envelopes, transaction sets and segments

    @property
    def ok(self) -> bool:
        return not self.errors


def read835(text: str | bytes) -> RemittanceFile:
    """Read every 835 of an X12 file; other transaction sets are skipped (with an error each)."""
    x12 = read_interchanges(text)
    errors = list(x12.errors)
    out: list[Remittance] = []
    for transaction in x12.transactions:
        if transaction.id != "835":
            errors.append(X12Error("x835.not-835", "ST", transaction.segments[0].position,
                                   f"transaction set {transaction.id} is not an 835", 1, transaction.control_number))
            continue
        remittance = read_remittance(transaction)
        errors.extend(remittance.errors)
        out.append(remittance)
    return RemittanceFile(out, errors)


def read_remittance(transaction: TransactionSet) -> Remittance:
    """One 835 transaction set; the reader's own errors of the set come first in ``errors``."""
    return _Reader(transaction).read()


class _BadSegment(Exception):
    def __init__(self, element: int, message: str, rule: str = "x835.element") -> None:
        super().__init__(message)
        self.element = element
        self.rule = rule


def _amount(seg: Segment, index: int, *, required: bool = False) -> Decimal | None:
    value = seg.get(index).strip()
    if not value:
        if required:
            raise _BadSegment(index, f"{seg.id}{index:02d} is required (an amount)", "x835.required")
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise _BadSegment(index, f"{seg.id}{index:02d} is not a number", "x835.number") from None
    if not amount.is_finite():
        raise _BadSegment(index, f"{seg.id}{index:02d} is not a number", "x835.number")
    return amount


def _money(seg: Segment, index: int) -> Decimal:
    amount = _amount(seg, index, required=True)
    assert amount is not None
    return amount


def _date(seg: Segment, index: int) -> date | None:
    value = seg.get(index).strip()
    if not value:
        return None
    if len(value) != 8 or not value.isdigit():
        raise _BadSegment(index, f"{seg.id}{index:02d} is not a date CCYYMMDD", "x835.date")
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise _BadSegment(index, f"{seg.id}{index:02d} is not a valid date", "x835.date") from None


def _procedure(seg: Segment, index: int) -> Procedure | None:
    parts = seg.components(index)
    if not parts or len(parts) < 2 or not parts[1]:
        return None
    description = (parts[7] if len(parts) > 7 else "") or None
    return Procedure(parts[0], parts[1], tuple(m for m in parts[2:6] if m), description)


def _adjustments(seg: Segment) -> list[Adjustment]:
    group = seg.get(1).strip()
    if not group:
        raise _BadSegment(1, "CAS01 (claim adjustment group code) is required", "x835.required")
    out = []
    for start in range(2, 20, 3):
        reason = seg.get(start).strip()
        if not reason:
            continue
        out.append(Adjustment(group, reason, _money(seg, start + 1), _amount(seg, start + 2)))
    if not out:
        raise _BadSegment(2, "CAS02 (an adjustment reason code) is required", "x835.required")
    return out


class _Reader:
    def __init__(self, transaction: TransactionSet) -> None:
        self.transaction = transaction
        self.out = Remittance(transaction.control_number, errors=list(transaction.errors))
        self.party: Party | None = None  # the N1 (1000A/B) or NM1 (2100) whose N3/N4/REF/PER follow
        self.claim: ClaimPayment | None = None
        self.service: ServicePayment | None = None
        self.header: str | None = None
        self.skipping = False  # the claim of the current loop could not be read: its segments are ignored

    def _error(self, seg: Segment, message: str, rule: str, element: int | None = None) -> None:
        self.out.errors.append(X12Error(rule, seg.id, seg.position, message, element, self.transaction.control_number))

    def read(self) -> Remittance:
        for seg in self.transaction.body:
            try:
                self._segment(seg)
            except _BadSegment as exc:
                if seg.id in ("CLP", "SVC"):
                    self.skipping = True
                    if seg.id == "CLP":
                        self.claim = None
                    self.service = None
                    what = "claim" if seg.id == "CLP" else "service line"
                    self._error(seg, f"{exc} (the {what} is left out)", exc.rule, exc.element)
                else:
                    self._error(seg, f"{exc} (the segment is ignored)", exc.rule, exc.element)
        self._close_claim()
        _check_balance(self.out)
        return self.out

    def _close_claim(self) -> None:
        if self.claim is not None:
            self.out.claims.append(self.claim)
        self.claim = None
        self.service = None

    def _segment(self, seg: Segment) -> None:
        sid = seg.id
        out = self.out
        if sid == "CLP":
            self._close_claim()
            self.skipping = False
            self.party = None
            self.claim = _claim(seg, self.header)
            return
        if sid == "SVC":
            if self.claim is None:
                if not self.skipping:
                    self._error(seg, "SVC outside a claim (no CLP before it)", "x835.loop")
                return
            self.skipping = False
            self.service = _service(seg)
            self.claim.services.append(self.service)
            return
        if sid in ("LX", "PLB"):
            self._close_claim()
            self.skipping = False
            self.party = None
            if sid == "LX":
                self.header = seg.get(1)
                out.headers.append((self.header, {}))
            else:
                out.provider_adjustments.extend(_plb(seg))
            return
        if self.skipping:
            return
        if self.claim is not None:
            self._claim_segment(seg, self.claim)
        else:
            self._header_segment(seg)

    def _header_segment(self, seg: Segment) -> None:
        sid, out = seg.id, self.out
        if sid == "BPR":
            out.handling_code = seg.get(1)
            out.payment_position = seg.position
            out.total_paid = _money(seg, 2)
            out.credit_debit = seg.get(3)
            out.payment_method = seg.get(4)
            out.payment_format = seg.get(5) or None
            out.payment_date = _date(seg, 16)
        elif sid == "TRN":
            out.trace_number = seg.get(2)
            out.trace_payer_id = seg.get(3) or None
            out.trace_originating_company = seg.get(4) or None
        elif sid == "CUR":
            out.currency = seg.get(2) or None
        elif sid == "DTM" and seg.get(1) == "405":
            out.production_date = _date(seg, 2)
        elif sid == "N1":
            entity = seg.get(1)
            party = out.payer if entity == "PR" else out.payee if entity == "PE" else Party(entity)
            party.name = seg.get(2)
            party.id_qualifier = seg.get(3) or None
            party.identifier = seg.get(4) or None
            self.party = party
        elif sid in ("N3", "N4", "PER", "REF", "RDM") and self.party is not None:
            _party_detail(self.party, seg)
        elif sid == "REF":
            if seg.get(1) == "EV":
                out.receiver_id = seg.get(2) or None
            elif seg.get(1) == "F2":
                out.version_id = seg.get(2) or None
        elif sid in ("TS3", "TS2") and out.headers:
            out.headers[-1][1].update({f"{sid}{i:02d}": seg.get(i) for i in range(1, len(seg.elements)) if seg.get(i)})

    def _claim_segment(self, seg: Segment, claim: ClaimPayment) -> None:
        sid = seg.id
        target = self.service
        if sid == "CAS":
            (target or claim).adjustments.extend(_adjustments(seg))
        elif sid == "DTM":
            when = _date(seg, 2)
            if when is not None:
                (target or claim).dates[seg.get(1)] = when
        elif sid == "REF":
            (target or claim).references.append((seg.get(1), seg.get(2)))
        elif sid == "AMT":
            amount = _amount(seg, 2)
            if amount is not None:
                (target or claim).amounts[seg.get(1)] = amount
        elif sid == "QTY":
            quantity = _amount(seg, 2)
            if quantity is not None:
                (target or claim).quantities[seg.get(1)] = quantity
        elif sid == "LQ" and target is not None:
            if seg.get(2):
                target.remarks.append(Remark(seg.get(2), seg.get(1) or "HE"))
        elif sid in ("MOA", "MIA") and target is None:
            indexes = range(3, 8) if sid == "MOA" else (5, 20, 21, 22, 23)
            claim.remarks.extend(Remark(seg.get(i)) for i in indexes if seg.get(i))
        elif sid == "NM1" and target is None:
            self.party = _nm1(seg)
            slot = {"QC": "patient", "IL": "insured", "74": "corrected_patient", "82": "rendering",
                    "TT": "crossover", "PR": "corrected_payer"}.get(seg.get(1))
            if slot:
                setattr(claim, slot, self.party)
        elif sid == "PER" and target is None:
            claim.contacts.append(_contact(seg))


def _claim(seg: Segment, header: str | None) -> ClaimPayment:
    if not seg.get(1):
        raise _BadSegment(1, "CLP01 (patient control number) is required", "x835.required")
    if not seg.get(2):
        raise _BadSegment(2, "CLP02 (claim status code) is required", "x835.required")
    return ClaimPayment(
        patient_control_number=seg.get(1),
        status_code=seg.get(2),
        charge=_money(seg, 3),
        paid=_money(seg, 4),
        position=seg.position,
        patient_responsibility=_amount(seg, 5),
        filing_indicator=seg.get(6) or None,
        payer_claim_control_number=seg.get(7) or None,
        facility_type=seg.get(8) or None,
        frequency=seg.get(9) or None,
        header_number=header,
    )


def _service(seg: Segment) -> ServicePayment:
    procedure = _procedure(seg, 1)
    if procedure is None:
        raise _BadSegment(1, "SVC01 (composite procedure: qualifier and code) is required", "x835.required")
    return ServicePayment(
        procedure=procedure,
        charge=_money(seg, 2),
        paid=_money(seg, 3),
        position=seg.position,
        revenue_code=seg.get(4) or None,
        units=_amount(seg, 5),
        original_procedure=_procedure(seg, 6),
        original_units=_amount(seg, 7),
    )


def _nm1(seg: Segment) -> Party:
    return Party(seg.get(1), name=seg.get(3), first_name=seg.get(4) or None, middle_name=seg.get(5) or None,
                 id_qualifier=seg.get(8) or None, identifier=seg.get(9) or None)


def _contact(seg: Segment) -> tuple[str, str, str]:
    return (seg.get(1), seg.get(2), seg.get(4))


def _party_detail(party: Party, seg: Segment) -> None:
    if seg.id == "N3":
        party.address_lines = tuple(v for v in (seg.get(1), seg.get(2)) if v)
    elif seg.id == "N4":
        party.city, party.state, party.postal_code = seg.get(1) or None, seg.get(2) or None, seg.get(3) or None
    elif seg.id == "REF":
        party.references.append((seg.get(1), seg.get(2)))
    elif seg.id == "PER":
        party.contacts.append(_contact(seg))


def _plb(seg: Segment) -> list[ProviderAdjustment]:
    provider = seg.get(1)
    period = _date(seg, 2)
    out = []
    for start in range(3, 15, 2):
        parts = seg.components(start)
        if not parts or not parts[0]:
            continue
        reference = parts[1] if len(parts) > 1 and parts[1] else None
        out.append(ProviderAdjustment(provider, period, parts[0], reference, _money(seg, start + 1), seg.position))
    if not out:
        raise _BadSegment(3, "PLB03 (an adjustment reason and amount) is required", "x835.required")
    return out


def _check_balance(out: Remittance) -> None:
    """The balancing rules of the 835 guide, as warnings: a payer's arithmetic is not ours to refuse."""
    def warn(segment: str, position: int, message: str, rule: str) -> None:
        out.warnings.append(X12Error(rule, segment, position, message, None, out.control_number))

    for claim in out.claims:
        for line in claim.services:
            adjusted = sum((a.amount for a in line.adjustments), ZERO)
            if line.charge - adjusted != line.paid:
                warn("SVC", line.position, f"line charge {line.charge} minus adjustments {adjusted} is not the "
                     f"paid amount {line.paid}", "x835.balance-line")
        adjusted = sum((a.amount for a in claim.adjustments), ZERO)
        adjusted += sum((a.amount for line in claim.services for a in line.adjustments), ZERO)
        if claim.charge - adjusted != claim.paid:
            warn("CLP", claim.position, f"claim charge {claim.charge} minus adjustments {adjusted} is not the "
                 f"paid amount {claim.paid}", "x835.balance-claim")
        if claim.services:
            lines_paid = sum((line.paid for line in claim.services), ZERO)
            if lines_paid != claim.paid:
                warn("CLP", claim.position, f"service lines paid {lines_paid}, the claim says {claim.paid}",
                     "x835.balance-claim-lines")
    paid = sum((claim.paid for claim in out.claims), ZERO)
    withheld = sum((plb.amount for plb in out.provider_adjustments), ZERO)
    total = -out.total_paid if out.credit_debit == "D" else out.total_paid
    if paid - withheld != total:
        warn("BPR", out.payment_position, f"BPR02 is {out.total_paid}; claims paid {paid} minus provider adjustments {withheld} make "
             f"{paid - withheld}", "x835.balance-total")
