"""What the hub does with an acknowledgement: plain summaries per claim and per transaction set.

No FHIR resource is built here. A 277CA or a 999 does not describe an adjudication (that is the
835, read elsewhere), so a ``ClaimResponse`` would be mostly empty; instead the hub looks up the
claim it sent by the patient control number (CLM01 = TRN02 of the 277CA = CTX of the 999) or the
transaction set by its control numbers, and records the outcome. Each summary still names the FHIR
``ClaimResponse.outcome`` code (``queued | complete | error | partial``) that fits, for the hub to
use when it keeps a ClaimResponse for the claim.

The summaries hold the claim keys (patient control number, payer claim number) and codes with
descriptions: no names, no member ids, no copied bad values (IK404) and no free text of the payer
(STC12 may hold anything). The patient control number is still an account number: keep it out of logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from mappings.x12.ack_codes import Classification
from mappings.x12.read277 import ClaimAckReport, StatusInfo
from mappings.x12.read999 import AckReport

ClaimResponseOutcome = Literal["queued", "complete", "error", "partial"]


@dataclass(frozen=True, slots=True)
class StatusReason:
    code: str  # "A7:562:85" (category:status:entity)
    text: str  # "Acknowledgement/Rejected for invalid information; Entity's National Provider ... (Billing provider)"
    classification: Classification


@dataclass(frozen=True, slots=True)
class LineStatusSummary:
    line_control_number: str  # REF*FJ = the REF*6R we sent ('' when the payer did not echo it)
    procedure: str  # SVC01-2 (97110)
    outcome: Classification
    reasons: tuple[StatusReason, ...]


@dataclass(frozen=True, slots=True)
class ClaimStatusSummary:
    """The acknowledgement of one claim, for the hub to apply to the claim it sent."""

    patient_control_number: str  # the CLM01 we sent: the key to find the claim
    outcome: Classification
    claim_response_outcome: ClaimResponseOutcome | None
    payer_claim_control_number: str  # REF*1K, '' when none
    clearinghouse_trace: str  # REF*D9, '' when none
    effective_date: date | None  # the latest STC02 of the claim
    reasons: tuple[StatusReason, ...]
    lines: tuple[LineStatusSummary, ...]


@dataclass(frozen=True, slots=True)
class TransactionSetSummary:
    """The 999 answer for one transaction set (one 837) we sent."""

    group_control_number: str  # AK102 = our GS06
    control_number: str  # AK202 = our ST02
    accepted: bool  # IK501 A or E
    status: str  # IK501 code ('' when the IK5 is missing)
    rejected_claims: tuple[str, ...]  # patient control numbers named by CTX*CLM01 of the errors
    reasons: tuple[str, ...]  # "NM1 at 15 (loop 2010BB): Segment has data element errors; NM109 ..."


def _reasons(statuses: tuple[StatusInfo, ...]) -> tuple[StatusReason, ...]:
    out: list[StatusReason] = []
    for status in statuses:
        for detail in status.details:
            code = ":".join(
                part for part in (detail.category.code, detail.status.code, detail.entity.code if detail.entity else "")
                if part
            )
            words = [detail.category.description or f"category {detail.category.code}"]
            if detail.status.code:
                words.append(detail.status.description or f"status {detail.status.code}")
            text = "; ".join(words)
            if detail.entity is not None:
                text += f" ({detail.entity.description or 'entity ' + detail.entity.code})"
            out.append(StatusReason(code, text, detail.classification))
    return tuple(out)


def _fhir_outcome(outcome: Classification, reasons: tuple[StatusReason, ...]) -> ClaimResponseOutcome | None:
    if outcome == "rejected":
        return "error"
    if outcome in ("accepted", "pending"):
        return "queued"
    if any(reason.code.startswith("F") for reason in reasons):
        return "complete"
    return None


def claim_status_summary(report: ClaimAckReport) -> tuple[ClaimStatusSummary, ...]:
    """One summary per claim of a 277CA, in the order of the file."""
    out: list[ClaimStatusSummary] = []
    for claim in report.claims:
        reasons = _reasons(claim.statuses)
        dates = [s.effective_date for s in claim.statuses if s.effective_date is not None]
        lines = tuple(
            LineStatusSummary(line.line_control_number, line.procedure[1] if len(line.procedure) > 1 else "",
                              line.classification, _reasons(line.statuses))
            for line in claim.lines
        )
        out.append(ClaimStatusSummary(
            patient_control_number=claim.patient_control_number,
            outcome=claim.classification,
            claim_response_outcome=_fhir_outcome(claim.classification, reasons),
            payer_claim_control_number=claim.payer_claim_control_number,
            clearinghouse_trace=claim.clearinghouse_trace,
            effective_date=max(dates) if dates else None,
            reasons=reasons,
            lines=lines,
        ))
    return tuple(out)


def transaction_set_summary(report: AckReport) -> tuple[TransactionSetSummary, ...]:
    """One summary per AK2 of a 999 (the bad values copied in IK404 are left out: they may be PHI)."""
    out: list[TransactionSetSummary] = []
    for response in report.transactions:
        reasons: list[str] = []
        for error in response.segment_errors:
            where = f"{error.segment_id} at {error.position if error.position is not None else '?'}"
            if error.loop_id:
                where += f" (loop {error.loop_id})"
            text = f"{where}: {error.error.description or 'error ' + error.error.code}"
            for element in error.elements:
                name = f"{error.segment_id}{element.position:02d}" if element.position is not None else "element"
                if element.component is not None:
                    name += f"-{element.component}"
                text += f"; {name} {element.error.description or 'error ' + element.error.code}"
            reasons.append(text)
        reasons.extend(code.description or f"transaction set error {code.code}" for code in response.errors)
        out.append(TransactionSetSummary(
            group_control_number=report.group_control_number,
            control_number=response.control_number,
            accepted=response.accepted,
            status=response.status.code if response.status else "",
            rejected_claims=response.rejected_claims,
            reasons=tuple(reasons),
        ))
    return tuple(out)
