"""A draft referral opened from a received document (a fax, a Direct message) whose sender is a known
referrer, and the comparison of contact points that says who the sender is. Pure.

The draft is a ``ServiceRequest`` (status ``draft``, intent ``order``, requester the referrer's
PractitionerRole, ``supportingInfo`` the received DocumentReference, the patient not known yet: a
display-only subject) and the referral ``Task`` (``requested``, owned by the clinic) that staff
complete. Ids are uuid5 over the received document's id: the same document opens the same draft.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mappings.fhir.contact import normal_contact
from mappings.fhir.ids import deterministic_id
from mappings.referral.task_state import fhir_datetime, referral_task

__all__ = ["DRAFT_SYSTEM", "draft_referral", "normal_contact", "same_contact"]

#: identifier system of a draft referral: the value is the id of the received DocumentReference
DRAFT_SYSTEM = "https://therapy-hub.example/sid/draft-referral"
UNKNOWN_PATIENT = "Patient not identified yet: see the received document"


def same_contact(sender: dict[str, Any], telecom: dict[str, Any]) -> bool:
    """Whether the ContactPoint ``telecom`` is the sender's address (same system, same value)."""
    if sender.get("system") != telecom.get("system"):
        return False
    mine = normal_contact(str(sender.get("system") or ""), str(sender.get("value") or ""))
    theirs = normal_contact(str(telecom.get("system") or ""), str(telecom.get("value") or ""))
    return mine is not None and mine == theirs


def draft_referral(document_id: str, *, requester_ref: str, clinic_ref: str, channel: str | None,
                   now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ServiceRequest, Task) of the draft referral opened from DocumentReference ``document_id``."""
    identifier = {"system": DRAFT_SYSTEM, "value": document_id}
    sr_id = deterministic_id("ServiceRequest", DRAFT_SYSTEM, document_id)
    how = {"fax": "by fax", "direct": "by Direct message"}.get(channel or "", "")
    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": sr_id,
        "identifier": [identifier],
        "status": "draft",
        "intent": "order",
        "subject": {"display": UNKNOWN_PATIENT},
        "authoredOn": fhir_datetime(now),
        "requester": {"reference": requester_ref},
        "performer": [{"reference": clinic_ref}],
        "supportingInfo": [{"reference": f"DocumentReference/{document_id}"}],
        "note": [{"text": f"Draft referral from a document received{' ' + how if how else ''} from the referrer; "
                          "complete the patient, the discipline and the reason from it."}],
    }
    task = referral_task(f"ServiceRequest/{sr_id}", None, requester_ref, clinic_ref, identifier=identifier, now=now)
    task["description"] = "Complete the draft referral from the received document"
    task["input"] = [{"type": {"text": "received document"},
                      "valueReference": {"reference": f"DocumentReference/{document_id}"}}]
    return service_request, task
