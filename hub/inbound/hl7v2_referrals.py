"""Translated referrals of the MLLP intake (:mod:`hub.inbound.hl7v2`): REF^I12 / OMG^O19 / ADT
translated by :mod:`mappings.hl7v2` and written as one FHIR transaction, under the id and write rules
of the /referrals intake (:meth:`hub.referrals.service.ReferralService.intake_scopes` and
:meth:`~hub.referrals.service.ReferralService.intake_writes`), decided as the referring physician
the message's PRD names would be, and with its Patients resolved by identifier to the records
already stored.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from hub.errors import HubError
from hub.fhir.service import FhirService
from hub.inbound.hl7v2_acks import store_refused
from hub.referrals.service import ReferralService
from hub.security.policy import AccessPolicy
from hub.security.principal import Principal
from mappings.fhir.references import replace_references
from mappings.hl7v2 import Header, V2Message
from mappings.hl7v2.inbound import to_fhir
from mappings.hl7v2.referral_messages import referrals_of
from mappings.referral.intake import NPI_SYSTEM, build_referral_bundle, deterministic_id

__all__ = ["write_translation"]


def write_translation(
    fhir: FhirService, message: V2Message, header: Header, now: datetime
) -> tuple[str, dict[str, Any]]:
    """REF / OMG / ADT: translate to a transaction Bundle and write it; (the main resource, the Bundle)."""
    with fhir.internal():  # the hub's own clinic record, not the sender's write (no inbound policy)
        clinic_ref = ReferralService(fhir, now=now).ensure_clinic()
    translation = to_fhir(message, header, clinic_ref=clinic_ref, now=now)
    referral = header.message_code in ("REF", "OMG")
    kept = _scope_referrals(fhir, message, header, translation.bundle, clinic_ref=clinic_ref, now=now) \
        if referral else set()
    _resolve_patients(fhir, translation.bundle, skip=kept)
    if referral:
        _keep_writable(fhir, translation.bundle, now=now)
    try:
        fhir.process_bundle(translation.bundle, return_preference="minimal")
    except HubError as exc:
        raise store_refused(exc) from None
    return translation.primary[0], translation.bundle


def _scope_referrals(fhir: FhirService, message: V2Message, header: Header, bundle: dict[str, Any], *,
                     clinic_ref: str, now: datetime) -> set[str]:
    """The id rules of the /referrals intake (:meth:`ReferralService.intake_scopes`), applied to a
    translated REF^I12 / OMG^O19: another requester's referral number gets ids of the sender's own
    (ServiceRequest, Conditions, DocumentReferences; the hub opens a Task of its own), a patient
    outside the requester's compartment with other demographics a record of its own, and another
    patient's coverage is not linked. Returns the Patients given ids of their own (not to be
    matched by identifier to another's record again)."""
    moved: dict[str, str] = {}
    kept: set[str] = set()
    for referral in referrals_of(message, header, now=now):
        model = referral.model
        requester = f"PractitionerRole/{deterministic_id('PractitionerRole', NPI_SYSTEM, model.referrer.npi)}"
        scopes = ReferralService(_as_referrer(fhir, requester), now=now).intake_scopes(model, clinic_ref=clinic_ref)
        if not scopes:
            continue
        plain = build_referral_bundle(model, clinic_ref=clinic_ref, now=now)["entry"]
        scoped = build_referral_bundle(model, clinic_ref=clinic_ref, now=now, **scopes)["entry"]
        for before, after in zip(plain, scoped, strict=True):
            old, new = before["resource"], after["resource"]
            if old["id"] != new["id"]:
                moved[f"{old['resourceType']}/{old['id']}"] = f"{new['resourceType']}/{new['id']}"
        if "referral_scope" in scopes:  # the diagnoses past the first (the HL7 mapping adds them)
            ref_key = f"{model.identifier.system}|{model.identifier.value}"
            scoped_key = f"{ref_key}|{scopes['referral_scope']}"
            for code, _display in referral.extra_reasons:
                moved[f"Condition/{deterministic_id('Condition', ref_key, code)}"] = (
                    f"Condition/{deterministic_id('Condition', scoped_key, code)}")
        if "patient_scope" in scopes:
            kept.add(moved.get(f"Patient/{referral.patient['id']}", ""))
    if moved:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            new_ref = moved.get(f"{resource['resourceType']}/{resource['id']}")
            if new_ref is not None:
                resource["id"] = new_ref.partition("/")[2]
                entry["request"]["url"] = new_ref
                entry["fullUrl"] = f"urn:uuid:{resource['id']}"
        bundle.update(replace_references(bundle, moved))
    return kept


def _keep_writable(fhir: FhirService, bundle: dict[str, Any], *, now: datetime) -> None:
    """The write rule of the /referrals intake (:meth:`ReferralService.intake_writes`): what exists
    and the referring provider may not change (Patient, Coverage, Practitioner, PractitionerRole) is
    linked as it is, not written; new records and the sender's own referral are written."""
    requester = next(((e["resource"].get("requester") or {}).get("reference") or "" for e in bundle["entry"]
                      if e["resource"]["resourceType"] == "ServiceRequest"), "")
    intake = ReferralService(_as_referrer(fhir, requester), now=now)
    bundle["entry"] = [e for e in bundle["entry"] if intake.intake_writes(e["resource"])]


def _as_referrer(fhir: FhirService, requester: str) -> FhirService:
    """The store as the /referrals intake sees it for the referring physician ``requester``: the sender
    of an HL7 v2 referral acts for the referring provider its PRD names, and may change no more than
    they could. Only the intake's decisions use it; the writes themselves stay with ``fhir``, under
    the channel's inbound policy."""
    inbound = fhir.policy
    return fhir.under(AccessPolicy(Principal.of(inbound.principal.client_id, fhir.tenant, "referrer",
                                                "system/*.cruds", requester or None),
                                   session=fhir.session, tenant=fhir.tenant))


def _resolve_patients(fhir: Any, bundle: dict[str, Any], *, skip: Collection[str] = ()) -> None:
    """Upsert by identifier: a Patient already stored under another id (created through the FHIR API)
    with the same first identifier is updated in place, and the Bundle's references follow it.
    ``skip``: Patients given ids of their own by the intake rules (not another's record)."""
    moved: dict[str, str] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "Patient" or not resource.get("identifier"):
            continue
        if f"Patient/{resource['id']}" in skip:
            continue
        first = resource["identifier"][0]
        token = f"{first['system']}|{first['value']}"
        found = fhir.search("Patient", [("identifier", token), ("_count", "2")], strict=True)
        matches = [e for e in found.get("entry", []) if e.get("search", {}).get("mode") == "match"]
        if len(matches) != 1:
            continue
        existing = matches[0]["fullUrl"].rsplit("/", 1)[-1]
        if existing != resource["id"]:
            moved[f"Patient/{resource['id']}"] = f"Patient/{existing}"
            resource["id"] = existing
            entry["request"]["url"] = f"Patient/{existing}"
    if moved:
        bundle.update(replace_references(bundle, moved))
