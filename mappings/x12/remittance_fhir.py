"""An 835 claim payment as a FHIR R4 ``ClaimResponse``; the provider level adjustments as a summary.

Choices made where R4 leaves room (the hub and its readers rely on them):

* ``outcome`` is ``complete`` for every claim of an 835, denied ones included (a denial is a
  finished adjudication; an 835 carries no claim the payer could not process, those come back in a
  999 or 277CA); ``disposition`` carries the CLP02 status description ("Denied", "Reversal of
  previous payment", "Predetermination pricing only, no payment"...).
* the CLP02 status is also an extension (:data:`CLAIM_STATUS_EXTENSION`, a Coding of
  :data:`CLAIM_STATUS_SYSTEM`), and a reversal (CLP02 22) carries :data:`REVERSAL_EXTENSION`
  ``valueBoolean true``; its amounts stay negative as the payer sent them.
* each CAS adjustment is one adjudication: ``category`` is its group code (CO, PR, OA, PI, CR in
  :data:`GROUP_SYSTEM`), ``reason`` its CARC (:data:`CARC_SYSTEM`), ``amount`` its amount and
  ``value`` its quantity. Next to them ``submitted`` (charge), ``eligible`` (AMT*B6 allowed, when
  sent) and ``benefit`` (paid) use the R4 adjudication code system.
* remark codes (RARC of LQ*HE, MOA, MIA) are ``processNote`` entries (``type`` display, text
  "code: description"); an item points to its notes by ``noteNumber``.
* ``total``: ``submitted`` (CLP03), ``benefit`` (CLP04) and, when CLP05 is sent, the patient's
  responsibility with category ``PR`` of :data:`GROUP_SYSTEM` (R4's adjudication codes have no
  patient-responsibility code; the category binding is an example binding).
* ``payment``: type ``complete``, date BPR16, amount = this claim's payment (CLP04), identifier = the
  TRN02 check/EFT trace number. The payment's total is in BPR02, see :func:`provider_adjustments`.
* claim level adjustments, which R4 cannot attach to an item, are in ``adjudication`` (R4
  ``ClaimResponse.adjudication``, "header-level adjudication").
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from mappings.billing.model import CPT_SYSTEM, HCPCS_SYSTEM, MODIFIER_SYSTEM, PATIENT_CONTROL_SYSTEM
from mappings.fhir import model_class
from mappings.x12.carc import group_description
from mappings.x12.read835 import Adjustment, ClaimPayment, Procedure, Remark, Remittance, ServicePayment

GROUP_SYSTEM = "https://x12.org/codes/claim-adjustment-group-codes"
CARC_SYSTEM = "https://x12.org/codes/claim-adjustment-reason-codes"
RARC_SYSTEM = "https://x12.org/codes/remittance-advice-remark-codes"
CLAIM_STATUS_SYSTEM = "https://x12.org/codes/claim-status-codes"
ADJUDICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/adjudication"
#: the payer's claim control number (CLP07), scoped by the payer id in ``assigner``
PAYER_CLAIM_SYSTEM = "https://therapy-hub.example/sid/payer-claim-control-number"
PAYMENT_TRACE_SYSTEM = "https://therapy-hub.example/sid/payment-trace-number"
CLAIM_STATUS_EXTENSION = "https://therapy-hub.example/fhir/StructureDefinition/x12-claim-status"
REVERSAL_EXTENSION = "https://therapy-hub.example/fhir/StructureDefinition/payment-reversal"
_NAMESPACE = uuid.UUID("9b0f3a4e-6c1d-5e8a-9f2b-835000000001")
_PLAIN_QUALIFIERS = {"HC": CPT_SYSTEM, "AD": HCPCS_SYSTEM}


def claim_response_id(payment: ClaimPayment, remittance: Remittance) -> str:
    """uuid5 over payer id + trace number + CLP01 + CLP07 + CLP02: a re-read 835 updates, not duplicates."""
    key = "|".join((remittance.payer_id, remittance.trace_number, payment.patient_control_number,
                    payment.payer_claim_control_number or "", payment.status_code))
    return str(uuid.uuid5(_NAMESPACE, "ClaimResponse|" + key))


def claim_response(payment: ClaimPayment, remittance: Remittance, *, request_ref: str | None, patient_ref: str,
                   insurer_ref: str | None, line_sequences: Mapping[str, int], created: datetime) -> dict[str, Any]:
    """The ``ClaimResponse`` of one 835 claim (CLP loop), validated with the R4B model.

    ``line_sequences`` maps a line item control number (837P/835 REF*6R) to the ``Claim.item.sequence``
    it was billed as; a line without (or with an unknown) control number takes its order in the claim.
    Amounts are ``Decimal``: serialise with :func:`mappings.fhir.jsonio.dumps`.
    """
    notes = _Notes()
    for remark in payment.remarks:
        notes.add(remark)
    status = {"system": CLAIM_STATUS_SYSTEM, "code": payment.status_code}
    if payment.status_description:
        status["display"] = payment.status_description
    extensions: list[dict[str, Any]] = [{"url": CLAIM_STATUS_EXTENSION, "valueCoding": status}]
    if payment.is_reversal:
        extensions.append({"url": REVERSAL_EXTENSION, "valueBoolean": True})
    resource: dict[str, Any] = {
        "resourceType": "ClaimResponse",
        "id": claim_response_id(payment, remittance),
        "extension": extensions,
        "identifier": _identifiers(payment, remittance),
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim",
        "patient": {"reference": patient_ref},
        "created": created.isoformat(),
        "insurer": {"reference": insurer_ref} if insurer_ref else {"display": remittance.payer.name or "payer"},
        "outcome": "complete",
        "disposition": payment.status_description or f"Claim status {payment.status_code}",
    }
    if remittance.payer.name and insurer_ref:
        resource["insurer"]["display"] = remittance.payer.name
    if request_ref:
        resource["request"] = {"reference": request_ref}
    items = []
    for order, line in enumerate(payment.services, start=1):
        control = line.line_control_number
        sequence = line_sequences.get(control, order) if control else order
        item: dict[str, Any] = {"itemSequence": sequence, "adjudication": _line_adjudications(line)}
        numbers = [notes.add(remark) for remark in line.remarks]
        if numbers:
            item["noteNumber"] = sorted(set(numbers))
        extension = _procedure_extension(line)
        if extension:
            item["extension"] = extension
        items.append(item)
    if items:
        resource["item"] = items
    header = [_adjustment(a) for a in payment.adjustments]
    if header:
        resource["adjudication"] = header
    totals = [_total("submitted", "Submitted Amount", payment.charge),
              _total("benefit", "Benefit Amount", payment.paid)]
    if payment.patient_responsibility is not None:
        totals.append({"category": {"coding": [{"system": GROUP_SYSTEM, "code": "PR",
                                                "display": group_description("PR")}],
                                    "text": "patient responsibility"},
                       "amount": _money(payment.patient_responsibility)})
    resource["total"] = totals
    pay: dict[str, Any] = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-paymenttype", "code": "complete"}]},
        "amount": _money(payment.paid),
    }
    if remittance.payment_date:
        pay["date"] = remittance.payment_date.isoformat()
    if remittance.trace_number:
        pay["identifier"] = {"system": PAYMENT_TRACE_SYSTEM, "value": remittance.trace_number}
    resource["payment"] = pay
    if notes.entries:
        resource["processNote"] = notes.entries
    model_class("ClaimResponse").model_validate(resource)
    return resource


def provider_adjustments(remittance: Remittance) -> dict[str, Any]:
    """The payment as a whole: BPR/TRN and every PLB adjustment (they belong to no claim)."""
    withheld = sum((plb.amount for plb in remittance.provider_adjustments), Decimal("0.00"))
    return {
        "trace_number": remittance.trace_number,
        "payer_id": remittance.payer_id,
        "payer_name": remittance.payer.name,
        "payee_id": remittance.payee.identifier,
        "payment_method": remittance.payment_method,
        "payment_date": remittance.payment_date,
        "total_paid": remittance.total_paid,
        "claims_paid": sum((claim.paid for claim in remittance.claims), Decimal("0.00")),
        "total_adjusted": withheld,
        "adjustments": [
            {"provider_id": plb.provider_id, "fiscal_period_date": plb.fiscal_period_date, "reason": plb.reason,
             "description": plb.description, "reference": plb.reference, "amount": plb.amount}
            for plb in remittance.provider_adjustments
        ],
    }


class _Notes:
    """processNote entries, one per distinct remark code, numbered in order of appearance."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._numbers: dict[tuple[str, str], int] = {}

    def add(self, remark: Remark) -> int:
        key = (remark.qualifier, remark.code)
        if key not in self._numbers:
            self._numbers[key] = len(self.entries) + 1
            description = remark.description
            text = f"{remark.code}: {description}" if description else remark.code
            if remark.qualifier != "HE":
                text = f"{remark.qualifier} {text}"
            self.entries.append({"number": self._numbers[key], "type": "display", "text": text})
        return self._numbers[key]


def _identifiers(payment: ClaimPayment, remittance: Remittance) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"system": PATIENT_CONTROL_SYSTEM, "value": payment.patient_control_number}]
    if payment.payer_claim_control_number:
        identifier: dict[str, Any] = {"system": PAYER_CLAIM_SYSTEM, "value": payment.payer_claim_control_number}
        if remittance.payer_id:
            identifier["assigner"] = {"identifier": {"value": remittance.payer_id}}
        out.append(identifier)
    return out


def _money(amount: Decimal) -> dict[str, Any]:
    return {"value": amount, "currency": "USD"}


def _total(code: str, display: str, amount: Decimal) -> dict[str, Any]:
    return {"category": {"coding": [{"system": ADJUDICATION_SYSTEM, "code": code, "display": display}]},
            "amount": _money(amount)}


def _adjustment(adjustment: Adjustment) -> dict[str, Any]:
    category: dict[str, Any] = {"system": GROUP_SYSTEM, "code": adjustment.group}
    if adjustment.group_description:
        category["display"] = adjustment.group_description
    reason: dict[str, Any] = {"system": CARC_SYSTEM, "code": adjustment.reason}
    if adjustment.reason_description:
        reason["display"] = adjustment.reason_description
    out: dict[str, Any] = {"category": {"coding": [category]}, "reason": {"coding": [reason]},
                           "amount": _money(adjustment.amount)}
    if adjustment.quantity is not None:
        out["value"] = adjustment.quantity
    return out


def _line_adjudications(line: ServicePayment) -> list[dict[str, Any]]:
    out = [_total("submitted", "Submitted Amount", line.charge)]
    if line.allowed is not None:
        out.append(_total("eligible", "Eligible Amount", line.allowed))
    out.append(_total("benefit", "Benefit Amount", line.paid))
    out.extend(_adjustment(a) for a in line.adjustments)
    return out


#: the procedure a line was paid as, and the one billed when the payer changed it (SVC01 / SVC06):
#: complex extensions with a ``code`` Coding and one ``modifier`` Coding per modifier
PAID_PROCEDURE_EXTENSION = "https://therapy-hub.example/fhir/StructureDefinition/adjudicated-procedure"
BILLED_PROCEDURE_EXTENSION = "https://therapy-hub.example/fhir/StructureDefinition/billed-procedure"


def _procedure_extension(line: ServicePayment) -> list[dict[str, Any]]:
    out = [_procedure(PAID_PROCEDURE_EXTENSION, line.procedure)]
    if line.original_procedure is not None:
        out.append(_procedure(BILLED_PROCEDURE_EXTENSION, line.original_procedure))
    return out


def _procedure(url: str, procedure: Procedure) -> dict[str, Any]:
    system = _PLAIN_QUALIFIERS.get(procedure.qualifier, f"https://x12.org/codes/product-service-id/{procedure.qualifier}")
    if procedure.qualifier == "HC" and procedure.code[:1].isalpha():
        system = HCPCS_SYSTEM  # HCPCS level II codes (G0283...) travel under HC as well
    code: dict[str, Any] = {"system": system, "code": procedure.code}
    if procedure.description:
        code["display"] = procedure.description
    parts = [{"url": "code", "valueCoding": code}]
    parts.extend({"url": "modifier", "valueCoding": {"system": MODIFIER_SYSTEM, "code": modifier}}
                 for modifier in procedure.modifiers)
    return {"url": url, "extension": parts}
