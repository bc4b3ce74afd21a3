"""The delivery Bundle of a certification Task, read once for the connectors that send a plan of care
for certification (fax, Direct). Pure.

The payload is the hub's ``collection`` Bundle of the ``references`` and ``documents`` contexts: the
Task first, then what it references (CarePlan, owner PractitionerRole, Patient, Organization ...) and
the DocumentReferences of the plan (the certification page, identified by its return code).
:func:`read_delivery` raises :class:`DeliveryProblem` only when the payload is no such Bundle; what
else a connector needs (an owner, a PDF) it checks itself, so each keeps its own wording.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from mappings.plan_of_care.pdf import RETURN_CODE_SYSTEM

__all__ = ["CertificationDelivery", "CertificationDocument", "DeliveryProblem", "Problem", "decode_attachment",
           "read_delivery"]

Resource = dict[str, Any]
Problem = Literal["not_json", "not_bundle", "no_task", "bad_base64"]


class DeliveryProblem(ValueError):
    """The payload cannot be read as a certification delivery; ``code`` says why (never PHI)."""

    def __init__(self, code: Problem) -> None:
        super().__init__(code)
        self.code: Problem = code


@dataclass(frozen=True)
class CertificationDocument:
    """The plan's current certification DocumentReference: its return code and inline PDF."""

    document_id: str
    return_code: str
    pdf: bytes = field(repr=False)


def local_key(reference: Any) -> str:
    """``Type/id`` of a Reference (a dict with ``reference``, relative or absolute), or ``""``."""
    text = reference.get("reference", "") if isinstance(reference, dict) else ""
    parts = str(text).rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else ""


def decode_attachment(attachment: Resource) -> bytes | None:
    """The inline ``data`` of an Attachment; None when there is none; ``bad_base64`` when invalid."""
    data = attachment.get("data")
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise DeliveryProblem("bad_base64") from None


def _attachments(document: Resource) -> Iterator[Resource]:
    content = document.get("content")
    for item in content if isinstance(content, list) else []:
        attachment = item.get("attachment") if isinstance(item, dict) else None
        if isinstance(attachment, dict):
            yield attachment


def content_type(attachment: Resource) -> str:
    return str(attachment.get("contentType") or "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class CertificationDelivery:
    task: Resource = field(repr=False)
    resources: tuple[Resource, ...] = field(repr=False)
    #: ``CarePlan/id`` of the Task's focus, or ``""`` when its focus is no CarePlan
    care_plan_key: str
    care_plan: Resource | None = field(repr=False)
    #: the Task's owner when it is a PractitionerRole in the Bundle
    owner_role: Resource | None = field(repr=False)
    practitioner: Resource | None = field(repr=False)
    organization: Resource | None = field(repr=False)
    patient: Resource | None = field(repr=False)
    #: the newest current certification DocumentReference of the plan with a return code and a PDF
    certification: CertificationDocument | None = field(repr=False)

    @property
    def task_id(self) -> str:
        return str(self.task.get("id"))

    @property
    def documents(self) -> tuple[Resource, ...]:
        return tuple(r for r in self.resources if r.get("resourceType") == "DocumentReference")

    def first_attachment(self, kinds: tuple[str, ...]) -> tuple[str, bytes] | None:
        """(DocumentReference id, data) of the first inline attachment of one of the content types
        ``kinds`` across the Bundle's DocumentReferences, or None; ``bad_base64`` when it is invalid."""
        for document in self.documents:
            for attachment in _attachments(document):
                data = decode_attachment(attachment) if content_type(attachment) in kinds else None
                if data is not None:
                    return str(document.get("id") or ""), data
        return None


def _certification(resources: tuple[Resource, ...], plan_key: str) -> CertificationDocument | None:
    if not plan_key:
        return None
    documents = [r for r in resources if r.get("resourceType") == "DocumentReference" and r.get("status") == "current"
                 and any(local_key(rel) == plan_key for rel in (r.get("context") or {}).get("related", []))]
    for document in sorted(documents, key=lambda d: str(d.get("date", "")), reverse=True):
        code = next((i.get("value") for i in document.get("identifier", [])
                     if isinstance(i, dict) and i.get("system") == RETURN_CODE_SYSTEM), None)
        attachment = ((document.get("content") or [{}])[0] or {}).get("attachment") or {}
        if code and attachment.get("contentType") == "application/pdf" and attachment.get("data"):
            try:
                pdf = decode_attachment(attachment)
            except DeliveryProblem:
                continue
            if pdf is not None:
                return CertificationDocument(document_id=str(document.get("id") or ""), return_code=str(code),
                                             pdf=pdf)
    return None


def read_delivery(payload: bytes) -> CertificationDelivery:
    """The certification delivery in ``payload``; :class:`DeliveryProblem` when it is no Bundle or its
    first entry is no Task."""
    try:
        bundle = json.loads(payload)
    except ValueError:
        raise DeliveryProblem("not_json") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise DeliveryProblem("not_bundle")
    entries = bundle.get("entry")
    resources = tuple(e["resource"] for e in (entries if isinstance(entries, list) else [])
                      if isinstance(e, dict) and isinstance(e.get("resource"), dict))
    if not resources or resources[0].get("resourceType") != "Task":
        raise DeliveryProblem("no_task")
    task = resources[0]
    by_key = {f"{r.get('resourceType')}/{r.get('id')}": r for r in resources[1:]}
    plan_key = local_key(task.get("focus"))
    plan_key = plan_key if plan_key.startswith("CarePlan/") else ""
    owner = by_key.get(local_key(task.get("owner")))
    role = owner if owner is not None and owner.get("resourceType") == "PractitionerRole" else None
    return CertificationDelivery(
        task=task, resources=resources, care_plan_key=plan_key, care_plan=by_key.get(plan_key),
        owner_role=role, practitioner=by_key.get(local_key(role.get("practitioner"))) if role else None,
        organization=by_key.get(local_key(role.get("organization"))) if role else None,
        patient=by_key.get(local_key(task.get("for"))), certification=_certification(resources, plan_key))
