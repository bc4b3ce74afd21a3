"""The document intake: a received document (fax, Direct) matched to the certification it answers.

:func:`match_document` reads a DocumentReference stored by :func:`hub.documents.inbound.accept_document`,
renders and decodes its PDF (:func:`mappings.documents.barcodes.read_pdf`) or its TIFF fax
(:func:`mappings.documents.tiff.read_tiff`; the content type in any case, ``application/octet-stream``
told by its bytes) and looks for the return
code of a plan's certification page: in its barcodes first, else in its text layer. The pending
certification (or recertification) Task of the plan revision that code names is completed through
:meth:`hub.referrals.signing.Signing.sign`, the signer its owner and the received document the
signature: the Provenance names it as a source entity, and its PDF is kept as the signed version of
the page (a TIFF fax first gets a PDF rendition kept beside it, as its second ``content``; the signed
version keeps both, the PDF first). Nobody types anything.

What the intake found is written on the DocumentReference: the intake category (``matched``,
``duplicate``, ``triage``; ``received`` before), an extension with the reason and the Task, and the
hash of its pages as an identifier (:data:`mappings.documents.CONTENT_HASH_SYSTEM`). A document whose
pages hash like one already matched is a ``duplicate`` (the same scan faxed again, or sent by fax and
by Direct): it completes nothing a second time. A document that matches nothing goes to ``triage``
(``docStatus`` preliminary), where an administrator matches it by hand (:func:`match_document` with
``task_id``), which completes the certification exactly as an automatic match does; unless it came
from the fax number or Direct address of a known referrer: then it opens a draft referral for staff
to complete (category ``referral``, the referral Task named; :mod:`hub.documents.referrers`).

When it runs (:func:`run_intake`, :func:`sweep_received`): the channel stores the document and
answers its sender in its own unit of work; the intake then runs in a unit of work of its own, right
after that commit. Rendering and decoding take a while and may fail on a strange PDF: neither holds
the channel's transaction open nor can it lose the document, which is already stored. If the process
dies between the two, the document stays in the ``received`` category, and the periodic sweep
(the ``hub.document_intake`` beat task) picks up every document received a while ago and still not
looked at. Matching is idempotent: a document already matched, a duplicate, or one whose Task already
names it, is answered again without writing anything twice.

Nothing here logs a document's content, its return code or what it says: ids and outcomes only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from hub.documents.referrers import known_sender, open_draft_referral
from hub.errors import Conflict, NotFound
from hub.fhir.service import FhirService
from hub.fhir.stored import etag
from hub.referrals.plan_records import REVISION_URL, obligation_code, plan_extension, plan_return_code
from hub.referrals.plans import PlanService, SignIn
from hub.referrals.signing import RECEIVED_SIGNATURE
from hub.security.audit import audit_event
from hub.security.principal import Principal
from hub.services import fhir_service
from hub.store.repository import tenant_ids
from hub.unit_of_work import unit_of_work
from mappings.documents import CHANNEL_SYSTEM, CONTENT_HASH_SYSTEM, INTAKE_SYSTEM, INTAKE_URL
from mappings.documents.barcodes import PdfReading, read_pdf, return_codes
from mappings.documents.tiff import PDF, TIFF, document_kind, read_tiff, tiff_pdf
from mappings.fhir import jsonio
from mappings.fhir.ids import deterministic_id
from mappings.plan_of_care.pdf import RETURN_CODE_SYSTEM

__all__ = ["DocumentIntake", "INTAKE_AGENT", "IntakeOutcome", "RECEIVED_SIGNATURE", "intake_state", "match_document",
           "run_intake", "sweep_received", "triage_documents"]

log = logging.getLogger("hub.documents.intake")
#: the format of the PDF rendition the intake keeps beside a received TIFF
RENDITION_SYSTEM = "https://therapy-hub.example/CodeSystem/document-format"

Outcome = Literal["matched", "duplicate", "triage", "referral"]
CERTIFICATIONS = ("certification", "recertification")
#: a document received less than this long ago is left to the intake its channel runs after commit
SWEEP_GRACE = timedelta(minutes=2)
_DISPLAY = {"received": "Received", "matched": "Matched", "duplicate": "Duplicate", "triage": "Triage",
            "referral": "Draft referral"}
_EMPTY = PdfReading(pages=0, barcodes=(), texts=(), content_hash=None)


@dataclass(frozen=True)
class IntakeOutcome:
    """What the intake made of one document (the reason never quotes the document)."""

    document: str  # the DocumentReference id
    outcome: Outcome
    reason: str
    #: the certification Task completed (matched) or already completed (duplicate), or the referral
    #: Task of the draft referral the document opened (referral)
    task: str | None = None
    duplicate_of: str | None = None  # the DocumentReference already matched with the same pages

    def view(self) -> dict[str, Any]:
        return {"document": f"DocumentReference/{self.document}", "outcome": self.outcome, "reason": self.reason,
                "task": f"Task/{self.task}" if self.task else None,
                "duplicate_of": f"DocumentReference/{self.duplicate_of}" if self.duplicate_of else None}


def intake_state(document: dict[str, Any]) -> str | None:
    """The intake category of a DocumentReference (None: not a received document)."""
    for category in document.get("category") or []:
        for coding in category.get("coding") or []:
            if coding.get("system") == INTAKE_SYSTEM:
                return str(coding.get("code"))
    return None


def _recorded(document: dict[str, Any]) -> IntakeOutcome | None:
    """The outcome already written on ``document`` (matched, duplicate or referral), else None."""
    state = intake_state(document)
    extension = next((e for e in document.get("extension") or [] if e.get("url") == INTAKE_URL), None)
    if state not in ("matched", "duplicate", "referral") or extension is None:
        return None
    parts = {e["url"]: e for e in extension.get("extension") or []}

    def ref(name: str) -> str | None:
        reference = (parts.get(name) or {}).get("valueReference", {}).get("reference")
        return reference.split("/", 1)[1] if reference else None

    return IntakeOutcome(document=document["id"], outcome=state,  # type: ignore[arg-type]
                         reason=str((parts.get("reason") or {}).get("valueString", "")),
                         task=ref("task"), duplicate_of=ref("duplicateOf"))


class DocumentIntake(PlanService):
    """The intake over one FHIR store (see the module docstring)."""

    def match(self, document_id: str, *, task_id: str | None = None) -> IntakeOutcome:
        document = self._read("DocumentReference", document_id)
        if intake_state(document) is None:
            raise NotFound(f"DocumentReference/{document_id} is not a received document")
        recorded = _recorded(document)
        if recorded is not None and task_id is None:
            return recorded
        if recorded is not None and recorded.outcome == "matched":
            raise Conflict("This document is matched already", expression="DocumentReference.category")
        reading = _read_document(document)
        if task_id is not None:
            return self._complete(document, reading, task_id, "matched by hand")
        earlier = self._already_matched(document_id, reading.content_hash)
        if earlier is not None:
            previous = _recorded(earlier)
            return self._mark(document, reading, IntakeOutcome(
                document_id, "duplicate", "the same pages were matched already",
                task=previous.task if previous else None, duplicate_of=earlier["id"]))
        if reading.pages == 0:
            return self._mark(document, reading, IntakeOutcome(document_id, "triage", "not a readable PDF or TIFF"))
        barcodes, texts = return_codes(reading)
        reason = "no return code found"
        for codes, how in ((barcodes, "barcode"), (texts, "return code in the text")):
            for code in codes:
                task, why = self._pending_certification(code, document_id)
                if task is not None and why == "answered":
                    return self._mark(document, reading, IntakeOutcome(document_id, "matched", f"matched by {how}",
                                                                       task=task["id"]))
                if task is not None and not _signed_by_a_physician(task):
                    why = "the certification names no referring physician to sign it"
                elif task is not None:
                    return self._complete(document, reading, task["id"], f"matched by {how}")
                reason = why
        requester, _ = known_sender(self, document)
        if requester is not None:  # no certification of ours: a new referral from a referrer we know
            task_id = open_draft_referral(self, document, requester)
            return self._mark(document, reading, IntakeOutcome(
                document_id, "referral", f"{reason}; a draft referral from a known referrer", task=task_id))
        return self._mark(document, reading, IntakeOutcome(document_id, "triage", reason))

    def triage(self) -> list[dict[str, Any]]:
        """The documents waiting to be matched by hand, oldest first: ids, channel, dates, reason."""
        found = self._search("DocumentReference", [("category", f"{INTAKE_SYSTEM}|triage")])
        items = []
        for document in sorted(found, key=lambda d: str(d.get("date", ""))):
            extension = next((e for e in document.get("extension") or [] if e.get("url") == INTAKE_URL), {})
            parts = {e["url"]: e for e in extension.get("extension") or []}
            channel = next((i["system"].rsplit("/", 1)[1] for i in document.get("identifier") or []
                            if i.get("system", "").startswith(f"{CHANNEL_SYSTEM}/")), None)
            items.append({"id": document["id"], "channel": channel, "received": document.get("date"),
                          "reason": (parts.get("reason") or {}).get("valueString"),
                          "size": document["content"][0]["attachment"].get("size")})
        return items

    # ------------------------------------------------------------ steps

    def _already_matched(self, document_id: str, content_hash: str | None) -> dict[str, Any] | None:
        if content_hash is None:
            return None
        same = self._search("DocumentReference", [("identifier", f"{CONTENT_HASH_SYSTEM}|{content_hash}")])
        return next((d for d in same if d["id"] != document_id and intake_state(d) == "matched"), None)

    def _pending_certification(self, code: str, document_id: str) -> tuple[dict[str, Any] | None, str]:
        """(the Task, "pending" | "answered") of the plan revision that ``code`` names, else (None, why)."""
        try:
            unsigned = self._read("DocumentReference", deterministic_id("DocumentReference", RETURN_CODE_SYSTEM,
                                                                        code))
        except NotFound:
            return None, "unknown return code"
        plan_ref = next((r["reference"] for r in (unsigned.get("context") or {}).get("related") or []
                         if r.get("reference", "").startswith("CarePlan/")), None)
        if plan_ref is None:
            return None, "unknown return code"
        care_plan = self._read(*plan_ref.split("/"))
        revision = int((plan_extension(care_plan, REVISION_URL) or {}).get("valueInteger", 1))
        if plan_return_code(care_plan["id"], revision) != code:
            return None, "the return code of an earlier revision of the plan"
        tasks = [t for t in self._search("Task", [("focus", plan_ref)]) if obligation_code(t) in CERTIFICATIONS]
        received = f"DocumentReference/{document_id}"
        for task in tasks:
            if task.get("status") == "completed" and any(
                    (o.get("valueReference") or {}).get("reference") == received for o in task.get("output") or []):
                return task, "answered"
        pending = [t for t in tasks if t.get("status") == "requested"]
        if not pending:
            return None, "no pending certification for this plan"
        return min(pending, key=lambda t: str(t.get("authoredOn", ""))), "pending"

    def _complete(self, document: dict[str, Any], reading: PdfReading, task_id: str, reason: str) -> IntakeOutcome:
        received = f"DocumentReference/{document['id']}"
        if reading.pages == 0:
            raise Conflict("Only a readable PDF or TIFF can be the signed page of a certification",
                           expression="DocumentReference.content")
        try:
            stored = self.fhir.read("Task", task_id)
        except NotFound:
            raise NotFound("There is no certification with this id") from None
        task = jsonio.loads(stored.content or "{}")
        if obligation_code(task) in CERTIFICATIONS and not _signed_by_a_physician(task):
            raise Conflict("This certification names no referring physician to sign it", expression="Task.owner")
        if _pdf_of(document) is None:  # a TIFF fax: the signed version of the page needs a PDF
            self._add_pdf_rendition(document)
        try:  # over the version matched: a completion meanwhile (the portal, a copy of the scan) wins
            self.sign(task_id, SignIn(), received=received, if_match=etag(stored.version_id))
        except Conflict:
            if task.get("status") != "requested":
                raise  # completed before we looked (a match by hand): the administrator is told so
            return self._mark(document, reading, IntakeOutcome(
                document["id"], "duplicate", "the certification was signed already", task=task_id))
        return self._mark(document, reading, IntakeOutcome(document["id"], "matched", reason, task=task_id))

    def _add_pdf_rendition(self, document: dict[str, Any]) -> None:
        """Keep a PDF rendition of a received TIFF beside it (a second ``content``): what signing keeps
        as the signed version of the page, the TIFF staying the first content, as it came."""
        kind, data = _kind(document)
        created = datetime.fromisoformat(str(document.get("date") or "1970-01-01T00:00:00Z").replace("Z", "+00:00"))
        pdf = tiff_pdf(data, created=created) if kind == TIFF and data is not None else None
        if pdf is None:
            raise Conflict("Only a readable PDF or TIFF can be the signed page of a certification",
                           expression="DocumentReference.content")
        current = self._read("DocumentReference", document["id"])
        title = (current["content"][0].get("attachment") or {}).get("title") or "Received fax"
        rendition = {"attachment": {
            "contentType": PDF, "data": base64.b64encode(pdf).decode("ascii"), "size": len(pdf),
            "hash": base64.b64encode(hashlib.sha1(pdf, usedforsecurity=False).digest()).decode("ascii"),
            "title": f"{title} (PDF rendition)"}, "format": {"code": "pdf-rendition", "system": RENDITION_SYSTEM}}
        updated = {**current, "content": [current["content"][0], rendition]}
        updated.pop("meta", None)
        with self.fhir.internal():
            self.fhir.update("DocumentReference", document["id"], updated)

    def _mark(self, document: dict[str, Any], reading: PdfReading, outcome: IntakeOutcome) -> IntakeOutcome:
        """Write ``outcome`` on the DocumentReference (reread: signing may have changed nothing on it,
        but the intake must not overwrite a newer version)."""
        document = self._read("DocumentReference", document["id"])
        categories = [c for c in document.get("category") or []
                      if not any(x.get("system") == INTAKE_SYSTEM for x in c.get("coding") or [])]
        categories.append({"coding": [{"system": INTAKE_SYSTEM, "code": outcome.outcome,
                                       "display": _DISPLAY[outcome.outcome]}]})
        identifiers = [i for i in document.get("identifier") or [] if i.get("system") != CONTENT_HASH_SYSTEM]
        if reading.content_hash:
            identifiers.append({"system": CONTENT_HASH_SYSTEM, "value": reading.content_hash})
        when = self._now().isoformat(timespec="seconds") + "Z"
        parts: list[dict[str, Any]] = [{"url": "outcome", "valueCode": outcome.outcome},
                                       {"url": "reason", "valueString": outcome.reason},
                                       {"url": "when", "valueDateTime": when}]
        if outcome.task:
            parts.append({"url": "task", "valueReference": {"reference": f"Task/{outcome.task}"}})
        if outcome.duplicate_of:
            parts.append({"url": "duplicateOf",
                          "valueReference": {"reference": f"DocumentReference/{outcome.duplicate_of}"}})
        extensions = [e for e in document.get("extension") or [] if e.get("url") != INTAKE_URL]
        extensions.append({"url": INTAKE_URL, "extension": parts})
        updated = {**document, "category": categories, "identifier": identifiers, "extension": extensions,
                   "docStatus": "preliminary" if outcome.outcome in ("triage", "referral") else "final"}
        if outcome.outcome == "matched" and outcome.task:
            task = self._read("Task", outcome.task)
            if (task.get("for") or {}).get("reference"):
                updated["subject"] = task["for"]
            if (task.get("focus") or {}).get("reference"):
                updated["context"] = {**(document.get("context") or {}), "related": [task["focus"]]}
        updated.pop("meta", None)
        with self.fhir.internal():  # the hub records what its intake found, whoever asked for it
            self.fhir.update("DocumentReference", document["id"], updated)
        return outcome


def _signed_by_a_physician(task: dict[str, Any]) -> bool:
    """Whether the Task's owner, who signs, is a PractitionerRole (not the clinic, for want of a referrer)."""
    return str((task.get("owner") or {}).get("reference", "")).startswith("PractitionerRole/")


def _kind(document: dict[str, Any]) -> tuple[str | None, bytes | None]:
    """(what the first content of ``document`` is: PDF, TIFF or None, its bytes)."""
    attachment = (document.get("content") or [{}])[0].get("attachment") or {}
    if not attachment.get("data"):
        return None, None
    try:
        data = base64.b64decode(attachment["data"], validate=True)
    except (binascii.Error, ValueError):
        return None, None
    return document_kind(attachment.get("contentType"), data), data


def _pdf_of(document: dict[str, Any]) -> bytes | None:
    """The PDF of ``document``: its content, or the PDF rendition kept beside a TIFF."""
    kind, data = _kind(document)
    if kind == PDF:
        return data
    for content in (document.get("content") or [])[1:]:
        attachment = content.get("attachment") or {}
        if attachment.get("contentType") == PDF and attachment.get("data"):
            try:
                return base64.b64decode(attachment["data"], validate=True)
            except (binascii.Error, ValueError):
                return None
    return None


def _read_document(document: dict[str, Any]) -> PdfReading:
    kind, data = _kind(document)
    if data is None:
        return _EMPTY
    if kind == PDF:
        return read_pdf(data)
    if kind == TIFF:
        return read_tiff(data)
    return _EMPTY


def match_document(fhir: FhirService, document_reference_id: str, *, task_id: str | None = None) -> IntakeOutcome:
    """Match a received document (see the module docstring) in ``fhir``'s unit of work; with
    ``task_id``, to that certification Task (by hand: 404 when it is no certification, 409 when it is
    not pending or the document is no readable PDF or TIFF)."""
    return DocumentIntake(fhir).match(document_reference_id, task_id=task_id)


#: the agent of the AuditEvents of automatic matches
INTAKE_AGENT = "hub:document-intake"


def run_intake(settings: Any, tenant: str, document_reference_id: str) -> IntakeOutcome:
    """Match one received document in a unit of work of its own, audited: what a channel calls right
    after its own unit of work has committed (and what the sweep calls)."""
    with unit_of_work(settings) as session:
        fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir")
        outcome = match_document(fhir, document_reference_id)
        agent = Principal.of(INTAKE_AGENT, tenant, "system", "", None)
        fhir.record_audit(audit_event(principal=agent, interaction="update", now=fhir.clock(), outcome=0,
                                      address=None, resource_type="DocumentReference",
                                      resource_id=document_reference_id, description=f"intake {outcome.outcome}"))
    log.info("hub.documents.intake", extra={"document": document_reference_id, "outcome": outcome.outcome})
    return outcome


def sweep_received(settings: Any, *, now: datetime | None = None, grace: timedelta = SWEEP_GRACE) -> int:
    """Run the intake of every document of every tenant received more than ``grace`` ago and still
    in the ``received`` category (its channel's intake never ran: the process died in between, or
    it failed); returns how many were looked at. A document that fails is logged (its id) and left
    for the next sweep."""
    with unit_of_work(settings) as session:
        tenants = tenant_ids(session)
    done = 0
    for tenant in tenants:
        with unit_of_work(settings, readonly=True) as session:
            fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir")
            cutoff = (now or fhir.clock()) - grace
            waiting = DocumentIntake(fhir)._search("DocumentReference", [
                ("category", f"{INTAKE_SYSTEM}|received"), ("date", f"lt{cutoff.isoformat(timespec='seconds')}")])
        for document in waiting:
            try:
                run_intake(settings, tenant, document["id"])
                done += 1
            except Exception:  # noqa: BLE001 - one strange document must not stop the sweep
                log.exception("hub.documents.intake.failed", extra={"document": document["id"]})
    return done


def triage_documents(fhir: FhirService) -> list[dict[str, Any]]:
    """The documents in triage (see :meth:`DocumentIntake.triage`)."""
    return DocumentIntake(fhir).triage()

