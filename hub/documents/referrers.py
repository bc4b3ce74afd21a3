"""Received documents from known referrers: a document the intake matches to no certification, sent
from the fax number or Direct address (the DocumentReference's ``document-sender`` extension) of a
PractitionerRole the hub knows, becomes a draft referral (:func:`mappings.referral.draft.draft_referral`:
ServiceRequest ``draft`` + referral Task ``requested``) for staff to complete. From an unknown
sender, an address more than one PractitionerRole gives, or a referrer who has a certification to
sign (the document is then more likely that signed page, its return code unreadable), it stays in
triage.

The sender is looked up by the ``telecom`` search parameter of PractitionerRole, whose index holds
each fax number and Direct address in comparable form (numbers as digits with the country code,
addresses lowercased: :func:`mappings.fhir.contact.normal_contact`), so ``+1 (555) 010-2000`` finds
``15550102000`` without reading the directory; roles stored before that index existed need
``hub db reindex --type PractitionerRole``. Nothing here logs an address.
"""

from __future__ import annotations

from typing import Any

from hub.referrals.service import ReferralService
from mappings.documents import CHANNEL_SYSTEM, SENDER_URL
from mappings.fhir.contact import normal_contact
from mappings.referral.certification import OBLIGATION_CODE_SYSTEM
from mappings.referral.draft import draft_referral, same_contact

__all__ = ["SIGNED_OBLIGATIONS", "known_sender", "open_draft_referral", "sender_of"]

#: obligations a referrer answers with a signed page: while one is open, their unmatched document
#: stays in triage (it is more likely that page, unreadable, than a new referral)
SIGNED_OBLIGATIONS = ("certification", "recertification")


def sender_of(document: dict[str, Any]) -> dict[str, Any] | None:
    """The sender's ContactPoint written on a received DocumentReference, or None."""
    extension = next((e for e in document.get("extension") or [] if isinstance(e, dict) and e.get("url") == SENDER_URL),
                     None)
    contact = (extension or {}).get("valueContactPoint")
    return contact if isinstance(contact, dict) and contact.get("value") else None


def known_sender(service: ReferralService, document: dict[str, Any]) -> tuple[str | None, str]:
    """(PractitionerRole/id of the sender, "") when exactly one PractitionerRole has the sender's
    address; else (None, the reason the document stays in triage)."""
    sender = sender_of(document)
    if sender is None:
        return None, "no sender address"
    address = normal_contact(sender.get("system"), sender.get("value"))
    if address is None:
        return None, "unknown sender"
    # the telecom index holds each number in this comparable form too (hub.fhir.searchparams.contact_tokens)
    roles = [role for role in service._search("PractitionerRole", [("telecom", f"{sender.get('system')}|{address}")])
             if any(isinstance(t, dict) and same_contact(sender, t) for t in role.get("telecom") or [])]
    if not roles:
        return None, "unknown sender"
    if len(roles) > 1:
        return None, "the sender's address belongs to more than one referrer"
    role_ref = f"PractitionerRole/{roles[0]['id']}"
    waiting = [t for t in service._search("Task", [("owner", role_ref), ("status", "requested"),
                                                  ("code", f"{OBLIGATION_CODE_SYSTEM}|")])
               if any(c.get("code") in SIGNED_OBLIGATIONS for c in (t.get("code") or {}).get("coding", []))]
    if waiting:  # most likely a signed page whose return code could not be read: a person decides
        return None, "the sender has a certification to sign"
    return role_ref, ""


def open_draft_referral(service: ReferralService, document: dict[str, Any], requester_ref: str) -> str:
    """Write the draft referral of ``document`` (the same one again for the same document); the
    referral Task's id."""
    channel = next((i["system"].rsplit("/", 1)[1] for i in document.get("identifier") or []
                    if str(i.get("system", "")).startswith(f"{CHANNEL_SYSTEM}/")), None)
    clinic_ref = service.ensure_clinic()
    service_request, task = draft_referral(str(document["id"]), requester_ref=requester_ref, clinic_ref=clinic_ref,
                                           channel=channel, now=service._now())
    with service.fhir.internal():  # the hub opens it, whoever's document it is
        if service._existing("ServiceRequest", service_request["id"]) is None:
            service.fhir.update("ServiceRequest", service_request["id"], service_request)
        if service._existing("Task", task["id"]) is None:
            service.fhir.update("Task", task["id"], task)
    return str(task["id"])
