"""Signing a plan of care: the referring physician completes the certification Task (FHIR PUT or
``/certifications/{id}/sign``); the hub then renders the signed certification page, records a
Provenance with the signature and marks the plan certified."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC
from typing import Any

from pydantic import BaseModel, Field, model_validator

from hub.errors import Conflict, NotFound, PreconditionFailed
from hub.fhir.stored import etag
from hub.referrals.clocks import CertificationClocks
from hub.referrals.plan_records import CERTIFIED_URL, REVISION_URL, obligation_code, plan_extension, plan_return_code
from mappings.fhir import jsonio
from mappings.fhir.ids import deterministic_id
from mappings.plan_of_care.pdf import RETURN_CODE_SYSTEM, Attestation, render_plan_pdf, signed_document_reference
from mappings.plan_of_care.summary import plan_summary

#: Task.output type of a certification completed by a signed page that came back (fax, Direct)
RECEIVED_SIGNATURE = "received signed document"
SIGNATURE_TYPE = {"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1",
                  "display": "Author's Signature"}


#: the formats a physician's own signature mark may have, and how to tell that its data is one
_SIGNATURE_FORMATS = {
    "image/png": lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda data: data.startswith(b"\xff\xd8\xff"),
    "application/pdf": lambda data: data.startswith(b"%PDF-"),
    "application/jose": lambda data: re.fullmatch(rb"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*", data),
    "text/plain": lambda data: _is_text(data),
}


def _is_text(data: bytes) -> bool:
    try:
        return bool(data.decode("utf-8").strip())
    except UnicodeDecodeError:
        return False


class SignIn(BaseModel):
    signature: str | None = Field(default=None, description="The physician's own mark, base64 (optional): "
                                  "a typed name (text/plain), a drawn signature (image/png) or a JWS")
    signature_type: str = Field(default="text/plain", description=", ".join(_SIGNATURE_FORMATS))

    @model_validator(mode="after")
    def _really_that_format(self) -> SignIn:
        """Refuse a mark whose data is not what its type says (a name declared as image/png)."""
        if self.signature is None:
            return self
        check = _SIGNATURE_FORMATS.get(self.signature_type)
        if check is None:
            raise ValueError(f"signature_type must be one of {', '.join(_SIGNATURE_FORMATS)}")
        try:
            data = base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("signature must be base64") from None
        if not check(data):
            raise ValueError(f"signature is not {self.signature_type} data")
        return self


class Signing(CertificationClocks):
    def sign(self, task_id: str, body: SignIn, *, signer: str | None = None,
             received: str | None = None, if_match: str | None = None) -> dict[str, Any]:
        """Complete a certification; ``signer`` (a referrer's PractitionerRole) must be its owner.

        ``received``: the DocumentReference of the signed page that came back (a fax, a Direct
        attachment, matched by the document intake): it is the signature, kept as the signed version
        of the page instead of one the hub renders.

        Not there, not visible to the caller, not a certification, not the signer's: one answer (404,
        same text), so that signing is no way to learn what exists. The caller's policy reads the Task;
        the hub writes the signature (a referring physician may not PUT a Task).

        The Task is written only over the version read (``if_match``: the caller's, say the version
        the intake matched, else the one read here): of two completions at once (the portal and a
        page that came back, two copies of the same scan) the second is refused (409) and the first's
        output stays."""
        unknown = NotFound("There is no certification with this id that you can sign")
        try:
            stored = self.fhir.read("Task", task_id)
        except NotFound:
            raise unknown from None
        task = jsonio.loads(stored.content or "{}")
        if obligation_code(task) not in ("certification", "recertification"):
            raise unknown
        if signer is not None and (task.get("owner") or {}).get("reference") != signer:
            raise unknown
        if task.get("status") != "requested":
            raise Conflict(f"This certification is {task.get('status')}", expression="Task.status")
        signed = {**task, "status": "completed", "lastModified": self._now().isoformat(timespec="seconds") + "Z"}
        outputs = []
        if body.signature:
            outputs.append({"type": {"text": "signature"},
                            "valueAttachment": {"contentType": body.signature_type, "data": body.signature}})
        if received:
            outputs.append({"type": {"text": RECEIVED_SIGNATURE}, "valueReference": {"reference": received}})
        if outputs:
            signed["output"] = outputs
        try:
            with self.fhir.internal():
                self.fhir.update("Task", task_id, signed, if_match=if_match or etag(stored.version_id))
        except PreconditionFailed:
            raise Conflict("This certification was completed or changed meanwhile",
                           expression="Task.status") from None
        return self.obligation_view(self._read("Task", task_id))

    def _signed_document(self, care_plan: dict[str, Any], signer: str | None,
                         received: bytes | None = None, originals: list[dict[str, Any]] | None = None
                         ) -> dict[str, Any] | None:
        """Render the signed version of the plan's certification page (the signer's electronic
        signature, name, NPI and the time) and store it as a DocumentReference that ``signs`` the
        unsigned one; None when the plan has no unsigned page (a plan written through /fhir).
        ``received``: the PDF of the page signed by hand that came back, kept as it is instead;
        ``originals``: the other contents of what came back (a TIFF fax), kept after the PDF."""
        revision = int((plan_extension(care_plan, REVISION_URL) or {}).get("valueInteger", 1))
        return_code = plan_return_code(care_plan["id"], revision)
        try:
            unsigned = self._read("DocumentReference", deterministic_id("DocumentReference", RETURN_CODE_SYSTEM,
                                                                        return_code))
        except NotFound:
            return None
        sr_ref = next((i["reference"] for i in care_plan.get("supportingInfo") or []
                       if i.get("reference", "").startswith("ServiceRequest/")), None)
        if not sr_ref or not signer:
            return None
        sr = self._read(*sr_ref.split("/"))
        summary = plan_summary(self._plan_as_bundle(care_plan))
        organization = summary.plan.organization
        name, npi = self._person_of_role(signer)
        signed_at = self._now().replace(tzinfo=UTC)
        if received is not None:
            pdf = received
        else:
            inputs = self._document_inputs(sr, organization, summary.plan.author)
            attestation = Attestation(signer_name=name or inputs["referring_physician"], signed_at=signed_at,
                                      signer_npi=npi or inputs["referring_npi"])
            pdf = render_plan_pdf(summary, return_code=return_code, generated_at=signed_at,
                                  attestation=attestation, **inputs)
        document = signed_document_reference(pdf, unsigned=unsigned, signer_ref=signer, signed_at=signed_at)
        document["content"].extend({"attachment": c["attachment"]} for c in originals or [])
        self.fhir.update("DocumentReference", document["id"], document)
        return document

    def _received(self, reference: str) -> tuple[bytes, list[dict[str, Any]]] | None:
        """(the PDF of a received DocumentReference: its content or a PDF rendition kept beside it,
        the other contents as they are: the TIFF fax a rendition was made of), else None."""
        kind, _, document_id = reference.partition("/")
        if kind != "DocumentReference" or not document_id:
            return None
        contents = self._read(kind, document_id).get("content") or []
        for index, content in enumerate(contents):
            attachment = content.get("attachment") or {}
            if str(attachment.get("contentType", "")).lower() != "application/pdf":
                continue
            try:
                data = base64.b64decode(attachment.get("data") or "", validate=True)
            except (binascii.Error, ValueError):
                continue
            if data.startswith(b"%PDF-"):
                return data, [c for i, c in enumerate(contents) if i != index and c.get("attachment")]
        return None

    def _record_signature(self, task: dict[str, Any]) -> None:
        care_plan_ref = task["focus"]["reference"]
        care_plan = self._read(*care_plan_ref.split("/"))
        signer = (task.get("owner") or {}).get("reference")
        if not str(signer or "").startswith("PractitionerRole/"):
            # owned by the clinic (a referral without a referrer): nobody who may certify the plan
            # signs it, and the clinic cannot attest its own plan; the completion is refused
            raise Conflict("This certification names no referring physician to sign it: set Task.owner "
                           "to the referrer's PractitionerRole first", expression="Task.owner")
        now_text = self._now().isoformat(timespec="seconds") + "Z"
        # what was really signed: the signed version of the page (application/pdf), its bytes the data;
        # a page signed by hand that came back (fax, Direct) is that version itself
        received_ref = next((o["valueReference"]["reference"] for o in task.get("output") or []
                             if (o.get("type") or {}).get("text") == RECEIVED_SIGNATURE
                             and "valueReference" in o), None)
        found = self._received(received_ref) if received_ref else None
        if found is None:
            received_ref = None  # not a PDF (a Task written through /fhir): the hub renders the page
        received, originals = found if found else (None, [])
        document = self._signed_document(care_plan, signer, received, originals)
        signature: dict[str, Any] = {"type": [SIGNATURE_TYPE], "when": now_text, "who": {"reference": signer}}
        targets = [{"reference": f"{care_plan_ref}/_history/{care_plan['meta']['versionId']}"}]
        entities = [{"role": "source", "what": {"reference": f"Task/{task['id']}"}}]
        if document is not None:
            attachment = document["content"][0]["attachment"]
            signature.update({"targetFormat": "application/pdf", "sigFormat": "application/pdf",
                              "data": attachment["data"]})
            targets.append({"reference": f"DocumentReference/{document['id']}"})
            entities.append({"role": "source", "what": document["relatesTo"][0]["target"]})
        if received_ref:
            entities.append({"role": "source", "what": {"reference": received_ref}})
        provenance = {
            "resourceType": "Provenance",
            "target": targets,
            "recorded": now_text,
            "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DocumentCompletion",
                                     "code": "LA", "display": "legally authenticated"}]},
            "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                            "code": "verifier"}]}, "who": {"reference": signer}}],
            "entity": entities,
            "signature": [signature],
        }
        self.fhir.create("Provenance", provenance)
        revision = int((plan_extension(care_plan, REVISION_URL) or {}).get("valueInteger", 1))
        extensions = [e for e in care_plan.get("extension") or [] if e.get("url") != CERTIFIED_URL]
        extensions.append({"url": CERTIFIED_URL, "extension": [
            {"url": "revision", "valueInteger": revision},
            {"url": "when", "valueDateTime": now_text},
            {"url": "by", "valueReference": {"reference": signer}},
        ]})
        self.fhir.update("CarePlan", care_plan["id"], {**care_plan, "extension": extensions})
        self.refresh_clocks(care_plan["id"])
