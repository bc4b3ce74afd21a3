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

from mappings.x12.reader import Segment, TransactionSet, X12Error, read_interchanges
from mappings.x12.remittance import (
    ZERO,
    Adjustment,
    ClaimPayment,
    Party,
    Procedure,
    ProviderAdjustment,
    Remark,
    Remittance,
    RemittanceFile,
    ServicePayment,
)
from mappings.x12.values import BadSegment, amount_of, date_of, money_of

__all__ = ["Adjustment", "ClaimPayment", "Party", "Procedure", "ProviderAdjustment", "Remark", "Remittance",
           "RemittanceFile", "ServicePayment", "read835", "read_remittance"]


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
        errors.extend(remittance.errors[len(transaction.errors):])  # the set's own are in x12.errors
        out.append(remittance)
    return RemittanceFile(out, errors)


def read_remittance(transaction: TransactionSet) -> Remittance:
    """One 835 transaction set; the reader's own errors of the set come first in ``errors``."""
    return _Reader(transaction).read()


def _procedure(seg: Segment, index: int) -> Procedure | None:
    parts = seg.components(index)
    if not parts or len(parts) < 2 or not parts[1]:
        return None
    description = (parts[7] if len(parts) > 7 else "") or None
    return Procedure(parts[0], parts[1], tuple(m for m in parts[2:6] if m), description)


def _adjustments(seg: Segment) -> list[Adjustment]:
    group = seg.get(1).strip()
    if not group:
        raise BadSegment(1, "CAS01 (claim adjustment group code) is required", "x12.required")
    out = []
    for start in range(2, 20, 3):
        reason = seg.get(start).strip()
        if not reason:
            continue
        out.append(Adjustment(group, reason, money_of(seg, start + 1), amount_of(seg, start + 2)))
    if not out:
        raise BadSegment(2, "CAS02 (an adjustment reason code) is required", "x12.required")
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
            except BadSegment as exc:
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
            out.total_paid = money_of(seg, 2)
            out.credit_debit = seg.get(3)
            out.payment_method = seg.get(4)
            out.payment_format = seg.get(5) or None
            out.payment_date = date_of(seg, 16)
        elif sid == "TRN":
            out.trace_number = seg.get(2)
            out.trace_payer_id = seg.get(3) or None
            out.trace_originating_company = seg.get(4) or None
        elif sid == "CUR":
            out.currency = seg.get(2) or None
        elif sid == "DTM" and seg.get(1) == "405":
            out.production_date = date_of(seg, 2)
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
            when = date_of(seg, 2)
            if when is not None:
                (target or claim).dates[seg.get(1)] = when
        elif sid == "REF":
            (target or claim).references.append((seg.get(1), seg.get(2)))
        elif sid == "AMT":
            amount = amount_of(seg, 2)
            if amount is not None:
                (target or claim).amounts[seg.get(1)] = amount
        elif sid == "QTY":
            quantity = amount_of(seg, 2)
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
        raise BadSegment(1, "CLP01 (patient control number) is required", "x12.required")
    if not seg.get(2):
        raise BadSegment(2, "CLP02 (claim status code) is required", "x12.required")
    return ClaimPayment(
        patient_control_number=seg.get(1),
        status_code=seg.get(2),
        charge=money_of(seg, 3),
        paid=money_of(seg, 4),
        position=seg.position,
        patient_responsibility=amount_of(seg, 5),
        filing_indicator=seg.get(6) or None,
        payer_claim_control_number=seg.get(7) or None,
        facility_type=seg.get(8) or None,
        frequency=seg.get(9) or None,
        header_number=header,
    )


def _service(seg: Segment) -> ServicePayment:
    procedure = _procedure(seg, 1)
    if procedure is None:
        raise BadSegment(1, "SVC01 (composite procedure: qualifier and code) is required", "x12.required")
    return ServicePayment(
        procedure=procedure,
        charge=money_of(seg, 2),
        paid=money_of(seg, 3),
        position=seg.position,
        revenue_code=seg.get(4) or None,
        units=amount_of(seg, 5),
        original_procedure=_procedure(seg, 6),
        original_units=amount_of(seg, 7),
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
    period = date_of(seg, 2)
    out = []
    for start in range(3, 15, 2):
        parts = seg.components(start)
        if not parts or not parts[0]:
            continue
        reference = parts[1] if len(parts) > 1 and parts[1] else None
        out.append(ProviderAdjustment(provider, period, parts[0], reference, money_of(seg, start + 1), seg.position))
    if not out:
        raise BadSegment(3, "PLB03 (an adjustment reason and amount) is required", "x12.required")
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
        warn("BPR", out.payment_position, f"BPR02 is {out.total_paid}; claims paid {paid} minus provider "
             f"adjustments {withheld} make {paid - withheld}", "x835.balance-total")
