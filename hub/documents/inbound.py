"""The one way a channel hands over a received document (a fax, a Direct attachment).

A channel (the fax vendor's receive webhook, the Direct SMTP listener) first records what it
received in the message store (:meth:`hub.sync.inbox.Inbox.record_inbound`, the raw webhook body
or the raw MIME message), then calls :func:`accept_document` once per document, in the same unit
of work, and answers its sender only after that unit of work has committed: a document is never
acknowledged before it is stored.

:func:`accept_document` writes the DocumentReference (:func:`mappings.documents.inbound_document_reference`)
under the channel's :class:`hub.security.inbound.InboundPolicy`, with an AuditEvent whose agent is
the channel, and marks the message translated. The same message received again (a resent webhook,
an SMTP retry) lands on the same DocumentReference. What the document answers (a signed plan of
care, a new referral) is worked out after the commit by the document intake: :func:`accept_document`
asks the unit of work for it (:func:`hub.unit_of_work.intake_after_commit`), which publishes the
``hub.intake_document`` task once the channel's transaction has committed, and not at all when it
rolls back (or when the savepoint the document was accepted in does). Should that task be lost,
the document stays ``received`` and the intake sweep takes it a little later.
"""

from __future__ import annotations

from typing import Any

from hub.fhir.service import FhirService
from hub.security.inbound import InboundPolicy
from hub.store.models import Message
from hub.sync.inbox import Inbox
from hub.unit_of_work import intake_after_commit
from mappings.documents import InboundDocument, inbound_document_reference
from mappings.fhir import jsonio

__all__ = ["InboundDocument", "accept_document"]


def accept_document(fhir: FhirService, inbox: Inbox, message: Message, document: InboundDocument,
                    *, policy: InboundPolicy, address: str | None = None) -> dict[str, Any]:
    """Store ``document`` as a DocumentReference tied to ``message``; returns the stored resource.

    ``fhir`` is the FHIR store of the channel's unit of work, built with ``policy``."""
    resource = inbound_document_reference(document, received_at=inbox.clock())
    written = fhir.update("DocumentReference", resource["id"], resource)
    stored: dict[str, Any] = jsonio.loads(written.stored.content or "{}")
    inbox.mark_translated(message, stored, resource_id=written.stored.id)
    policy.audit(fhir, interaction="create" if written.status == 201 else "update", outcome=0,
                 resource_type="DocumentReference", resource_id=written.stored.id, address=address)
    intake_after_commit(inbox.session, inbox.tenant, written.stored.id)
    return stored
