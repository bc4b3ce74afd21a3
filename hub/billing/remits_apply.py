"""Applying an 835 to the claims the hub sent: one ``ClaimResponse`` per CLP, written through the
FHIR store (so routes deliver it like any write), and the claim paid, partially paid, denied or
reversed (ADR 0013). Amounts to the cent.

* ``reversed``: CLP02 22; its (negative) amounts are added to what the claim had been paid;
* ``denied``: CLP02 4, or nothing paid and nothing left to the patient;
* ``partially_paid``: some line billed was paid nothing (denied), the others were paid;
* ``paid``: otherwise (contractual adjustments, CO-45, do not make a payment partial).

The ClaimResponse id is derived from the payer, the trace number, CLP01, CLP07 and CLP02
(:func:`mappings.x12.remittance_fhir.claim_response_id`): a re-read 835 updates the same resource.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.orm import Session

from hub.billing import imports_queries as q
from hub.billing.imports_result import SetOutcome
from hub.errors import HubError, NotFound, describe
from hub.fhir.service import FhirService
from hub.store.models import BillingClaim
from mappings.billing.codes import LINE_CONTROL_EXTENSION
from mappings.fhir import jsonio
from mappings.x12.remittance import ClaimPayment, Remittance
from mappings.x12.remittance_fhir import claim_response, provider_adjustments

CENT = Decimal("0.01")


def to_cents(amount: Decimal | None) -> int:
    """Decimal dollars -> integer cents (half up)."""
    if amount is None:
        return 0
    return int((amount.quantize(CENT, ROUND_HALF_UP) * 100).to_integral_value())


def _plain(value: Any) -> Any:
    """Dates as ISO text (what the message store's JSON can hold); amounts stay exact."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def claim_outcome(payment: ClaimPayment) -> str:
    if payment.is_reversal:
        return "reversed"
    patient = payment.patient_responsibility or Decimal(0)
    if payment.status_code == "4" or (payment.paid == 0 and patient == 0):
        return "denied"
    if payment.paid > 0 and any(line.paid == 0 and line.charge > 0 for line in payment.services):
        return "partially_paid"
    return "paid"


def _line_sequences(claim: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in claim.get("item") or []:
        for extension in item.get("extension") or []:
            if extension.get("url") == LINE_CONTROL_EXTENSION:
                value = (extension.get("valueIdentifier") or {}).get("value")
                if value and isinstance(item.get("sequence"), int):
                    out[str(value)] = item["sequence"]
    return out


def _payment_time(remittance: Remittance, now: datetime) -> datetime:
    return datetime.combine(remittance.payment_date, time()) if remittance.payment_date else now


def apply_835(session: Session, fhir: FhirService, remittance: Remittance, *, tenant: str,
              now: datetime) -> tuple[SetOutcome, dict[str, Any]]:
    """Apply one 835 set; returns its outcome and what the message keeps of it (PLB, unmatched)."""
    outcome = SetOutcome("835", remittance.control_number)
    outcome.applied = True
    outcome.warnings.extend(str(w) for w in remittance.warnings)
    kept: dict[str, Any] = {"kind": "835", "control_number": remittance.control_number,
                            "payer_id": remittance.payer_id, "trace_number": remittance.trace_number,
                            "total_paid_cents": to_cents(remittance.total_paid), "unmatched": []}
    if remittance.provider_adjustments:
        kept["provider_adjustments"] = _plain(provider_adjustments(remittance))
    for payment in remittance.claims:
        claim = q.claim_by_pcn(session, tenant=tenant, patient_control_number=payment.patient_control_number)
        if claim is None:
            outcome.unmatched.append(payment.patient_control_number)
            kept["unmatched"].append({"patient_control_number": payment.patient_control_number,
                                      "position": payment.position, "status_code": payment.status_code,
                                      "charge_cents": to_cents(payment.charge), "paid_cents": to_cents(payment.paid)})
            continue
        try:
            _apply_payment(fhir, claim, payment, remittance, now, outcome)
        except (HubError, ValueError) as exc:
            why = describe(exc) if isinstance(exc, HubError) else "it is not a valid ClaimResponse"
            outcome.errors.append(f"CLP (segment {payment.position}): the ClaimResponse was refused: "
                                  f"{why} [billing.835.claim-response]")
    return outcome, kept


def _apply_payment(fhir: FhirService, claim: BillingClaim, payment: ClaimPayment, remittance: Remittance,
                   now: datetime, outcome: SetOutcome) -> None:
    try:
        stored = fhir.read("Claim", claim.claim_id)
        content: dict[str, Any] = jsonio.loads(stored.content or "{}")
    except NotFound:
        content = {}
    patient_ref = (content.get("patient") or {}).get("reference") or (
        f"Patient/{claim.patient_id}" if claim.patient_id else None)
    if patient_ref is None:
        raise NotFound("the claim has no patient to address its ClaimResponse to")
    resource = claim_response(payment, remittance, request_ref=f"Claim/{claim.claim_id}", patient_ref=patient_ref,
                              insurer_ref=(content.get("insurer") or {}).get("reference"),
                              line_sequences=_line_sequences(content), created=now.replace(tzinfo=UTC))
    payload = jsonio.loads(jsonio.dumps(resource))
    written = fhir.update("ClaimResponse", resource["id"], payload)
    outcome.resources.append(f"ClaimResponse/{written.stored.id}")
    status = claim_outcome(payment)
    paid, patient = to_cents(payment.paid), to_cents(payment.patient_responsibility)
    if status == "reversed":
        claim.paid_cents = (claim.paid_cents or 0) + paid
        claim.patient_responsibility_cents = (claim.patient_responsibility_cents or 0) + patient
    else:
        claim.paid_cents = paid
        claim.patient_responsibility_cents = patient
    claim.status = status
    claim.status_detail = f"835 CLP02 {payment.status_code} {payment.status_description or ''}".rstrip()[:1000]
    claim.claim_response_id = written.stored.id
    claim.paid_at = _payment_time(remittance, now)
    if payment.payer_claim_control_number:
        claim.payer_claim_number = payment.payer_claim_control_number[:50]
    claim.updated_at = now
    outcome.count(status)
    outcome.paid_cents += paid
    outcome.patient_responsibility_cents += patient
