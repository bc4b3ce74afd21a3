"""Test 837P files: a small, valid 005010X222A1 interchange built from a list of claims."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class LineSpec:
    code: str
    charge: str
    units: str = "1"
    control: str = ""
    date: str = "20261201"


@dataclass
class ClaimSpec:
    control: str
    lines: list[LineSpec] = field(default_factory=list)
    payer_id: str = "60054"
    member_id: str = "MEM0001"

    @property
    def charge(self) -> Decimal:
        return sum((Decimal(line.charge) for line in self.lines), Decimal(0))


def claim_file(claims: list[ClaimSpec], *, control: int = 101, charge_override: dict[str, str] | None = None) -> bytes:
    """An 837P interchange with one transaction set holding ``claims`` (one subscriber each)."""
    overrides = charge_override or {}
    body = ["BHT*0019*00*BATCH1*20261204*1200*CH", "NM1*41*2*REHAB CLINIC*****46*CLINICSUB",
            "PER*IC*BILLING*TE*5555550100", "NM1*40*2*SANDBOX CLEARINGHOUSE*****46*SANDBOXCH",
            "HL*1**20*1", "NM1*85*2*REHAB CLINIC*****XX*1234567893", "N3*1 MAIN ST", "N4*SPRINGFIELD*IL*62701",
            "REF*EI*123456789"]
    for n, claim in enumerate(claims, start=2):
        body += [f"HL*{n}*1*22*0", "SBR*P*18*******CI", f"NM1*IL*1*DOE*JANE****MI*{claim.member_id}",
                 "N3*2 ELM ST", "N4*SPRINGFIELD*IL*62701", "DMG*D8*19800101*F",
                 f"NM1*PR*2*ACME HEALTH*****PI*{claim.payer_id}",
                 f"CLM*{claim.control}*{overrides.get(claim.control, str(claim.charge))}***11:B:1*Y*A*Y*Y",
                 "HI*ABK:M545"]
        for i, line in enumerate(claim.lines, start=1):
            body += [f"LX*{i}", f"SV1*HC:{line.code}:GP*{line.charge}*UN*{line.units}***1",
                     f"DTP*472*D8*{line.date}"]
            if line.control:
                body.append(f"REF*6R*{line.control}")
    segments = ["ST*837*0001*005010X222A1", *body]
    segments.append(f"SE*{len(segments) + 1}*0001")
    head = [f"ISA*00*{'':10}*00*{'':10}*ZZ*{'CLINICSUB':<15}*ZZ*{'SANDBOXCH':<15}*261204*1200*^*00501*"
            f"{control:09d}*1*T*:", f"GS*HC*CLINICSUB*SANDBOXCH*20261204*1200*{control}*X*005010X222A1"]
    tail = [f"GE*1*{control}", f"IEA*1*{control:09d}"]
    return "".join(f"{s}~" for s in head + segments + tail).encode()


def simple_file(control: int = 101) -> bytes:
    return claim_file([ClaimSpec("PCN1", [LineSpec("97110", "150", control="L1"),
                                          LineSpec("97140", "97.33", units="2", control="L2")])], control=control)
