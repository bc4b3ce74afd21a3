"""Applying acknowledgements to the claims the hub sent: TA1 and 999 to the claims of a file
(by ISA13 and ST02), a 277CA to each claim by its patient control number (ADR 0013).

The wording kept in ``billing_claims.status_detail`` is codes and their descriptions, never the
values the payer copied back (IK404) nor its free text (STC12).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from hub.billing import imports_queries as q
from hub.billing.imports_result import SetOutcome
from hub.store.models import BillingClaim
from mappings.x12.ack_fhir import claim_status_summary
from mappings.x12.read277 import ClaimAckReport
from mappings.x12.read999 import AckReport, InterchangeAck, SegmentError

MAX_DETAIL = 1000


def _detail(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _segment_error_text(error: SegmentError) -> str:
    """``NM1 at 15 (loop 2010BB): IK304 8 Segment has data element errors; NM109 IK403 7 ...``."""
    where = f"{error.segment_id} at {error.position if error.position is not None else '?'}"
    if error.loop_id:
        where += f" (loop {error.loop_id})"
    text = f"{where}: IK304 {error.error.code} {error.error.description or ''}".rstrip()
    for element in error.elements:
        name = f"{error.segment_id}{element.position:02d}" if element.position is not None else "element"
        if element.component is not None:
            name += f"-{element.component}"
        text += f"; {name} IK403 {element.error.code} {element.error.description or ''}".rstrip()
    return text


def _move(claim: BillingClaim, status: str, detail: str, now: datetime, outcome: SetOutcome) -> None:
    claim.status = status
    claim.status_detail = _detail(detail)
    claim.updated_at = now
    if status in ("acknowledged", "payer_rejected"):
        claim.acknowledged_at = now
    outcome.count(status)


def apply_ta1(session: Session, ack: InterchangeAck, *, tenant: str, connector_id: int | None,
              now: datetime) -> SetOutcome:
    """A TA1 that rejects an interchange rejects every claim it carried; an accepting one changes nothing."""
    outcome = SetOutcome("TA1", ack.control_number)
    try:
        number = int(ack.control_number)
    except ValueError:
        outcome.errors.append(f"TA1 (segment {ack.position}): TA101 is not a control number [x12.ta1.control]")
        return outcome
    outcome.applied = True
    if ack.accepted:
        return outcome
    detail = f"TA1 {ack.status.code}: TA105 {ack.note.code} {ack.note.description or ''}".rstrip()
    claims = q.claims_of_interchange(session, tenant=tenant, interchange_control=number, connector_id=connector_id)
    if not claims:
        outcome.warnings.append(f"TA1 (segment {ack.position}): no claim file of the hub has ISA13 {number:09d}")
    for claim in claims:
        _move(claim, "rejected", detail, now, outcome)
    outcome.files.update({c.file_message_id: (False, detail) for c in claims if c.file_message_id})
    return outcome


def apply_999(session: Session, report: AckReport, *, tenant: str, connector_id: int | None,
              now: datetime, group_of: Callable[[str], str | None] = lambda message_id: None) -> SetOutcome:
    """Each AK2 to the claims of the 837P set with that ST02: accepted, or rejected with the IK3/IK4
    of the claim when a CTX names it (else the set's errors). ``group_of(file_message_id)``: the GS06
    of the 837P file that carried a claim (None when unknown); a claim whose file has another GS06
    than the AK102 is not this 999's."""
    outcome = SetOutcome("999", report.control_number)
    outcome.applied = True
    for response in report.transactions:
        try:
            number = int(response.control_number)
        except ValueError:
            outcome.errors.append("AK2: AK202 is not a control number [x12.999.control]")
            continue
        claims = q.claims_of_transaction(session, tenant=tenant, transaction_control=number, connector_id=connector_id)
        files = {claim.file_message_id for claim in claims if claim.file_message_id}
        other = {f for f in files if (group_of(f) or report.group_control_number) != report.group_control_number}
        if other:
            outcome.warnings.append(f"AK2 for ST02 {response.control_number}: {len(other)} claim files of another "
                                    f"group (GS06) than AK102 {report.group_control_number} left alone")
            claims = [claim for claim in claims if claim.file_message_id not in other]
        if not claims:
            past = q.claims_past_acceptance(session, tenant=tenant, transaction_control=number,
                                            connector_id=connector_id)
            outcome.warnings.append(
                f"AK2 for ST02 {response.control_number}: its {past} claims are already past the 999 (277CA or "
                "835 applied first): left as they are" if past and not other else
                f"AK2 for ST02 {response.control_number}: no claim file of the hub has it")
            continue
        if response.accepted:
            status = response.status.code if response.status else "A"
            for claim in claims:
                _move(claim, "accepted", f"999 {status}: transaction set accepted", now, outcome)
            outcome.files.update({c.file_message_id: (True, f"999 {status}: transaction set "
                                                            f"{response.control_number} accepted")
                                  for c in claims if c.file_message_id})
            continue
        per_claim: dict[str, list[str]] = {}
        general: list[str] = []
        for error in response.segment_errors:
            unit = error.business_unit
            text = _segment_error_text(error)
            if unit is not None and unit.name.upper() == "CLM01":
                per_claim.setdefault(unit.reference, []).append(text)
            else:
                general.append(text)
        general.extend(f"IK5 {code.code} {code.description or ''}".rstrip() for code in response.errors)
        status = response.status.code if response.status else "R"
        for claim in claims:
            own = per_claim.get(claim.patient_control_number)
            if own:
                text = f"999 {status}: " + "; ".join(own + general)
            else:
                text = f"999 {status}: transaction set rejected" + (": " + "; ".join(general) if general else
                                                                      " (errors in other claims of the set)")
            _move(claim, "rejected", text, now, outcome)
        reasons = "; ".join(general) if general else "errors in its claims"
        outcome.files.update({c.file_message_id: (False, f"999 {status}: transaction set {response.control_number} "
                                                          f"rejected: {reasons}")
                              for c in claims if c.file_message_id})
        known = {claim.patient_control_number for claim in claims}
        outcome.unmatched.extend(pcn for pcn in per_claim if pcn not in known)
    return outcome


def apply_277ca(session: Session, report: ClaimAckReport, *, tenant: str, now: datetime) -> SetOutcome:
    """Each claim of a 277CA by patient control number: acknowledged (accepted or pending) or payer_rejected."""
    outcome = SetOutcome("277CA", report.control_number)
    outcome.applied = True
    for summary in claim_status_summary(report):
        claim = q.claim_by_pcn(session, tenant=tenant, patient_control_number=summary.patient_control_number)
        if claim is None:
            outcome.unmatched.append(summary.patient_control_number)
            continue
        if claim.status not in q.CLAIM_ACK_STATUSES:
            outcome.warnings.append(f"277CA for a claim already {claim.status}: not moved back")
            continue
        reasons = "; ".join(f"{reason.code} {reason.text}" for reason in summary.reasons)
        if summary.payer_claim_control_number:
            claim.payer_claim_number = summary.payer_claim_control_number[:50]
        if summary.outcome == "rejected":
            _move(claim, "payer_rejected", f"277CA rejected: {reasons}", now, outcome)
        elif summary.outcome in ("accepted", "pending"):
            _move(claim, "acknowledged", f"277CA {summary.outcome}: {reasons}", now, outcome)
        else:
            outcome.warnings.append(f"277CA status {reasons or 'without a category'} leaves the claim {claim.status}")
    return outcome
