"""The plan of care as the hub stores it, and the reads the rest of the plan workflow builds on:
the plan's identifier and extensions, the codes of its obligations, the plans of a referral, and
what its certification page shows (patient, payer, referring physician, clinic, therapist)."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

from hub.errors import NotFound
from hub.referrals.service import PLAN_SYSTEM, ReferralService
from mappings.plan_of_care.pdf import ClinicBlock
from mappings.referral.certification import OBLIGATION_CODE_SYSTEM

REVISION_URL = "https://therapy-hub.example/StructureDefinition/plan-revision"
CERTIFIED_URL = "https://therapy-hub.example/StructureDefinition/plan-certified"

OBLIGATION_KINDS = frozenset({"certification", "recertification", "progress-report"})
#: final statuses of an obligation Task: it never leaves them
CLOSED_OBLIGATION = frozenset({"completed", "cancelled", "failed", "entered-in-error"})


def obligation_code(task: dict[str, Any]) -> str | None:
    for coding in (task.get("code") or {}).get("coding", []):
        if coding.get("system") == OBLIGATION_CODE_SYSTEM:
            return str(coding.get("code"))
    return None


def plan_extension(resource: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in resource.get("extension") or [] if e.get("url") == url), None)


def plan_return_code(care_plan_id: str, revision: int) -> str:
    """The return code of a plan revision's certification page (its DocumentReference identifier)."""
    return "POC-" + hashlib.sha256(f"{care_plan_id}|{revision}".encode()).hexdigest()[:10].upper()


class PlanRecords(ReferralService):
    def __init__(self, fhir: Any, *, payer_rules: dict[str, dict[str, Any]] | None = None,
                 now: datetime | None = None, clinics: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(fhir, now=now)
        self.payer_rules = payer_rules or {}
        #: tenant -> the clinic's details from the settings (HUB_CLINICS), written onto its Organization
        self.clinics = clinics or {}

    def _plans_for(self, sr_ref: str) -> list[dict[str, Any]]:
        """The plans of care of a referral: a plan's identifier is its referral Task's id."""
        plans = [
            plan
            for task in self._search("Task", [("focus", sr_ref), ("code", "fulfill")])
            for plan in self._search("CarePlan", [("identifier", f"{PLAN_SYSTEM}|{task['id']}")])
        ]
        return [p for p in plans if any(i.get("reference") == sr_ref for i in p.get("supportingInfo") or [])]

    def _referrer_name(self, sr: dict[str, Any]) -> str:
        role_ref = (sr.get("requester") or {}).get("reference")
        if not role_ref:
            return "Referring physician"
        role = self._read(*role_ref.split("/"))
        practitioner_ref = (role.get("practitioner") or {}).get("reference")
        if practitioner_ref:
            return _person_name(self._read(*practitioner_ref.split("/")))
        return "Referring physician"

    def _referrer_npi(self, sr: dict[str, Any]) -> str | None:
        role_ref = (sr.get("requester") or {}).get("reference")
        if not role_ref:
            return None
        role = self._read(*role_ref.split("/"))
        return next((i["value"] for i in role.get("identifier") or []
                     if i.get("system") == "http://hl7.org/fhir/sid/us-npi"), None)

    def _organization_name(self, reference: str) -> str:
        try:
            return str(self._read(*reference.split("/")).get("name") or "Clinic")
        except NotFound:
            return "Clinic"

    # ------------------------------------------------------------ the document's inputs

    def _apply_clinic_settings(self, organization_ref: str) -> None:
        """Write the clinic's configured name, address and telecom (phone, fax, Direct address) onto
        its Organization, which the page and every partner read; only what differs is written."""
        config = self.clinics.get(self.fhir.tenant)
        if not config or not organization_ref.startswith("Organization/"):
            return
        try:
            organization = self._read(*organization_ref.split("/"))
        except NotFound:
            return
        updated = {**organization, **_organization_details(config)}
        if updated != organization:
            self.fhir.update("Organization", organization["id"], updated)

    def _clinic_block(self, organization_ref: str) -> Any:
        try:
            organization = self._read(*organization_ref.split("/"))
        except NotFound:
            return ClinicBlock("Clinic")
        address = (organization.get("address") or [{}])[0]
        city = " ".join(x for x in (address.get("city"), address.get("state"), address.get("postalCode")) if x)
        lines = tuple(x for x in [*address.get("line", []), city] if x)
        telecom = {t.get("system"): t.get("value") for t in reversed(organization.get("telecom") or [])}
        return ClinicBlock(str(organization.get("name") or "Clinic"), lines, telecom.get("phone"),
                           telecom.get("fax"), telecom.get("email"))

    def _person_of_role(self, role_ref: str | None) -> tuple[str | None, str | None]:
        """(the name, the NPI) of a PractitionerRole's practitioner; (None, None) when unknown."""
        if not role_ref or not role_ref.startswith("PractitionerRole/"):
            return None, None
        try:
            role = self._read(*role_ref.split("/"))
        except NotFound:
            return None, None
        npi = _npi_of(role)
        practitioner_ref = (role.get("practitioner") or {}).get("reference")
        if not practitioner_ref:
            return None, npi
        try:
            practitioner = self._read(*practitioner_ref.split("/"))
        except NotFound:
            return None, npi
        name = _person_name(practitioner)
        credentials = ", ".join(q["code"]["text"] for q in practitioner.get("qualification") or []
                                if (q.get("code") or {}).get("text"))
        return (f"{name}, {credentials}" if credentials else name), npi or _npi_of(practitioner)

    def _document_inputs(self, sr: dict[str, Any], organization_ref: str, author_ref: str | None, *,
                         therapist_name: str | None = None) -> dict[str, Any]:
        """What the certification page shows besides the plan: patient (name, birth date, MRN), payer,
        referring physician, clinic, treating therapist."""
        patient = self._read(*sr["subject"]["reference"].split("/"))
        name, npi = self._person_of_role(author_ref)
        return {
            "patient_name": _person_name(patient),
            "patient_birth_date": (date.fromisoformat(patient["birthDate"][:10])
                                   if len(patient.get("birthDate", "")) >= 10 else None),
            "patient_mrn": _mrn_of(patient),
            "payer": self._payer_of(sr),
            "referring_physician": self._referrer_name(sr),
            "referring_npi": self._referrer_npi(sr),
            "clinic": self._clinic_block(organization_ref),
            "therapist_name": name or therapist_name,
            "therapist_npi": npi,
        }

    def _payer_of(self, sr: dict[str, Any]) -> str | None:
        for insurance in sr.get("insurance") or []:
            try:
                coverage = self._read(*insurance["reference"].split("/"))
            except (NotFound, KeyError, TypeError):
                continue
            payor = (coverage.get("payor") or [{}])[0]
            payer = payor.get("display") or (payor.get("identifier") or {}).get("value")
            member = coverage.get("subscriberId")
            if payer:
                return f"{payer}, member {member}" if member else str(payer)
        return None

    def _read_reference(self, reference: Any, resource_type: str) -> dict[str, Any] | None:
        target = reference.get("reference") if isinstance(reference, dict) else None
        parts = target.split("/_history/")[0].split("/")[-2:] if isinstance(target, str) else []
        if len(parts) != 2 or parts[0] != resource_type:
            return None
        try:
            return self._read(resource_type, parts[1])
        except NotFound:
            return None

    def _plan_as_bundle(self, care_plan: dict[str, Any]) -> dict[str, Any]:
        """The stored CarePlan with its Goals, their baselines and its ServiceRequests, as a collection
        Bundle that :func:`mappings.plan_of_care.fhir.plan_summary` reads."""
        resources = [care_plan]
        for goal_ref in care_plan.get("goal") or []:
            goal = self._read_reference(goal_ref, "Goal")
            if goal is None:
                continue
            resources.append(goal)
            for address in goal.get("addresses") or []:
                observation = self._read_reference(address, "Observation")
                if observation is not None:
                    resources.append(observation)
        for activity in care_plan.get("activity") or []:
            request = self._read_reference(activity.get("reference"), "ServiceRequest")
            if request is not None:
                resources.append(request)
        return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _npi_of(resource: dict[str, Any]) -> str | None:
    return next((i["value"] for i in resource.get("identifier") or []
                 if i.get("system") == "http://hl7.org/fhir/sid/us-npi" and i.get("value")), None)


def _mrn_of(patient: dict[str, Any]) -> str | None:
    """The medical record number: the identifier of type MR, else the first one."""
    identifiers = [i for i in patient.get("identifier") or [] if i.get("value")]
    typed = next((i for i in identifiers
                  if any(c.get("code") == "MR" for c in (i.get("type") or {}).get("coding", []))), None)
    chosen = typed or (identifiers[0] if identifiers else None)
    return str(chosen["value"]) if chosen else None


def _organization_details(config: dict[str, Any]) -> dict[str, Any]:
    """Organization elements from a clinic's settings (name, line, city, state, postal_code, phone, fax,
    direct)."""
    out: dict[str, Any] = {}
    if config.get("name"):
        out["name"] = config["name"]
    address = {k: v for k, v in (("line", list(config.get("line") or [])), ("city", config.get("city")),
                                 ("state", config.get("state")), ("postalCode", config.get("postal_code"))) if v}
    if address:
        out["address"] = [{"use": "work", **address}]
    telecom = [{"system": system, "value": config[key], "use": "work"}
               for system, key in (("phone", "phone"), ("fax", "fax"), ("email", "direct")) if config.get(key)]
    if telecom:
        out["telecom"] = telecom
    return out


def _person_name(resource: dict[str, Any]) -> str:
    name = (resource.get("name") or [{}])[0]
    return " ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")]).strip() or "Unknown"
