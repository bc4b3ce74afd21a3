"""Referral service: the closed loop on top of the FHIR store.

Every step is a FHIR write through :class:`hub.fhir.service.FhirService`, so versions, history,
search and routing (events to the referrer's system) come for free. Translation lives in
``mappings.referral`` and ``mappings.plan_of_care``; this module only orchestrates.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from hub.errors import Conflict, MethodNotAllowed, NotFound
from hub.fhir.events import Change
from hub.fhir.service import FhirService
from hub.kit import parse_reference
from hub.referrals.deliveries import DOCUMENT_OF, deliveries_of
from hub.security.principal import Forbidden
from hub.store import repository as repo
from mappings.fhir import jsonio
from mappings.referral.certification import OBLIGATION_CODE_SYSTEM
from mappings.referral.intake import (
    NPI_SYSTEM,
    ReferralIn,
    build_referral_bundle,
    deterministic_id,
    referral_category,
)
from mappings.referral.task_state import (
    IllegalTransition,
    MissingReason,
    apply_transition,
    check_transition,
    communication_for_change,
    referral_task,
    with_business_status,
)
from mappings.referral.task_state import held_from_of as _held_from

TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
CLINIC_SYSTEM = "https://therapy-hub.example/sid/tenant"
#: a plan of care's identifier: its referral Task's id
PLAN_SYSTEM = "https://therapy-hub.example/sid/plan-of-care"


def clinic_id(tenant: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://therapy-hub.example/tenant/{tenant}"))


def _ref_id(reference: dict[str, Any] | None) -> tuple[str, str] | None:
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    return parse_reference(reference["reference"])


class ReferralService:
    """One per transaction; ``fhir`` is the FHIR service of the same session."""

    #: matches read per search request (the store's largest page)
    search_page = 500

    def __init__(self, fhir: FhirService, *, now: datetime | None = None) -> None:
        self.fhir = fhir
        self.now = now

    def _now(self) -> datetime:
        return self.now or self.fhir.clock()

    # ------------------------------------------------------------ helpers

    def _read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        stored = self.fhir.read(resource_type, resource_id)
        return jsonio.loads(stored.content or "{}")

    def _search(self, resource_type: str, items: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Every match, page after page (a clinic may have more active plans than one page holds)."""
        found: list[dict[str, Any]] = []
        page = self.search_page
        while True:
            bundle = self.fhir.search(
                resource_type, items + [("_count", str(page)), ("_offset", str(len(found)))], strict=True
            )
            matches = [jsonio.loads(jsonio.dumps(e["resource"])) for e in bundle.get("entry", [])
                       if e.get("search", {}).get("mode") == "match"]
            found.extend(matches)
            if not any(link.get("relation") == "next" for link in bundle.get("link", [])) or not matches:
                return found

    def _may_search(self, *resource_types: str) -> bool:
        """Whether the caller's policy lets it search and read these types (the hub itself always may)."""
        policy = self.fhir.policy
        if policy is None:
            return True
        try:
            for resource_type in resource_types:
                policy.check(resource_type, "s")
                policy.check(resource_type, "r")
        except Forbidden:
            return False
        return True

    def ensure_clinic(self) -> str:
        """The tenant's own Organization (the clinic that owns incoming referrals; the hub writes it)."""
        org_id = clinic_id(self.fhir.tenant)
        if self._existing("Organization", org_id) is None:
            with self.fhir.internal():
                self.fhir.update("Organization", org_id, {
                    "resourceType": "Organization", "id": org_id, "active": True,
                    "identifier": [{"system": CLINIC_SYSTEM, "value": self.fhir.tenant}],
                    "name": f"Clinic {self.fhir.tenant}",
                })
        return f"Organization/{org_id}"

    # ------------------------------------------------------------ intake

    def intake(self, referral: ReferralIn, *, as_referrer: str | None = None) -> dict[str, Any]:
        """Store a referral sent to POST /referrals; the same referral identifier (of the same
        requester) updates it.

        ``as_referrer``: the caller is this referring physician, who may only send in their own name.

        The caller's access policy (``fhir.policy``; None: the hub itself) decides what the referral may
        change, as a FHIR PUT of each resource would, and nothing outside it is changed or revealed:

        - the referral number of another requester's referral is not taken over: the sender's referral
          (ServiceRequest, Condition, DocumentReferences, Task) gets ids of its own, and the answer is
          the one a number never used before gets;
        - an existing Patient (matched by MRN), Coverage, Practitioner or PractitionerRole that the
          sender may not update is linked as it is, not overwritten. A patient outside a referring
          physician's compartment is linked only when the family name and birth date sent match it
          (else the sender's referral gets a patient record of its own, for the clinic to reconcile),
          and a coverage of another patient is never linked;
        - the parts of the sender's own referral (Condition, DocumentReferences) follow the referral.
        """
        clinic_ref = self.ensure_clinic()
        npi = referral.referrer.npi
        requester = f"PractitionerRole/{deterministic_id('PractitionerRole', NPI_SYSTEM, npi)}"
        if as_referrer is not None and requester != as_referrer:
            raise Forbidden("A referring physician can only send referrals in their own name (NPI)")
        scopes = self.intake_scopes(referral, clinic_ref=clinic_ref)
        bundle = build_referral_bundle(referral, clinic_ref=clinic_ref, now=self._now(), **scopes)
        bundle["entry"] = [e for e in bundle["entry"] if self.intake_writes(e["resource"])]
        sr_id = _first(bundle, "ServiceRequest")["id"]
        with self.fhir.internal():
            self.fhir.process_bundle(bundle, return_preference="minimal")
            return self.view(self.task_for(sr_id))

    def intake_scopes(self, referral: ReferralIn, *, clinic_ref: str) -> dict[str, str]:
        """The scopes (:func:`mappings.referral.intake.build_referral_bundle`) that keep ``referral``
        off the records the sender (``fhir.policy``) may not change: see :meth:`intake`. The HL7 v2
        intake applies the same rules to what it translates."""
        npi = referral.referrer.npi
        requester = f"PractitionerRole/{deterministic_id('PractitionerRole', NPI_SYSTEM, npi)}"
        scopes: dict[str, str] = {}

        def build() -> dict[str, Any]:
            return build_referral_bundle(referral, clinic_ref=clinic_ref, now=self._now(), **scopes)

        number = referral.identifier
        plain = self._existing("ServiceRequest", _first(build(), "ServiceRequest")["id"])
        if (self._existing("ServiceRequest", deterministic_id("ServiceRequest", number.system, number.value, npi))
                or (plain is not None and (plain.get("requester") or {}).get("reference") != requester)):
            scopes["referral_scope"] = npi
        patient = _first(build(), "Patient")
        known = self._existing("Patient", patient["id"])
        if (known is not None and not self._may_update("Patient", known)
                and not self._visible("Patient", known) and not _same_person(known, patient)):
            scopes["patient_scope"] = npi
        coverage = _first(build(), "Coverage")
        known = self._existing("Coverage", coverage["id"]) if coverage else None
        if known is not None and known.get("beneficiary") != coverage.get("beneficiary"):
            scopes["coverage_scope"] = coverage["beneficiary"]["reference"]
        return scopes

    def _existing(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The stored content of a resource, whoever may see it (for a deleted one: its last content)."""
        row = repo.get_resource(self.fhir.session, tenant=self.fhir.tenant, resource_type=resource_type,
                                resource_id=resource_id)
        if row is not None and row.deleted:
            row = repo.get_version(self.fhir.session, tenant=self.fhir.tenant, resource_type=resource_type,
                                   resource_id=resource_id, version_id=row.version_id - 1)
        return jsonio.loads(row.content) if row is not None and row.content else None

    def _visible(self, resource_type: str, resource: dict[str, Any]) -> bool:
        policy = self.fhir.policy
        return policy is None or policy.visible(resource_type, resource)

    def _may_update(self, resource_type: str, resource: dict[str, Any]) -> bool:
        """Whether the caller could PUT ``resource`` (stored) over FHIR."""
        policy = self.fhir.policy
        if policy is None:
            return True
        try:
            policy.check(resource_type, "u")
        except (Forbidden, MethodNotAllowed):
            return False
        return policy.visible(resource_type, resource)

    def intake_writes(self, resource: dict[str, Any]) -> bool:
        """Whether intake writes ``resource``: always when new; when it exists, only what the sender
        may change (else the existing one is linked as it is)."""
        resource_type = resource["resourceType"]
        existing = self._existing(resource_type, resource["id"])
        if existing is None:
            return True
        if resource_type == "ServiceRequest":  # the sender's own referral (see intake): sent again
            if self.fhir.policy is not None:
                self.fhir.policy.check("ServiceRequest", "u")
            return True
        if resource_type in ("Condition", "DocumentReference"):  # parts of the sender's own referral
            policy = self.fhir.policy
            return self._visible(resource_type, existing) if policy is not None and policy.restricted \
                else self._may_update(resource_type, existing)
        return self._may_update(resource_type, existing)

    def task_for(self, service_request_id: str) -> dict[str, Any]:
        tasks = self._search("Task", [("focus", f"ServiceRequest/{service_request_id}"), ("code", "fulfill")])
        if not tasks:
            raise NotFound(f"No referral Task for ServiceRequest/{service_request_id}")
        return tasks[0]

    # ------------------------------------------------------------ workflow rules (after the write, same transaction)

    def on_change(self, change: Change) -> None:
        if change.resource is None:
            return
        if change.resource_type == "ServiceRequest" and change.interaction == "create":
            self._open_task(change)
        elif change.resource_type == "Task" and change.interaction == "update" and change.previous:
            self._check_task_transition(change)

    def _open_task(self, change: Change) -> None:
        resource = change.resource or {}
        if resource.get("intent") != "order" or referral_category(resource) is None:
            return
        existing = self._search("Task", [("focus", f"ServiceRequest/{change.resource_id}"), ("code", "fulfill")])
        if existing:
            return
        performer = (resource.get("performer") or [{}])[0]
        owner = performer.get("reference") if isinstance(performer, dict) else None
        identifier = (resource.get("identifier") or [{"system": "urn:ietf:rfc:3986",
                                                      "value": f"urn:uuid:{change.resource_id}"}])[0]
        task = referral_task(
            f"ServiceRequest/{change.resource_id}",
            (resource.get("subject") or {}).get("reference"),
            (resource.get("requester") or {}).get("reference"),
            owner or self.ensure_clinic(),
            identifier=identifier,
            now=self._now(),
        )
        taken = self._existing("Task", task["id"])
        if taken is not None and (taken.get("focus") or {}).get("reference") != task["focus"]["reference"]:
            # the same referral number on another ServiceRequest (another requester's): a Task of its own
            task["id"] = deterministic_id("Task", task["focus"]["reference"], str(identifier.get("value")))
        self.fhir.update("Task", task["id"], task)

    def _check_task_transition(self, change: Change) -> None:
        before = jsonio.loads(change.previous or "{}")
        after = change.resource or {}
        if not is_referral_task(after) or before.get("status") == after.get("status"):
            return
        reason = after.get("statusReason")
        try:
            check_transition(before.get("status"), after.get("status"), reason=reason,
                             held_from=_held_from(before))
        except (IllegalTransition, MissingReason) as exc:
            raise Conflict(str(exc), expression="Task.status") from None
        why = (reason or {}).get("text") if isinstance(reason, dict) else None
        self._tell_referrer(after, f"Referral status: {after.get('status')}" + (f" ({why})" if why else ""))

    def _tell_referrer(self, task: dict[str, Any], text: str) -> None:
        requester = (task.get("requester") or {}).get("reference")
        owner = (task.get("owner") or {}).get("reference")
        if not requester or not owner:
            return
        communication = communication_for_change(task, sender_ref=owner, recipient_ref=requester,
                                                 now=self._now(), text=text)
        self.fhir.create("Communication", communication, resource_id=communication.get("id"))

    # ------------------------------------------------------------ transitions

    def transition(self, task_id: str, status: str, *, reason: str | None = None,
                   business_status: str | None = None) -> dict[str, Any]:
        task = self._read("Task", task_id)
        if not is_referral_task(task):
            raise NotFound(f"Task/{task_id} is not a referral")
        try:
            updated = apply_transition(task, status, now=self._now(), reason=reason,
                                       business_status=business_status)
        except (IllegalTransition, MissingReason) as exc:
            raise Conflict(str(exc), expression="Task.status") from None
        self.fhir.update("Task", task_id, updated)
        return self.view(self._read("Task", task_id))

    def set_business_status(self, task_id: str, code: Any) -> dict[str, Any]:
        """The same status, a new BSeR business status (e.g. in progress: scheduled -> unattended)."""
        task = self._read("Task", task_id)
        if not is_referral_task(task):
            raise NotFound(f"Task/{task_id} is not a referral")
        try:
            updated = with_business_status(task, code, now=self._now())
        except ValueError as exc:
            raise Conflict(str(exc), expression="Task.businessStatus") from None
        self.fhir.update("Task", task_id, updated)
        return self.view(self._read("Task", task_id))

    # ------------------------------------------------------------ views

    def view(self, task: dict[str, Any]) -> dict[str, Any]:
        focus = _ref_id(task.get("focus"))
        business = (task.get("businessStatus") or {}).get("coding", [{}])
        return {
            "task": f"Task/{task['id']}",
            "service_request": f"{focus[0]}/{focus[1]}" if focus else None,
            "patient": (task.get("for") or {}).get("reference"),
            "requester": (task.get("requester") or {}).get("reference"),
            "owner": (task.get("owner") or {}).get("reference"),
            "status": task.get("status"),
            "business_status": business[0].get("code") if business else None,
            "status_reason": (task.get("statusReason") or {}).get("text"),
            "last_modified": task.get("lastModified"),
            "version": (task.get("meta") or {}).get("versionId"),
        }

    def list_referrals(self, *, requester: str | None = None, owner: str | None = None,
                       status: str | None = None) -> list[dict[str, Any]]:
        items = [("code", "fulfill"), ("_sort", "-_lastUpdated")]
        if requester:
            items.append(("requester", requester))
        if owner:
            items.append(("owner", owner))
        if status:
            items.append(("status", status))
        views = [self.view(t) for t in self._search("Task", items)]
        documents = self.documents_of(views)
        for view in views:
            view["documents"] = documents.get(view["task"], [])
        return views

    def documents_of(self, referrals: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Referral Task reference -> the documents sent about it (plans of care, progress reports:
        the obligation Tasks of its CarePlans), each with the channels and statuses of its deliveries."""
        if not self._may_search("CarePlan", "Task"):
            return {}  # the caller's scopes do not reach the plans: the referrals are shown without them
        plan_of: dict[str, str] = {}  # CarePlan/id -> Task/id of the referral
        by_task = {view["task"].split("/", 1)[1]: view for view in referrals}
        task_ids = sorted(by_task)
        for start in range(0, len(task_ids), PLAN_SEARCH_CHUNK):
            # one search for a chunk of referrals (a token search ORs comma-separated values)
            chunk = ",".join(f"{PLAN_SYSTEM}|{task_id}" for task_id in task_ids[start:start + PLAN_SEARCH_CHUNK])
            for plan in self._search("CarePlan", [("identifier", chunk)]):
                for identifier in plan.get("identifier") or []:
                    if identifier.get("system") != PLAN_SYSTEM:
                        continue
                    view = by_task.get(str(identifier.get("value")))
                    if view is not None and any(i.get("reference") == view["service_request"]
                                                for i in plan.get("supportingInfo") or []):
                        plan_of[f"CarePlan/{plan['id']}"] = view["task"]
        if not plan_of:
            return {}
        tasks = [t for t in self._search("Task", [("code", f"{OBLIGATION_CODE_SYSTEM}|"), ("_sort", "_lastUpdated")])
                 if (t.get("focus") or {}).get("reference") in plan_of]
        sent = deliveries_of(self.fhir.session, tenant=self.fhir.tenant, tasks=tasks)
        found: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            kind = next((c.get("code") for c in (task.get("code") or {}).get("coding", [])
                         if c.get("system") == OBLIGATION_CODE_SYSTEM), None)
            plan_ref = task["focus"]["reference"]
            found.setdefault(plan_of[plan_ref], []).append({
                "document": DOCUMENT_OF.get(str(kind), str(kind)), "task": f"Task/{task['id']}", "care_plan": plan_ref,
                "status": task.get("status"), "deliveries": sent.get(str(task["id"]), [])})
        return found


#: referrals whose plans one CarePlan search asks for (GET /referrals lists a page of referrals)
PLAN_SEARCH_CHUNK = 50


def _first(bundle: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return next((e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type), {})


def _same_person(stored: dict[str, Any], sent: dict[str, Any]) -> bool:
    """The family name (case aside) and the birth date sent are the stored patient's."""
    def key(patient: dict[str, Any]) -> tuple[str, str]:
        name = (patient.get("name") or [{}])[0]
        return str(name.get("family") or "").casefold(), str(patient.get("birthDate") or "")

    return key(stored) == key(sent)


def is_referral_task(task: dict[str, Any]) -> bool:
    return any(c.get("code") == "fulfill" for c in (task.get("code") or {}).get("coding", []))

