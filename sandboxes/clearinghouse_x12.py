"""What the sandbox clearinghouse reads and writes: 837P claims in; 999, 277CA and 835 out.

The sandbox plays the partner, so it checks an 837P the way a clearinghouse's front end does, only
much less: the envelope (by :func:`mappings.x12.reader.read_interchanges`), the implementation guide
version, the segments every claim needs and the numbers and dates it adjudicates on. What it finds
becomes IK3/IK4 in the 999; a transaction set with errors is rejected (IK5 ``R``) and gets no 277CA.

Adjudication (:func:`remittance`) is a fixed fee schedule, to the cent (half up):

* allowed = 80 % of the line charge; CO-45 adjusts the charge down to it;
* coinsurance = 20 % of allowed (PR-2); paid = allowed - coinsurance;
* a line with a procedure in ``denied_codes`` (default 97750) is denied: CO-50 of the whole charge,
  RARC N386 (LQ*HE); a claim whose lines are all denied has status 4, otherwise 1 (primary);
* BPR02 = the sum of CLP04 of the transaction set; REF*6R echoes each line's control number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from mappings.x12.reader import Segment, TransactionSet, X12SyntaxError, read_interchanges

__all__ = ["Adjudication", "Claim", "Line", "Problem", "ReadClaimFile", "SetResult", "Writer", "money", "read_837"]

CENT = Decimal("0.01")
IG_837P = "005010X222A1"
_IK5_CODES = {"x12.se-count": "4", "x12.control-number": "3", "x12.missing-se": "2", "x12.truncated": "2"}


def money(value: Decimal) -> str:
    """An X12 decimal (R): to the cent, trailing zeros dropped (``100``, ``12.5``, ``0.05``)."""
    text = f"{value.quantize(CENT, ROUND_HALF_UP):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


@dataclass
class Line:
    number: int
    procedure: tuple[str, ...] = ()  # SV101 components: HC, code, modifiers
    charge: Decimal = Decimal(0)
    units: str = "1"
    date: str = ""
    control: str = ""  # REF*6R

    @property
    def code(self) -> str:
        return self.procedure[1] if len(self.procedure) > 1 else ""


@dataclass
class Claim:
    control: str  # CLM01: the patient control number
    charge: Decimal
    facility: str
    frequency: str
    payer_id: str
    payer_name: str
    filing: str
    patient_last: str
    patient_first: str
    member_id: str
    provider_name: str
    provider_npi: str
    date: str = ""
    lines: list[Line] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    """One IK3 (segment) with its IK4 (element), if any. ``position``: in the transaction set."""

    segment_id: str
    position: int
    loop: str
    code: str  # IK304
    element: int | None = None
    element_code: str | None = None  # IK403
    claim: str = ""  # CLM01 of the claim the segment belongs to: a CTX*CLM01 business unit


@dataclass
class SetResult:
    transaction: TransactionSet
    claims: list[Claim]
    problems: list[Problem]
    ik5_codes: list[str]

    @property
    def accepted(self) -> bool:
        return not self.problems and not self.ik5_codes


@dataclass
class ReadClaimFile:
    sender: str  # ISA06
    receiver: str  # ISA08
    control: str  # ISA13
    group_control: str  # GS06
    sets: list[SetResult]
    readable: bool = True


def read_837(content: bytes) -> ReadClaimFile:
    """The claims of an 837P file and what is wrong with each transaction set."""
    try:
        read = read_interchanges(content)
    except X12SyntaxError:
        return ReadClaimFile("", "", "", "", [], readable=False)
    if not read.interchanges or not read.interchanges[0].groups:
        return ReadClaimFile("", "", "", "", [], readable=False)
    first = read.interchanges[0]
    sets = [_check(tx) for tx in read.transactions]
    return ReadClaimFile(first.sender, first.receiver, first.control_number,
                         first.groups[0].control_number, sets)


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None


def _valid_date(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return len(text) == 8


def _check(tx: TransactionSet) -> SetResult:
    problems: list[Problem] = []
    ik5 = sorted({_IK5_CODES.get(e.rule, "5") for e in tx.errors})
    start = tx.segments[0].position

    def at(seg: Segment) -> int:
        return seg.position - start + 1

    def problem(seg: Segment, loop: str, code: str, element: int | None = None, element_code: str | None = None
                ) -> None:
        problems.append(Problem(seg.id, at(seg), loop, code, element, element_code,
                                claim.control if claim is not None and seg.id != "CLM" else ""))

    if tx.id != "837":
        return SetResult(tx, [], [], ["1"])
    if tx.version != IG_837P:
        problem(tx.segments[0], "", "8", 3, "7")
    claims: list[Claim] = []
    context: dict[str, str] = {}
    claim: Claim | None = None
    line: Line | None = None
    seen_bht = False
    for seg in tx.body:
        kind = seg.id
        if kind == "BHT":
            seen_bht = True
        elif kind == "HL":
            claim = line = None
            if seg.get(3) == "20":
                context = {}
        elif kind == "NM1":
            entity = seg.get(1)
            if entity == "85":
                context.update(provider_name=seg.get(3), provider_npi=seg.get(9))
            elif entity in ("IL", "QC"):
                context.update(patient_last=seg.get(3), patient_first=seg.get(4))
                if entity == "IL":
                    context["member_id"] = seg.get(9)
            elif entity == "PR":
                context.update(payer_name=seg.get(3), payer_id=seg.get(9))
        elif kind == "SBR":
            context["filing"] = seg.get(9) or "CI"
        elif kind == "CLM":
            line = None
            charge = _decimal(seg.get(2))
            if not seg.get(1):
                problem(seg, "2300", "8", 1, "1")
            if charge is None:
                problem(seg, "2300", "8", 2, "6")
            if not context.get("payer_id"):
                problem(seg, "2300", "3")  # the claim has no payer (2010BB NM1*PR) before it
            place = seg.components(5)
            claim = Claim(
                control=seg.get(1), charge=charge or Decimal(0), facility=place[0] if place else "",
                frequency=place[2] if len(place) > 2 else "1", payer_id=context.get("payer_id", ""),
                payer_name=context.get("payer_name", ""), filing=context.get("filing", "CI"),
                patient_last=context.get("patient_last", ""), patient_first=context.get("patient_first", ""),
                member_id=context.get("member_id", ""), provider_name=context.get("provider_name", ""),
                provider_npi=context.get("provider_npi", ""))
            claims.append(claim)
        elif kind == "LX" and claim is not None:
            line = Line(number=len(claim.lines) + 1)
            claim.lines.append(line)
        elif kind == "SV1" and line is not None:
            line.procedure = seg.components(1)
            charge = _decimal(seg.get(2))
            if len(line.procedure) < 2 or not line.procedure[1]:
                problem(seg, "2400", "8", 1, "1")
            if charge is None:
                problem(seg, "2400", "8", 2, "6")
            line.charge = charge or Decimal(0)
            line.units = seg.get(4) or "1"
        elif kind == "DTP" and seg.get(1) == "472":
            value = seg.get(3)
            dates = value.split("-") if seg.get(2) == "RD8" else [value]
            if not all(_valid_date(d) for d in dates):
                problem(seg, "2400" if line else "2300", "8", 3, "8")
            if line is not None:
                line.date = dates[0]
            elif claim is not None:
                claim.date = dates[0]
        elif kind == "REF" and seg.get(1) == "6R" and line is not None:
            line.control = seg.get(2)
    last = tx.segments[-1]
    if not seen_bht:
        problems.append(Problem("BHT", 2, "", "3"))
    if not claims:
        problems.append(Problem("CLM", at(last), "2300", "3"))
    for c in claims:
        if not c.lines:
            problems.append(Problem("SV1", at(last), "2400", "3"))
    return SetResult(tx, claims, problems, ik5)


@dataclass(frozen=True)
class Adjudication:
    """The fee schedule and rules of :func:`remittance`."""

    allowed_share: Decimal = Decimal("0.80")
    coinsurance_share: Decimal = Decimal("0.20")
    denied_codes: frozenset[str] = frozenset({"97750"})


class Writer:
    """Builds one interchange (ISA..IEA) of one functional group; ``*`` ``:`` ``^`` ``~`` + LF."""

    def __init__(self, *, sender: str, receiver: str, functional_id: str, version: str, control: int,
                 now: datetime) -> None:
        self.sender, self.receiver, self.functional_id, self.version = sender, receiver, functional_id, version
        self.control, self.now = control, now
        self.sets: list[list[str]] = []

    def transaction(self, segments: Iterable[str], kind: str) -> None:
        number = f"{len(self.sets) + 1:04d}"
        body = [f"ST*{kind}*{number}*{self.version}", *segments]
        body.append(f"SE*{len(body) + 1}*{number}")
        self.sets.append(body)

    def text(self) -> str:
        d, t = self.now.strftime("%y%m%d"), self.now.strftime("%H%M")
        ctrl = f"{self.control:09d}"
        head = [f"ISA*00*{'':10}*00*{'':10}*ZZ*{self.sender:<15}*ZZ*{self.receiver:<15}*{d}*{t}*^*00501*{ctrl}*0*T*:",
                f"GS*{self.functional_id}*{self.sender}*{self.receiver}*{self.now:%Y%m%d}*{t}*{self.control}*X*"
                f"{self.version}"]
        body = [segment for tx in self.sets for segment in tx]
        tail = [f"GE*{len(self.sets)}*{self.control}", f"IEA*1*{ctrl}"]
        return "".join(f"{segment}~\n" for segment in head + body + tail)


def acknowledgment(read: ReadClaimFile, writer: Writer) -> str:
    """The 999 of a readable 837P file."""
    segments = [f"AK1*HC*{read.group_control}*{IG_837P}"]
    for result in read.sets:
        tx = result.transaction
        segments.append(f"AK2*{tx.id}*{tx.control_number}*{IG_837P}")
        for p in result.problems:
            segments.append(f"IK3*{p.segment_id}*{p.position}*{p.loop}*{p.code}")
            if p.claim:
                segments.append(f"CTX*CLM01:{p.claim}")
            if p.element is not None:
                segments.append(f"IK4*{p.element}**{p.element_code}")
        if result.accepted:
            segments.append("IK5*A")
        else:
            segments.append("IK5*R*" + "*".join((result.ik5_codes or ["5"])[:5]))
    count = len(read.sets)
    accepted = sum(1 for r in read.sets if r.accepted)
    status = "A" if accepted == count else ("R" if accepted == 0 else "P")
    segments.append(f"AK9*{status}*{count}*{count}*{accepted}")
    writer.transaction(segments, "999")
    return writer.text()


def claim_status(result: SetResult, read: ReadClaimFile, writer: Writer, *,
                 rejected: Callable[[Claim], str | None]) -> list[tuple[Claim, bool]]:
    """Adds the 277CA of one accepted transaction set to ``writer``; (claim, accepted) for each claim.

    ``rejected(claim)`` is the STC01 of a rejection (e.g. ``A3:116``), or None to accept."""
    day = writer.now.strftime("%Y%m%d")
    verdicts = [(claim, rejected(claim)) for claim in result.claims]
    ok = [c for c, why in verdicts if why is None]
    bad = [c for c, why in verdicts if why is not None]
    total = sum((c.charge for c, _ in verdicts), Decimal(0))
    segments = [f"BHT*0085*08*{read.control}{result.transaction.control_number}*{day}*{writer.now:%H%M}*TH",
                "HL*1**20*1", "NM1*AY*2*SANDBOX CLEARINGHOUSE*****46*SANDBOXCH", f"TRN*1*{read.control}",
                f"DTP*050*D8*{day}", f"DTP*009*D8*{day}",
                "HL*2*1*21*1", f"NM1*41*2*SUBMITTER*****46*{read.sender}", f"TRN*2*{read.control}",
                f"STC*A1:19*{day}*WQ*{money(total)}", f"QTY*90*{len(ok)}", f"QTY*AA*{len(bad)}",
                f"AMT*YU*{money(sum((c.charge for c in ok), Decimal(0)))}",
                f"AMT*YY*{money(sum((c.charge for c in bad), Decimal(0)))}"]
    hl = 2
    providers: dict[str, int] = {}
    for claim, why in verdicts:
        if claim.provider_npi not in providers:
            hl += 1
            providers[claim.provider_npi] = hl
            segments += [f"HL*{hl}*2*19*1", f"NM1*85*2*{claim.provider_name}*****XX*{claim.provider_npi}", "TRN*1*0"]
        hl += 1
        segments += [f"HL*{hl}*{providers[claim.provider_npi]}*PT",
                     f"NM1*QC*1*{claim.patient_last}*{claim.patient_first}****MI*{claim.member_id}",
                     f"TRN*2*{claim.control}"]
        if why is None:
            segments.append(f"STC*A2:20*{day}*WQ*{money(claim.charge)}")
            segments.append(f"REF*1K*{payer_claim_number(read, claim)}")
        else:
            segments.append(f"STC*{why}*{day}*U*{money(claim.charge)}")
        if claim.date:
            segments.append(f"DTP*472*D8*{claim.date}")
    writer.transaction(segments, "277")
    return [(claim, why is None) for claim, why in verdicts]


def payer_claim_number(read: ReadClaimFile, claim: Claim) -> str:
    return f"PCN{read.control}{claim.control}"[:30]


def remittance(claims: list[tuple[ReadClaimFile, Claim]], writer: Writer, rules: Adjudication, *,
               method: str, trace: str) -> Decimal:
    """Adds one 835 (one payer) paying ``claims`` to ``writer``; returns its BPR02 (= sum of CLP04)."""
    day = writer.now.strftime("%Y%m%d")
    body: list[str] = []
    total = Decimal(0)
    for n, (read, claim) in enumerate(claims, start=1):
        body.append(f"LX*{n}")
        lines: list[str] = []
        paid_sum = patient_sum = Decimal(0)
        all_denied = True
        for line in claim.lines:
            if line.code in rules.denied_codes:
                paid = Decimal(0)
                adjustments = [f"CAS*CO*50*{money(line.charge)}"]
                allowed = Decimal(0)
                remarks = ["LQ*HE*N386"]
            else:
                all_denied = False
                allowed = cents(line.charge * rules.allowed_share)
                coinsurance = cents(allowed * rules.coinsurance_share)
                paid = allowed - coinsurance
                patient_sum += coinsurance
                adjustments = [f"CAS*CO*45*{money(line.charge - allowed)}", f"CAS*PR*2*{money(coinsurance)}"]
                remarks = []
            paid_sum += paid
            lines.append(f"SVC*{':'.join(line.procedure)}*{money(line.charge)}*{money(paid)}**{line.units}")
            if line.date:
                lines.append(f"DTM*472*{line.date}")
            lines += adjustments
            if line.control:
                lines.append(f"REF*6R*{line.control}")
            lines.append(f"AMT*B6*{money(allowed)}")
            lines += remarks
        status = "4" if all_denied else "1"
        body.append(f"CLP*{claim.control}*{status}*{money(claim.charge)}*{money(paid_sum)}*{money(patient_sum)}*"
                    f"{claim.filing}*{payer_claim_number(read, claim)}*{claim.facility}*{claim.frequency}")
        body.append(f"NM1*QC*1*{claim.patient_last}*{claim.patient_first}****MI*{claim.member_id}")
        if claim.date:
            body.append(f"DTM*232*{claim.date}")
        body += lines
        total += paid_sum
    payer, provider = claims[0][1], claims[0][1]
    if total == 0:
        bpr = f"BPR*H*0*C*NON{'*' * 12}{day}"
    elif method == "CHK":
        bpr = f"BPR*C*{money(total)}*C*CHK{'*' * 12}{day}"
    else:
        bpr = (f"BPR*I*{money(total)}*C*ACH*CCP*01*011000015*DA*0001234567*1999999999**01*021000021*DA*"
               f"0007654321*{day}")
    head = [bpr, f"TRN*1*{trace}*1999999999", f"DTM*405*{day}",
            f"N1*PR*{payer.payer_name or 'SANDBOX PAYER'}*XV*{payer.payer_id}", "N3*1 PAYER WAY",
            "N4*SPRINGFIELD*IL*62701", "PER*BL*CLAIMS*TE*8005550100",
            f"N1*PE*{provider.provider_name}*XX*{provider.provider_npi}"]
    writer.transaction(head + body, "835")
    return total
