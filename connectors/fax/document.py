"""What a certification Task delivery holds for a fax: recipient, return code, plan PDF; and the PDF faxed.

The payload is the ``collection`` Bundle of the ``references`` and ``documents`` contexts: the Task
first, then what it references (CarePlan, owner PractitionerRole, Patient, Organization ...) and
the DocumentReferences of the plan (the certification page, identified by its return code), read by
:mod:`connectors.certification`.
The fax is one PDF: the cover sheet (:mod:`mappings.fax.cover`) followed by the plan's pages,
combined with pypdfium2 so the cover can state the total page count and any vendor takes it as
one file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pypdfium2 as pdfium

from connectors.base import PermanentError
from connectors.certification import DeliveryProblem, Problem, read_delivery
from connectors.fax.model import valid_fax_number
from mappings.fax.cover import CoverSheet, render_cover_sheet

__all__ = ["CertificationFax", "certification_fax", "combine_pdfs", "fax_number_of"]


@dataclass(frozen=True)
class CertificationFax:
    task_id: str
    to: str = field(repr=False)
    recipient_name: str | None = field(repr=False)
    return_code: str
    plan_pdf: bytes = field(repr=False)


_PROBLEMS: dict[Problem, str] = {
    "not_json": "fax: the payload is not JSON",
    "not_bundle": "fax: the payload is not a Bundle (the connector needs its context)",
    "no_task": "fax: only Task deliveries (certification of a plan of care) can be faxed",
    "bad_base64": "fax: a document to fax is not valid base64",
}


def _name(resource: dict[str, Any] | None) -> str | None:
    names = (resource or {}).get("name")
    if isinstance(names, list) and names and isinstance(names[0], dict):
        first = names[0]
        given = " ".join(g for g in first.get("given", []) if isinstance(g, str))
        return " ".join(p for p in (first.get("prefix", [""])[0] if first.get("prefix") else "", given,
                                    first.get("family", "")) if p).strip() or None
    return None


def _owner_fax(owner: dict[str, Any]) -> str | None:
    telecoms = owner.get("telecom")
    numbers = [t.get("value") for t in telecoms if isinstance(t, dict) and t.get("system") == "fax"] \
        if isinstance(telecoms, list) else []
    number = next((str(n).replace(" ", "").replace("-", "") for n in numbers if n), None)
    return number if number is not None and valid_fax_number(number) else None


def fax_number_of(payload: bytes) -> str | None:
    """The E.164 fax number of the owner PractitionerRole of the Task first in the Bundle ``payload``;
    None when it is no such Bundle or the owner has none (the delivery cannot be faxed)."""
    try:
        delivery = read_delivery(payload)
    except DeliveryProblem:
        return None
    return _owner_fax(delivery.owner_role) if delivery.owner_role is not None else None


def certification_fax(payload: bytes) -> CertificationFax:
    """The fax a certification Task asks for; :class:`PermanentError` when the delivery cannot be faxed."""
    try:
        delivery = read_delivery(payload)
    except DeliveryProblem as exc:
        raise PermanentError(_PROBLEMS[exc.code]) from None
    if not delivery.care_plan_key:
        raise PermanentError("fax: the Task has no CarePlan focus")
    if delivery.owner_role is None:
        raise PermanentError("fax: the Task's owner PractitionerRole is not known")
    number = _owner_fax(delivery.owner_role)
    if number is None:
        raise PermanentError("fax: the owner PractitionerRole has no E.164 fax number")
    document = delivery.certification
    if document is None:
        raise PermanentError("fax: no certification PDF (DocumentReference with a return code) for the plan")
    return CertificationFax(task_id=delivery.task_id, to=number, recipient_name=_name(delivery.practitioner),
                            return_code=document.return_code, plan_pdf=document.pdf)


def combine_pdfs(first: bytes, second: bytes) -> tuple[bytes, int]:
    """``first`` followed by the pages of ``second``: (PDF bytes, page count)."""
    try:
        combined = pdfium.PdfDocument(first)
        tail = pdfium.PdfDocument(second)
    except pdfium.PdfiumError:
        raise PermanentError("fax: a document to fax is not a readable PDF") from None
    try:
        combined.import_pages(tail)
        out = io.BytesIO()
        combined.save(out)
        return out.getvalue(), len(combined)
    finally:
        tail.close()
        combined.close()


def page_count(pdf: bytes) -> int:
    try:
        document = pdfium.PdfDocument(pdf)
    except pdfium.PdfiumError:
        raise PermanentError("fax: the plan of care is not a readable PDF") from None
    try:
        return len(document)
    finally:
        document.close()


def fax_pdf(fax: CertificationFax, *, clinic_name: str, clinic_fax: str, today: date) -> tuple[bytes, int]:
    """Cover sheet + plan as one PDF, and its page count."""
    total = page_count(fax.plan_pdf) + 1
    cover = render_cover_sheet(CoverSheet(clinic_name=clinic_name, clinic_fax=clinic_fax,
                                          return_code=fax.return_code, task_id=fax.task_id, total_pages=total,
                                          sent_on=today, recipient_name=fax.recipient_name,
                                          recipient_fax=fax.to))
    return combine_pdfs(cover, fax.plan_pdf)
