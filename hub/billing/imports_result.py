"""What an X12 import did: one :class:`SetOutcome` per transaction set (or TA1) of the file, and the
:class:`ImportResult` of the whole file. Counts, amounts in cents, codes and positions only: the
patient control numbers of unmatched payments are the one business key kept (an account number,
never a name), for the billing office to look up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SetOutcome:
    """One transaction set (or TA1) of an imported file."""

    kind: str  # TA1 | 999 | 277CA | 835 | 271 | the ST01 of a set the hub does not read
    control_number: str  # ST02 (TA1: the ISA13 it answers)
    applied: bool = False
    #: claim status -> how many claims this set moved there (accepted, rejected, paid...)
    claims: dict[str, int] = field(default_factory=dict)
    paid_cents: int = 0
    patient_responsibility_cents: int = 0
    #: patient control numbers of claim payments (or statuses) for no claim the hub knows
    unmatched: list[str] = field(default_factory=list)
    #: FHIR resources written ("ClaimResponse/…", "CoverageEligibilityResponse/…")
    resources: list[str] = field(default_factory=list)
    #: what was wrong: "SE (segment 40): ... [x12.se-count]"; a set with errors in its envelope is not applied
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the 837P files (their message ids) this acknowledgement answered: id -> (accepted, what it said)
    files: dict[str, tuple[bool, str]] = field(default_factory=dict)

    def count(self, status: str) -> None:
        self.claims[status] = self.claims.get(status, 0) + 1

    def view(self) -> dict[str, Any]:
        return {"kind": self.kind, "control_number": self.control_number, "applied": self.applied,
                "claims": dict(self.claims), "paid_cents": self.paid_cents,
                "patient_responsibility_cents": self.patient_responsibility_cents,
                "unmatched": list(self.unmatched), "resources": list(self.resources),
                "errors": list(self.errors), "warnings": list(self.warnings)}

    def summary(self) -> str:
        """One line for a message event: counts and codes, no business keys."""
        parts = [f"{self.kind} {self.control_number}".strip()]
        if self.claims:
            parts.append(", ".join(f"{n} {status}" for status, n in sorted(self.claims.items())))
        if self.paid_cents:
            parts.append(f"paid {self.paid_cents / 100:.2f}")
        if self.unmatched:
            parts.append(f"{len(self.unmatched)} for unknown claims (kept as unmatched)")
        if self.errors:
            parts.append(f"{len(self.errors)} errors")
        return ": ".join(parts[:1] + ["; ".join(parts[1:])]) if len(parts) > 1 else parts[0]


@dataclass(slots=True)
class ImportResult:
    """One imported file: its message, whether it was a duplicate, and what each set did."""

    message_id: str
    name: str | None
    duplicate: bool = False
    readable: bool = True
    error: str | None = None  # why the file as a whole could not be read
    sets: list[SetOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.readable and not any(s.errors for s in self.sets)

    def claims(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for outcome in self.sets:
            for status, n in outcome.claims.items():
                total[status] = total.get(status, 0) + n
        return total

    @property
    def paid_cents(self) -> int:
        return sum(s.paid_cents for s in self.sets)

    @property
    def unmatched(self) -> list[str]:
        return [pcn for s in self.sets for pcn in s.unmatched]

    def view(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "name": self.name, "duplicate": self.duplicate,
                "readable": self.readable, "error": self.error, "ok": self.ok, "claims": self.claims(),
                "paid_cents": self.paid_cents, "unmatched": self.unmatched, "sets": [s.view() for s in self.sets]}
