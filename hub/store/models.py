"""Tables of the store. Every row carries ``tenant_id`` (the clinic organisation it belongs to).

Datetimes are stored as naive UTC on every backend so that SQLite and PostgreSQL compare alike.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Resource(Base):
    """The current version of each FHIR resource (deleted ones stay, flagged, for 410 Gone)."""

    __tablename__ = "resources"

    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(DateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the JSON received (validated), with ``meta.versionId``/``meta.lastUpdated`` set by the hub
    content: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_resources_type_updated", "tenant_id", "resource_type", "last_updated"),)


class ResourceVersion(Base):
    """Every version of every resource: the history (``_history``, vread)."""

    __tablename__ = "resource_versions"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_updated: Mapped[datetime] = mapped_column(DateTime)
    method: Mapped[str] = mapped_column(String(8))  # POST | PUT | DELETE
    content: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_resource_versions_type_updated", "tenant_id", "resource_type", "last_updated"),)


class SearchToken(Base):
    """Token and string search values of current resources (codes, identifiers, names...)."""

    __tablename__ = "search_tokens"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code: Mapped[str] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_search_tokens_lookup", "tenant_id", "resource_type", "param", "code", "system"),
        Index("ix_search_tokens_owner", "tenant_id", "resource_type", "resource_id"),
    )


class SearchReference(Base):
    """Reference search values of current resources (subject, requester, focus...)."""

    __tablename__ = "search_references"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target_id: Mapped[str] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_search_references_lookup", "tenant_id", "resource_type", "param", "target_id", "target_type"),
        Index("ix_search_references_owner", "tenant_id", "resource_type", "resource_id"),
    )


class SearchDate(Base):
    """Date search values of current resources as closed UTC ranges [low, high]."""

    __tablename__ = "search_dates"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    low: Mapped[datetime] = mapped_column(DateTime)
    high: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_search_dates_lookup", "tenant_id", "resource_type", "param", "low", "high"),
        Index("ix_search_dates_owner", "tenant_id", "resource_type", "resource_id"),
    )


INDEX_TABLES = (SearchToken, SearchReference, SearchDate)


# ------------------------------------------------------------------ sync engine


class ConnectorInstance(Base):
    """A configured connector of a tenant (e.g. "clinic-emr-webhook"); secrets encrypted at rest."""

    __tablename__ = "connector_instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(64))  # connector slug
    config: Mapped[str] = mapped_column(Text)  # Fernet token of the JSON config
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    timeout_seconds: Mapped[float] = mapped_column(default=10.0)
    backoff_base_seconds: Mapped[float] = mapped_column(default=2.0)
    backoff_max_seconds: Mapped[float] = mapped_column(default=600.0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("uq_connector_instances_name", "tenant_id", "name", unique=True),)


class Route(Base):
    """Which changes (resource type + interaction, optional FHIRPath filter) go to which connector."""

    __tablename__ = "routes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(64))  # or "*"
    interactions: Mapped[str] = mapped_column(String(64), default="create,update")  # comma list or "*"
    filter: Mapped[str | None] = mapped_column(Text, nullable=True)  # FHIRPath, must evaluate to true
    connector_id: Mapped[int] = mapped_column(Integer, ForeignKey("connector_instances.id"))
    #: a fallback chain: comma list of the ids of the connectors tried after ``connector_id``, in order
    #: (the first that can address a delivery takes it; ADR 0011); None: this connector alone
    fallback: Mapped[str | None] = mapped_column(String(200), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("uq_routes_name", "tenant_id", "name", unique=True),)


class Message(Base):
    """Every message that entered or left the hub, with its payloads (encrypted) and status."""

    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    direction: Mapped[str] = mapped_column(String(8))  # inbound | outbound
    source: Mapped[str] = mapped_column(String(100))  # "fhir-api", a connector name...
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    event: Mapped[str] = mapped_column(String(100))  # e.g. ServiceRequest.create
    resource_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resource_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    correlation_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # received|rejected|routed|unrouted|delivered|failed|dead
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    raw_payload: Mapped[str | None] = mapped_column(Text, nullable=True)  # encrypted
    translated_payload: Mapped[str | None] = mapped_column(Text, nullable=True)  # encrypted
    replay_of: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_messages_tenant_created", "tenant_id", "created_at"),
        Index("ix_messages_tenant_status", "tenant_id", "status"),
        Index("ix_messages_correlation", "tenant_id", "correlation_id"),
        Index("uq_messages_inbox", "tenant_id", "source", "external_id", unique=True),
        Index("ix_messages_resource", "tenant_id", "resource_type", "resource_id"),
    )


class DeliveryJob(Base):
    """The outbox: one delivery of one message to one connector instance."""

    __tablename__ = "delivery_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    message_id: Mapped[str] = mapped_column(String(36), ForeignKey("messages.id"))
    connector_id: Mapped[int] = mapped_column(Integer, ForeignKey("connector_instances.id"))
    route_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(12))  # pending|running|retrying|awaiting|succeeded|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    #: when the job next needs the hub: its next attempt (pending, retrying), or, while it is
    #: ``awaiting`` the partner's confirmation, the deadline of that confirmation (``confirm_by``)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    ordering_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    replay_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: place in the order of its ordering key: its own id, or that of the job it replays (a replay of a
    #: dead letter takes the dead job's place, ahead of the later jobs held behind it)
    ordering_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: the dead letter this job was last found waiting behind (cleared when it is woken)
    held_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: a dead job whose replay (or the replay of its replay) was delivered: resolved, not outstanding
    resolved_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: the partner's id of what the last accepted attempt made (SendResult.remote_id, e.g. a fax id)
    remote_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: links the partner issued with the last accepted attempt (SendResult.links, e.g. a patient's
    #: HEP sign-in link): encrypted JSON ``[{"rel", "url", "expires_at"}]``; never logged
    issued_links: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    @property
    def confirm_by(self) -> datetime | None:
        """The deadline of the partner's confirmation of an ``awaiting`` job (ADR 0012); None otherwise."""
        return self.next_attempt_at if self.status == "awaiting" else None

    __table_args__ = (
        Index("ix_delivery_jobs_due", "status", "next_attempt_at"),
        Index("ix_delivery_jobs_remote_id", "connector_id", "remote_id"),
        Index("ix_delivery_jobs_tenant_status", "tenant_id", "status"),
        Index("ix_delivery_jobs_ordering", "ordering_key", "id"),
        Index("ix_delivery_jobs_message", "message_id"),
        Index("ix_delivery_jobs_replay_of", "replay_of"),
        Index("ix_delivery_jobs_idempotency_key", "idempotency_key"),
    )


class MessageEvent(Base):
    """One step in the life of a message (received, routed, queued, sent, failed...)."""

    __tablename__ = "message_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(36), ForeignKey("messages.id"))
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    event: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime)
    duration_ms: Mapped[float | None] = mapped_column(nullable=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # never payload content

    __table_args__ = (Index("ix_message_events_message", "message_id", "id"),)


class Cursor(Base):
    """Polling position of a connector instance; advanced only after its batch is committed."""

    __tablename__ = "cursors"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector_id: Mapped[int] = mapped_column(Integer, ForeignKey("connector_instances.id"), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class IdempotencyKey(Base):
    """``Idempotency-Key`` of an inbound create: a retried POST returns the first result."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)


# ------------------------------------------------------------------ security


class Client(Base):
    """An OAuth2 client of the hub: a user-facing app, a partner system or the local admin."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    client_id: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # admin | clinic | referrer | system
    scopes: Mapped[str] = mapped_column(Text)  # space-separated SMART v2 scopes
    secret_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)  # scrypt, for client_secret
    public_key: Mapped[str | None] = mapped_column(Text, nullable=True)  # PEM, for client_assertion JWTs
    fhir_user: Mapped[str | None] = mapped_column(String(200), nullable=True)  # e.g. PractitionerRole/x
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class UsedAssertion(Base):
    """``jti`` of client assertions already used (refused if replayed before they expire)."""

    __tablename__ = "used_assertions"

    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class WrittenVersion(Base):
    """What the hub itself wrote to a partner, named as that partner's poll will name it
    (``PolledItem.external_id``, e.g. ``ServiceRequest/abc/_history/3``): a poll skips these echoes
    instead of storing the hub's own write back as a new version. Purged with message retention."""

    __tablename__ = "written_versions"

    connector_id: Mapped[int] = mapped_column(Integer, ForeignKey("connector_instances.id"), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    written_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_written_versions_written_at", "written_at"),)


class DashboardSessionRecord(Base):
    """A signed-in dashboard session, known by the SHA-256 of the session id its cookie carries.

    The cookie alone proves nothing once its row is gone: signing out deletes the row, so a copy of the
    cookie is refused by every API replica. Rows older than the absolute session lifetime are purged."""

    __tablename__ = "dashboard_sessions"

    sid_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100))
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    signed_in_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_dashboard_sessions_signed_in_at", "signed_in_at"),)


class SignInFailure(Base):
    """A failed dashboard sign-in, under the SHA-256 of its throttle key ((client id, address) or the
    address alone): the sign-in throttle of every API replica counts the same rows. Rows older than
    the throttle window are purged."""

    __tablename__ = "signin_failures"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_signin_failures_key_hash_failed_at", "key_hash", "failed_at"),
                      Index("ix_signin_failures_failed_at", "failed_at"))


class X12ControlNumber(Base):
    """The last X12 control number given out per tenant, sender id and kind (``interchange`` ISA13,
    ``group`` GS06, ``transaction`` ST02): numbers never repeat until they wrap after 999,999,999
    (:func:`hub.store.billing_repository.allocate_control_numbers`)."""

    __tablename__ = "x12_control_numbers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    sender: Mapped[str] = mapped_column(String(64))  # the interchange sender (ISA05:ISA06 or the GS02 id)
    kind: Mapped[str] = mapped_column(String(16))
    last: Mapped[int] = mapped_column(Integer)  # 0 before the first number
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_x12_control_numbers_key", "tenant_id", "sender", "kind", unique=True),)


class DirectCertificate(Base):
    """A Direct address's certificate (with its private key, encrypted, when it is one of ours) or a
    trust anchor for that address, managed outside the connector config (``hub direct certs``)."""

    __tablename__ = "direct_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    address: Mapped[str] = mapped_column(String(254))  # lower case
    trust_anchor: Mapped[bool] = mapped_column(Boolean, default=False)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the DER certificate
    subject: Mapped[str] = mapped_column(String(500))
    not_after: Mapped[datetime] = mapped_column(DateTime)
    cert_pem: Mapped[str] = mapped_column(Text)
    key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)  # the hub's payload cipher
    created_at: Mapped[datetime] = mapped_column(DateTime)
    #: when it was removed (``hub direct certs remove``, replaced): kept, no longer used or listed
    removed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (Index("ix_direct_certificates_address", "tenant_id", "address", "fingerprint", unique=True),)


class DirectCrl(Base):
    """A certificate revocation list supplied by an administrator (``hub direct certs add --crl``)
    for an issuer among the tenant's stored trust anchors and intermediates; verification of
    received Direct mail checks signers against it (ADR 0010). Nothing is fetched."""

    __tablename__ = "direct_crls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    issuer: Mapped[str] = mapped_column(String(500))  # the CRL's issuer (RFC 4514)
    issuer_fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the stored certificate that signed it
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the DER CRL
    this_update: Mapped[datetime] = mapped_column(DateTime)
    next_update: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked: Mapped[int] = mapped_column(Integer)  # how many certificates it lists
    crl_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    #: removed (``DELETE /admin/api/direct/crls/{id}``) or superseded by a newer CRL of its issuer
    removed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (Index("ix_direct_crls_fingerprint", "tenant_id", "fingerprint", unique=True),)


class BillingClaim(Base):
    """The billing state of one FHIR ``Claim`` (its content stays in the FHIR store): what listings,
    the denial analytics and the X12 imports read and move (ADR 0013). Amounts in cents; findings
    are the scrubber's rule ids and messages, which never name the patient."""

    __tablename__ = "billing_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"))
    claim_id: Mapped[str] = mapped_column(String(64))  # FHIR Claim id
    #: CLM01 / CLP01, at most 20 characters, unique per tenant
    patient_control_number: Mapped[str] = mapped_column(String(20))
    encounter_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # FHIR Patient id (KX year totals)
    discipline: Mapped[str | None] = mapped_column(String(3), nullable=True)  # PT | OT | SLP
    payer_id: Mapped[str] = mapped_column(String(80))
    connector_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the clearinghouse it goes through
    #: draft|blocked|ready|submitted|accepted|rejected|acknowledged|payer_rejected|paid|partially_paid|denied|reversed
    status: Mapped[str] = mapped_column(String(20))
    status_detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # codes and short wording, no PHI
    findings: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of findings
    frequency_code: Mapped[str] = mapped_column(String(1), default="1")
    charge_cents: Mapped[int] = mapped_column(Integer, default=0)
    paid_cents: Mapped[int | None] = mapped_column(Integer, nullable=True)
    patient_responsibility_cents: Mapped[int | None] = mapped_column(Integer, nullable=True)
    service_from: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    service_to: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: the 837P file that carried it: its message and its control numbers
    file_message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    interchange_control: Mapped[int | None] = mapped_column(Integer, nullable=True)
    transaction_control: Mapped[int | None] = mapped_column(Integer, nullable=True)
    payer_claim_number: Mapped[str | None] = mapped_column(String(50), nullable=True)  # REF*1K / CLP07
    claim_response_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (
        Index("uq_billing_claims_claim", "tenant_id", "claim_id", unique=True),
        Index("uq_billing_claims_pcn", "tenant_id", "patient_control_number", unique=True),
        Index("ix_billing_claims_status", "tenant_id", "status"),
        Index("ix_billing_claims_file", "file_message_id"),
        Index("ix_billing_claims_patient", "tenant_id", "patient_id", "service_from"),
    )
