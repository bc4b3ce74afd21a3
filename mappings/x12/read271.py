"""Reading 271 eligibility responses (005010X279A1) into plain typed values.

:func:`read271` gives one :class:`EligibilityResult` per person the payer answered for (2000C
subscriber, or 2000D dependent), with the information source (2100A payer) and receiver (2100B
provider) of the answer, the rejections (AAA, at whichever level the payer put them) and the benefits
(2110 EB with their HSD, DTP, MSG, III and the related entity of LS/LE). A response that rejects the
request before naming anyone (AAA in 2000A/2100A/2100B) is one result without a member.

As for the 835: a segment that cannot be read is an :class:`X12Error` naming segment, position and
rule, the rest is read; unknown codes are kept with a ``None`` description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from mappings.x12.reader import Segment, TransactionSet, X12Error, read_interchanges
from mappings.x12.values import BadSegment, amount_of, date_of

#: AAA03 reasons a request was rejected
REJECT_REASONS: dict[str, str] = {
    "04": "Authorized quantity exceeded",
    "15": "Required application data missing",
    "33": "Input errors",
    "35": "Out of network",
    "41": "Authorization or access restrictions",
    "42": "Unable to respond at this time",
    "43": "Invalid or missing provider identification",
    "44": "Invalid or missing provider name",
    "45": "Invalid or missing provider specialty",
    "47": "Invalid or missing provider state",
    "48": "Invalid or missing referring provider identification",
    "49": "Provider is not the primary care physician",
    "50": "Provider not eligible for inquiries",
    "51": "Provider not on file",
    "52": "Service dates not within the provider's plan enrollment",
    "53": "Inquired benefit inconsistent with the provider type",
    "54": "Inappropriate product or service id qualifier",
    "55": "Inappropriate product or service id",
    "56": "Inappropriate date",
    "57": "Invalid or missing date of service",
    "58": "Invalid or missing date of birth",
    "60": "Date of birth is after the date of service",
    "61": "Date of death is before the date of service",
    "62": "Date of service not within the allowed inquiry period",
    "63": "Date of service in the future",
    "64": "Invalid or missing patient id",
    "65": "Invalid or missing patient name",
    "66": "Invalid or missing patient gender",
    "67": "Patient not found",
    "68": "Duplicate patient id",
    "69": "Inconsistent with the patient's age",
    "70": "Inconsistent with the patient's gender",
    "71": "Birth date does not match the patient on file",
    "72": "Invalid or missing member (subscriber) id",
    "73": "Invalid or missing subscriber name",
    "74": "Invalid or missing subscriber gender",
    "75": "Subscriber not found",
    "76": "Duplicate subscriber id",
    "77": "Subscriber found, patient not found",
    "78": "Subscriber not in the group or plan identified",
    "79": "Invalid participant identification",
    "80": "No response received, transaction terminated",
    "97": "Invalid or missing provider address",
    "98": "Experimental service or procedure",
    "AA": "Authorization number not found",
    "AE": "Requires primary care physician authorization",
    "AF": "Invalid or missing diagnosis code",
    "AG": "Invalid or missing procedure code",
    "AO": "Additional patient condition information required",
    "CI": "Certification information does not match the patient",
    "E8": "Requires medical review",
    "IA": "Invalid authorization number format",
    "MA": "Missing authorization number",
    "T4": "Payer name or identifier missing",
}
#: AAA04 what the provider should do
FOLLOW_UP: dict[str, str] = {
    "C": "Please correct and resubmit",
    "N": "Resubmission not allowed",
    "P": "Please resubmit the original transaction",
    "R": "Resubmission allowed",
    "S": "Do not resubmit; inquiry initiated to a third party",
    "W": "Please wait 30 days and resubmit",
    "X": "Please wait 10 days and resubmit",
    "Y": "Do not resubmit; we will hand over the request",
}
#: EB01 eligibility or benefit information
BENEFIT_INFO: dict[str, str] = {
    "1": "Active coverage", "2": "Active - full risk capitation", "3": "Active - services capitated",
    "4": "Active - services capitated to primary care physician", "5": "Active - pending investigation",
    "6": "Inactive", "7": "Inactive - pending eligibility update", "8": "Inactive - pending investigation",
    "A": "Co-insurance", "B": "Co-payment", "C": "Deductible", "CB": "Coverage basis",
    "D": "Benefit description", "E": "Exclusions", "F": "Limitations", "G": "Out of pocket (stop loss)",
    "H": "Unlimited", "I": "Non-covered", "J": "Cost containment", "K": "Reserve", "L": "Primary care provider",
    "M": "Pre-existing condition", "MC": "Managed care coordinator", "N": "Services restricted to following provider",
    "O": "Not deemed a medical necessity", "P": "Benefit disclaimer", "Q": "Second surgical opinion required",
    "R": "Other or additional payer", "S": "Prior year(s) history", "T": "Card(s) reported lost/stolen",
    "U": "Contact following entity for eligibility or benefit information", "V": "Cannot process",
    "W": "Other source of data", "X": "Health care facility", "Y": "Spend down",
}
#: EB03 service types the therapy practice asks about (others are kept, description None)
SERVICE_TYPES: dict[str, str] = {
    "1": "Medical care", "30": "Health benefit plan coverage", "33": "Chiropractic", "35": "Dental care",
    "42": "Home health care", "47": "Hospital", "48": "Hospital - inpatient", "50": "Hospital - outpatient",
    "98": "Professional (physician) visit - office", "A4": "Psychiatric", "A6": "Psychotherapy",
    "AD": "Occupational therapy", "AE": "Physical medicine", "AF": "Speech therapy",
    "AG": "Skilled nursing care", "BG": "Cardiac rehabilitation", "MH": "Mental health",
    "PT": "Physical therapy", "UC": "Urgent care",
}
#: EB06 time period
TIME_PERIODS: dict[str, str] = {
    "6": "Hour", "7": "Day", "13": "24 hours", "21": "Years", "22": "Service year", "23": "Calendar year",
    "24": "Year to date", "25": "Contract", "26": "Episode", "27": "Visit", "28": "Outlier", "29": "Remaining",
    "30": "Exceeded", "31": "Not exceeded", "32": "Lifetime", "33": "Lifetime remaining", "34": "Month",
    "35": "Week", "36": "Admission",
}
#: EB02 coverage level
COVERAGE_LEVELS: dict[str, str] = {
    "IND": "Individual", "FAM": "Family", "EMP": "Employee only", "ESP": "Employee and spouse",
    "ECH": "Employee and children", "CHD": "Children only", "DEP": "Dependents only", "SPC": "Spouse and children",
    "SPO": "Spouse only",
}


@dataclass(slots=True)
class Entity:
    """An NM1 of the 271 (payer, provider, subscriber, dependent, benefit related entity)."""

    entity: str  # NM101: PR, 1P, IL, 03, P3, 13, PRP...
    name: str = ""
    first_name: str | None = None
    id_qualifier: str | None = None  # NM108: PI, XX, MI...
    identifier: str | None = None
    contacts: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rejection:
    """AAA: the payer could not answer (part of) the request."""

    loop: str  # 2100A, 2100B, 2100C, 2100D, 2110C, 2110D
    reason: str  # AAA03
    follow_up: str | None  # AAA04
    valid_request: bool | None  # AAA01
    position: int

    @property
    def description(self) -> str | None:
        return REJECT_REASONS.get(self.reason)

    @property
    def follow_up_description(self) -> str | None:
        return FOLLOW_UP.get(self.follow_up or "")


@dataclass(slots=True)
class Benefit:
    """One EB (2110C/D) and the segments of its loop."""

    info_code: str  # EB01
    position: int
    coverage_level: str | None = None  # EB02
    service_types: tuple[str, ...] = ()  # EB03 (repeated)
    insurance_type: str | None = None  # EB04
    plan_description: str | None = None  # EB05
    time_period: str | None = None  # EB06
    amount: Decimal | None = None  # EB07
    percent: Decimal | None = None  # EB08, a fraction: 0.20 is 20 %
    quantity_qualifier: str | None = None  # EB09: VS visits, DY days, ...
    quantity: Decimal | None = None  # EB10
    authorization_required: bool | None = None  # EB11 Y/N (U unknown -> None)
    in_network: str | None = None  # EB12: Y in, N out, W not applicable
    procedure: tuple[str, ...] = ()  # EB13 composite
    delivery: list[dict[str, str]] = field(default_factory=list)  # HSD elements by name (HSD01..08)
    dates: dict[str, tuple[date, date | None]] = field(default_factory=dict)  # DTP 348/349/356...
    messages: list[str] = field(default_factory=list)  # MSG01
    inquiries: list[tuple[str, str]] = field(default_factory=list)  # III01/III02 (2115C)
    references: list[tuple[str, str]] = field(default_factory=list)
    related_entities: list[Entity] = field(default_factory=list)  # LS/LE 2120C
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def info_description(self) -> str | None:
        return BENEFIT_INFO.get(self.info_code)

    @property
    def time_period_description(self) -> str | None:
        return TIME_PERIODS.get(self.time_period or "")


@dataclass(slots=True)
class Member:
    """2100C subscriber or 2100D dependent."""

    entity: Entity
    birth_date: date | None = None  # DMG02
    gender: str | None = None  # DMG03
    references: list[tuple[str, str]] = field(default_factory=list)
    dates: dict[str, tuple[date, date | None]] = field(default_factory=dict)  # DTP 291 plan, 346, 347, 356...

    @property
    def member_id(self) -> str | None:
        return self.entity.identifier


@dataclass(slots=True)
class EligibilityResult:
    """The answer about one person (or a rejection of the whole request)."""

    control_number: str  # ST02
    reference: str | None = None  # BHT03
    source: Entity | None = None  # 2100A payer
    receiver: Entity | None = None  # 2100B provider
    subscriber: Member | None = None
    dependent: Member | None = None  # the patient when not the subscriber
    trace_numbers: list[tuple[str, str]] = field(default_factory=list)  # TRN01 type, TRN02 number
    rejections: list[Rejection] = field(default_factory=list)
    benefits: list[Benefit] = field(default_factory=list)
    errors: list[X12Error] = field(default_factory=list)

    @property
    def patient(self) -> Member | None:
        return self.dependent or self.subscriber


@dataclass(slots=True)
class EligibilityFile:
    results: list[EligibilityResult]
    errors: list[X12Error]


def read271(text: str | bytes) -> EligibilityFile:
    """Read every 271 of an X12 file; other transaction sets are reported and skipped."""
    x12 = read_interchanges(text)
    errors = list(x12.errors)
    out: list[EligibilityResult] = []
    for transaction in x12.transactions:
        if transaction.id != "271":
            errors.append(X12Error("x271.not-271", "ST", transaction.segments[0].position,
                                   f"transaction set {transaction.id} is not a 271", 1, transaction.control_number))
            continue
        results = read_eligibility(transaction)
        for result in results:
            errors.extend(e for e in result.errors if e not in transaction.errors)
        out.extend(results)
    return EligibilityFile(out, errors)


def read_eligibility(transaction: TransactionSet) -> list[EligibilityResult]:
    """The results of one 271 transaction set; every result carries the set's reader errors."""
    return _Reader(transaction).read()


_HL_LOOPS = {"20": "2100A", "21": "2100B", "22": "2100C", "23": "2100D"}


class _Reader:
    def __init__(self, transaction: TransactionSet) -> None:
        self.transaction = transaction
        self.results: list[EligibilityResult] = []
        self.errors: list[X12Error] = list(transaction.errors)
        self.reference: str | None = None
        self.source: Entity | None = None
        self.receiver: Entity | None = None
        self.header_rejections: list[Rejection] = []
        self.result: EligibilityResult | None = None
        self.level = ""  # HL03 of the open HL loop
        self.entity: Entity | None = None
        self.benefit: Benefit | None = None
        self.in_related = False  # between LS and LE
        self.skipping = False  # the EB of the open 2110 loop could not be read: its segments are ignored

    def read(self) -> list[EligibilityResult]:
        for seg in self.transaction.body:
            try:
                self._segment(seg)
            except BadSegment as exc:
                if seg.id == "EB":
                    self.benefit, self.skipping = None, True
                self.errors.append(X12Error(exc.rule, seg.id, seg.position, f"{exc} (the segment is ignored)",
                                            exc.element, self.transaction.control_number))
        if not self.results:
            self.results.append(self._new_result())
        for result in self.results:
            result.errors = list(self.errors)
            if self.header_rejections:
                result.rejections[:0] = self.header_rejections
        return self.results

    def _new_result(self) -> EligibilityResult:
        return EligibilityResult(self.transaction.control_number, self.reference, self.source, self.receiver)

    def _loop(self) -> str:
        base = _HL_LOOPS.get(self.level, "2100C")
        return base.replace("2100", "2110") if self.benefit is not None else base

    def _segment(self, seg: Segment) -> None:
        sid = seg.id
        if sid in ("HL", "EB"):
            self.skipping = False
        elif self.skipping:
            return
        if sid == "BHT":
            self.reference = seg.get(3) or None
        elif sid == "HL":
            self.level = seg.get(3)
            self.benefit, self.entity, self.in_related = None, None, False
            if self.level == "22" or (self.level == "23" and self.result is None):
                self.result = self._new_result()
                self.results.append(self.result)
            elif self.level == "23" and self.result is not None and (
                    self.result.dependent is not None or self.result.benefits or self.result.rejections):
                subscriber = self.result.subscriber  # another person under the same subscriber
                self.result = self._new_result()
                self.result.subscriber = subscriber
                self.results.append(self.result)
        elif sid == "LS":
            self.in_related = True
        elif sid == "LE":
            self.in_related = False
        elif sid == "NM1":
            self._nm1(seg)
        elif sid == "EB":
            self.in_related = False
            self.benefit = _benefit(seg)
            if self.result is not None:
                self.result.benefits.append(self.benefit)
            else:
                raise BadSegment(1, "EB outside a subscriber or dependent loop (no HL 22/23)", "x271.loop")
        elif sid == "AAA":
            rejection = Rejection(self._loop(), seg.get(3), seg.get(4) or None,
                                  {"Y": True, "N": False}.get(seg.get(1)), seg.position)
            if self.benefit is not None:
                self.benefit.rejections.append(rejection)
                if self.result is not None:
                    self.result.rejections.append(rejection)
            elif self.result is not None:
                self.result.rejections.append(rejection)
            else:
                self.header_rejections.append(rejection)
        elif sid == "PER" and self.entity is not None:
            self.entity.contacts.append((seg.get(1), seg.get(2), seg.get(4)))
        elif self.benefit is not None and not self.in_related:
            self._benefit_detail(seg, self.benefit)
        elif self.result is not None and self.benefit is None:
            self._member_detail(seg, self.result)

    def _nm1(self, seg: Segment) -> None:
        entity = Entity(seg.get(1), seg.get(3), seg.get(4) or None, seg.get(8) or None, seg.get(9) or None)
        self.entity = entity
        if self.in_related and self.benefit is not None:
            self.benefit.related_entities.append(entity)
        elif self.level == "20":
            self.source = entity
        elif self.level == "21":
            self.receiver = entity
        elif self.result is not None and self.level == "22":
            self.result.subscriber = Member(entity)
        elif self.result is not None and self.level == "23":
            self.result.dependent = Member(entity)

    def _member_detail(self, seg: Segment, result: EligibilityResult) -> None:
        member = result.dependent if self.level == "23" else result.subscriber
        if seg.id == "TRN":
            result.trace_numbers.append((seg.get(1), seg.get(2)))
        elif member is None:
            return
        elif seg.id == "DMG":
            if seg.get(1) in ("D8", ""):
                member.birth_date = date_of(seg, 2)
            member.gender = seg.get(3) or None
        elif seg.id == "REF":
            member.references.append((seg.get(1), seg.get(2)))
        elif seg.id == "DTP":
            member.dates[seg.get(1)] = _period(seg)

    def _benefit_detail(self, seg: Segment, benefit: Benefit) -> None:
        if seg.id == "HSD":
            benefit.delivery.append({f"HSD{i:02d}": seg.get(i) for i in range(1, len(seg.elements)) if seg.get(i)})
        elif seg.id == "DTP":
            benefit.dates[seg.get(1)] = _period(seg)
        elif seg.id == "MSG":
            if seg.get(1):
                benefit.messages.append(seg.get(1))
        elif seg.id == "III":
            benefit.inquiries.append((seg.get(1), seg.get(2)))
        elif seg.id == "REF":
            benefit.references.append((seg.get(1), seg.get(2)))


def _period(seg: Segment) -> tuple[date, date | None]:
    """DTP02 D8 (one date) or RD8 (CCYYMMDD-CCYYMMDD) in DTP03."""
    fmt, value = seg.get(2), seg.get(3)
    if fmt == "RD8":
        start, _, end = value.partition("-")
        if not start or not end:
            raise BadSegment(3, "DTP03 is not a date range CCYYMMDD-CCYYMMDD", "x12.date")
        try:
            first = date_of(Segment(("DTP", start), seg.position, seg.separators), 1)
            last = date_of(Segment(("DTP", end), seg.position, seg.separators), 1)
        except BadSegment:
            first = None
        if first is None:
            raise BadSegment(3, "DTP03 is not a date range CCYYMMDD-CCYYMMDD", "x12.date")
        return first, last
    single = date_of(seg, 3)
    if single is None:
        raise BadSegment(3, "DTP03 (a date) is required", "x12.required")
    return single, None


def _benefit(seg: Segment) -> Benefit:
    if not seg.get(1):
        raise BadSegment(1, "EB01 (eligibility or benefit information code) is required", "x12.required")
    return Benefit(
        info_code=seg.get(1),
        position=seg.position,
        coverage_level=seg.get(2) or None,
        service_types=tuple(code for code in seg.repeats(3) if code),
        insurance_type=seg.get(4) or None,
        plan_description=seg.get(5) or None,
        time_period=seg.get(6) or None,
        amount=amount_of(seg, 7),
        percent=amount_of(seg, 8),
        quantity_qualifier=seg.get(9) or None,
        quantity=amount_of(seg, 10),
        authorization_required={"Y": True, "N": False}.get(seg.get(11)),
        in_network=seg.get(12) or None,
        procedure=seg.components(13),
    )
