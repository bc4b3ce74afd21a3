"""What the billing service answers: the outcome of a build, of a scrub, and of each 837P file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from hub.store.models import BillingClaim
from mappings.billing.model import Finding

__all__ = ["BuildResult", "BuiltClaim", "FileResult", "ScrubResult", "Skipped", "findings_of", "view_of"]

#: statuses a build may rewrite (the claim has not gone out)
EDITABLE = ("draft", "blocked", "ready")
#: statuses after which the claim never reached the payer: rebuilt in place when the visit changed
RESUBMITTABLE = ("rejected", "payer_rejected")


@dataclass(frozen=True, slots=True)
class BuiltClaim:
    """One visit's claim after a build."""

    claim_id: str
    patient_control_number: str
    encounter_id: str
    status: str  # blocked | ready, or the status of a submitted claim left as it was
    #: created | updated | unchanged | replacement
    action: Literal["created", "updated", "unchanged", "replacement"]
    errors: int = 0
    warnings: int = 0


@dataclass(frozen=True, slots=True)
class Skipped:
    """A visit with billable charges that got no claim (or whose change waits), and why (no PHI)."""

    encounter_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class BuildResult:
    claims: list[BuiltClaim] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for c in self.claims if c.action == action)


@dataclass(frozen=True, slots=True)
class ScrubResult:
    claim_id: str
    status: str
    findings: list[Finding]

    @property
    def blocking(self) -> bool:
        return any(f.severity == "error" for f in self.findings)


@dataclass(frozen=True, slots=True)
class FileResult:
    """One 837P file: ``queued`` (a delivery job to the connector), ``written`` (to ``path``) or
    ``invalid`` (pyx12 or the writer refused it: nothing went out, its claims stay ready)."""

    status: Literal["queued", "written", "invalid"]
    connector: str
    payer_id: str
    claim_ids: tuple[str, ...]
    patient_control_numbers: tuple[str, ...]
    charge_cents: int
    interchange_control: int | None = None
    group_control: int | None = None
    transaction_control: int | None = None
    message_id: str | None = None
    job_ids: tuple[int, ...] = ()
    path: str | None = None
    issues: tuple[str, ...] = ()


def findings_of(row: BillingClaim) -> list[Finding]:
    return [Finding.model_validate(f) for f in json.loads(row.findings or "[]")]


def _cents(value: int | None) -> str | None:
    return None if value is None else f"{value / 100:.2f}"


def view_of(row: BillingClaim, *, with_findings: bool = False) -> dict[str, Any]:
    """A claim as listings show it: its state, never the patient's name."""
    findings = findings_of(row)
    view: dict[str, Any] = {
        "claim_id": row.claim_id,
        "patient_control_number": row.patient_control_number,
        "encounter_id": row.encounter_id,
        "status": row.status,
        "status_detail": row.status_detail,
        "payer_id": row.payer_id,
        "discipline": row.discipline,
        "frequency_code": row.frequency_code,
        "charge": _cents(row.charge_cents),
        "paid": _cents(row.paid_cents),
        "service_from": row.service_from.date() if row.service_from else None,
        "service_to": row.service_to.date() if row.service_to else None,
        "findings": len(findings),
        "errors": sum(1 for f in findings if f.severity == "error"),
        "file_message_id": row.file_message_id,
        "interchange_control": row.interchange_control,
        "transaction_control": row.transaction_control,
        "payer_claim_number": row.payer_claim_number,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "submitted_at": row.submitted_at,
    }
    if with_findings:
        view["finding_list"] = [f.model_dump(mode="json") for f in findings]
    return view
