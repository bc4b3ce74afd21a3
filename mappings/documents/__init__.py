"""Documents that arrive by fax or Direct: their FHIR form (DocumentReference)."""

from mappings.documents.inbound import (
    CHANNEL_SYSTEM,
    CONTENT_HASH_SYSTEM,
    INTAKE_SYSTEM,
    INTAKE_URL,
    SENDER_URL,
    InboundDocument,
    inbound_document_id,
    inbound_document_reference,
)

__all__ = ["CHANNEL_SYSTEM", "CONTENT_HASH_SYSTEM", "INTAKE_SYSTEM", "INTAKE_URL", "SENDER_URL", "InboundDocument",
           "inbound_document_id", "inbound_document_reference"]
