"""The sandbox clearinghouse's eligibility answers: a 270 in, a 271 out (005010X279A1).

For each subscriber (or dependent) asked about, the payer of the sandbox answers from a fixed
benefit table, whatever the service types asked:

* active coverage (EB*1), plan dates of the calendar year of the inquiry;
* PT (and OT, service type AD): 20 visits a calendar year (EB*F 23 VS 20), of which the member has
  used the number in ``visits_used`` (member id -> visits, default 0): EB*F 29 VS remaining;
* a co-payment of 25.00 per visit (EB*B 27), a co-insurance of 20 % (EB*A 27, 0.20);
* a deductible of 240.00 a calendar year (EB*C 23) with ``deductible_remaining`` left (EB*C 29);
* SLP (service type AF): covered, prior authorization required (EB11 Y).

The trace number of the 270 (TRN*1) comes back as TRN*2, BHT03 is echoed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from mappings.x12.reader import Segment, X12SyntaxError, read_interchanges
from sandboxes.clearinghouse_x12 import Writer, money

__all__ = ["ALLOWED_VISITS", "COPAY", "DEDUCTIBLE", "Inquiry", "answer_270", "is_270", "read_270"]

VERSION = "005010X279A1"
ALLOWED_VISITS = 20
COPAY = Decimal("25.00")
COINSURANCE = Decimal("0.20")
DEDUCTIBLE = Decimal("240.00")


@dataclass
class Inquiry:
    """One 2000C/2000D of a 270: who is asked about, under which payer and provider."""

    payer: tuple[str, str]  # name, id
    provider: tuple[str, str]  # name, NPI
    member: list[str] = field(default_factory=list)  # the NM1*IL elements
    dependent: list[str] | None = None  # the NM1*03 elements, when the patient is a dependent
    birth_date: str = ""
    trace: tuple[str, str] = ("", "")  # TRN02, TRN03
    on: str = ""  # DTP*291


def is_270(content: bytes) -> bool:
    try:
        read = read_interchanges(content)
    except X12SyntaxError:
        return False
    return any(tx.id == "270" for tx in read.transactions)


def read_270(content: bytes) -> tuple[str, str, str, list[Inquiry]]:
    """(ISA06 sender, ISA08 receiver, BHT03, inquiries) of a 270 file (liberal: what it finds)."""
    read = read_interchanges(content)
    first = read.interchanges[0]
    reference = ""
    inquiries: list[Inquiry] = []
    payer = provider = ("", "")
    current: Inquiry | None = None
    for tx in read.transactions:
        if tx.id != "270":
            continue
        for seg in tx.body:
            if seg.id == "BHT":
                reference = seg.get(3)
            elif seg.id == "HL" and seg.get(3) == "22":
                current = Inquiry(payer, provider)
                inquiries.append(current)
            elif seg.id == "NM1":
                _name(seg, current, inquiries)
                if seg.get(1) == "PR":
                    payer = (seg.get(3), seg.get(9))
                elif seg.get(1) == "1P":
                    provider = (seg.get(3), seg.get(9))
            elif current is not None and seg.id == "TRN":
                current.trace = (seg.get(2), seg.get(3))
            elif current is not None and seg.id == "DMG":
                current.birth_date = seg.get(2)
            elif current is not None and seg.id == "DTP" and seg.get(1) == "291":
                current.on = seg.get(3)
    return first.sender, first.receiver, reference, inquiries


def _name(seg: Segment, current: Inquiry | None, inquiries: list[Inquiry]) -> None:
    if current is None:
        return
    if seg.get(1) == "IL":
        current.member = list(seg.elements[1:])
    elif seg.get(1) == "03":
        current.dependent = list(seg.elements[1:])


def _eb(*elements: str) -> str:
    return "*".join(("EB", *elements)).rstrip("*")


def answer_270(content: bytes, writer: Writer, *, visits_used: Mapping[str, int] | None = None,
               deductible_remaining: Decimal = Decimal("150.00")) -> str:
    """The 271 of a 270 file (one transaction set per inquiry)."""
    _, _, reference, inquiries = read_270(content)
    day = writer.now.strftime("%Y%m%d")
    for inquiry in inquiries:
        member_id = inquiry.member[8] if len(inquiry.member) > 8 else ""
        used = (visits_used or {}).get(member_id, 0)
        year = (inquiry.on or day)[:4]
        segments = [f"BHT*0022*11*{reference}*{day}*{writer.now:%H%M}",
                    "HL*1**20*1", f"NM1*PR*2*{inquiry.payer[0]}*****PI*{inquiry.payer[1]}",
                    "HL*2*1*21*1", f"NM1*1P*2*{inquiry.provider[0]}*****XX*{inquiry.provider[1]}",
                    f"HL*3*2*22*{1 if inquiry.dependent else 0}"]
        person = ["NM1", *inquiry.member[:9]] if inquiry.member else ["NM1", "IL", "1"]
        if inquiry.dependent is None:
            segments.append(f"TRN*2*{inquiry.trace[0]}*{inquiry.trace[1] or '9SANDBOXCH'}")
        segments.append("*".join(person).rstrip("*"))
        if inquiry.dependent is None and inquiry.birth_date:
            segments.append(f"DMG*D8*{inquiry.birth_date}")
        if inquiry.dependent is not None:
            segments += ["HL*4*3*23*0", f"TRN*2*{inquiry.trace[0]}*{inquiry.trace[1] or '9SANDBOXCH'}",
                         "*".join(["NM1", *inquiry.dependent[:3]])]
        segments.append(f"DTP*291*RD8*{year}0101-{year}1231")
        segments += [
            _eb("1", "IND", "30", "", "SANDBOX PLAN"),
            _eb("F", "IND", "PT", "", "", "23", "", "", "VS", str(ALLOWED_VISITS)),
            _eb("F", "IND", "PT", "", "", "29", "", "", "VS", str(max(ALLOWED_VISITS - used, 0))),
            _eb("F", "IND", "AD", "", "", "23", "", "", "VS", str(ALLOWED_VISITS)),
            _eb("B", "IND", "PT^AD^AF", "", "", "27", money(COPAY)),
            _eb("A", "IND", "PT^AD^AF", "", "", "27", "", str(COINSURANCE)),
            _eb("C", "IND", "30", "", "", "23", money(DEDUCTIBLE)),
            _eb("C", "IND", "30", "", "", "29", money(deductible_remaining)),
            _eb("1", "IND", "AF", "", "", "", "", "", "", "", "Y"),
        ]
        writer.transaction(segments, "271")
    return writer.text()
