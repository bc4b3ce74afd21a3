"""Access policy of one request on the FHIR store: SMART scopes for everyone, and for referring
physicians a compartment: the referrals they sent, and what concerns the patients of those
referrals. Outside the compartment a resource does not exist for them (404, never 403)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from hub.errors import MethodNotAllowed
from hub.fhir.searchparams import extract, params_for
from hub.kit import parse_reference
from hub.security.principal import Forbidden, Principal
from hub.store.repository import patients_of_requester

DIRECTORY_TYPES = frozenset({"Organization", "Practitioner", "PractitionerRole", "Location"})
READ_ONLY_TYPES = frozenset({"AuditEvent"})


class AccessPolicy:
    """The policy of ``principal`` on the FHIR store of ``session`` and ``tenant`` (which the store is
    built with: :class:`hub.fhir.policy.StorePolicy`); the compartment is read from that session."""

    def __init__(self, principal: Principal, *, session: Session, tenant: str) -> None:
        self.principal = principal
        self.session = session
        self.tenant = tenant
        self._patients: set[str] | None = None

    # ------------------------------------------------------------ scopes

    def check(self, resource_type: str, permission: str) -> None:
        if resource_type in READ_ONLY_TYPES:
            if permission in "cud":
                raise MethodNotAllowed(f"{resource_type} is written by the hub only")
            if self.principal.role != "admin":
                raise Forbidden(f"Only administrators may read {resource_type}")
        self.principal.require(resource_type, permission)
        if self.principal.role == "referrer" and permission in "ud" and resource_type != "ServiceRequest":
            raise Forbidden("Referring physicians change referrals through /referrals and sign through /certifications")

    def may_read(self, resource_type: str) -> bool:
        """Whether ``check(resource_type, "r")`` passes (for what comes along: ``_include``)."""
        try:
            self.check(resource_type, "r")
        except (Forbidden, MethodNotAllowed):
            return False
        return True

    def check_write(self, resource_type: str, resource: dict[str, Any]) -> None:
        """What a referring physician writes must stay in their compartment (in their own name)."""
        if self.restricted and not self.visible(resource_type, resource):
            raise Forbidden("A referring physician writes only their own referrals "
                            "(requester: their PractitionerRole) and what concerns their patients")

    def forbidden(self, what: str) -> Forbidden:
        return Forbidden(f"The role {self.principal.role} may not read {what}")

    # ------------------------------------------------------------ referrer compartment

    @property
    def restricted(self) -> bool:
        return self.principal.role == "referrer"

    def patients(self) -> set[str]:
        if self._patients is None:
            requester = parse_reference(self.principal.fhir_user or "")
            self._patients = (
                patients_of_requester(self.session, tenant=self.tenant, requester=requester)
                if requester else set()
            )
        return self._patients

    def search_items(self, resource_type: str, items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        items = list(items)
        if not self.restricted or resource_type in DIRECTORY_TYPES:
            return items
        if resource_type == "ServiceRequest":
            return items + [("requester", self.principal.fhir_user or "-")]
        patients = sorted(self.patients()) or ["Patient/-"]
        if resource_type == "Patient":
            return items + [("_id", ",".join(p.split("/", 1)[1] for p in patients))]
        if "patient" in params_for(resource_type):
            return items + [("patient", ",".join(patients))]
        raise Forbidden(f"Referring physicians cannot search {resource_type}")

    def visible(self, resource_type: str, resource: dict[str, Any]) -> bool:
        if not self.restricted or resource_type in DIRECTORY_TYPES:
            return True
        if resource_type == "ServiceRequest":
            return (resource.get("requester") or {}).get("reference") == self.principal.fhir_user
        patients = self.patients()
        if resource_type == "Patient":
            return f"Patient/{resource.get('id')}" in patients
        refs = {f"{t}/{i}" for p, t, i in extract(resource_type, resource).references if p == "patient"}
        return bool(refs & patients)
