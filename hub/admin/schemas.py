"""What the admin API (``/admin/api``) answers: the read models of :mod:`hub.sync.admin`, named.

Every field the views produce is declared, in their order, with the type they give it (timestamps
are the views' ISO strings, not re-parsed). A job's fields that depend on its status
(``next_attempt_at`` ... ``confirm_by``) are absent when they do not apply: the routes that answer
jobs leave unset fields out, so the JSON is the view's.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class MessageOut(BaseModel):
    id: str
    direction: str
    source: str | None
    event: str | None
    status: str
    resource: str | None = Field(description="Type/id of the resource the message is about")
    resource_version: int | None
    correlation_id: str | None
    error: str | None
    replay_of: str | None
    has_payload: bool
    created_at: str | None
    updated_at: str | None


class MessagePage(BaseModel):
    total: int
    items: list[MessageOut]


class EventOut(BaseModel):
    event: str
    at: str | None
    job_id: int | None
    attempt: int | None
    duration_ms: float | None
    detail: str | None


class JobOut(BaseModel):
    id: int
    message_id: str
    resource: str | None
    resource_version: int | None
    connector: str
    route_id: int | None
    status: str
    attempts: int
    max_attempts: int
    idempotency_key: str
    last_error: str | None
    replay_of: int | None
    created_at: str | None
    finished_at: str | None
    # pending or retrying
    next_attempt_at: str | None = None
    held_by: int | None = Field(default=None, description="The dead letter this job waits behind")
    queued_because: str | None = None
    # dead
    resolved_by: int | None = None
    resolved_at: str | None = None
    resolution: str | None = Field(default=None, description="replayed, discarded, or none yet")
    holding: int | None = Field(default=None, description="How many later jobs wait behind this dead letter")
    # running
    lease_until: str | None = None
    # awaiting
    confirm_by: str | None = Field(default=None, description="When the partner's confirmation is due: "
                                   "without it by then, the attempt counts as failed")


class JobPage(BaseModel):
    total: int
    items: list[JobOut]


class MessageDetail(MessageOut):
    events: list[EventOut]
    jobs: list[JobOut]


class ReplayedOut(BaseModel):
    id: str
    replay_of: str | None


class BulkReplayOut(BaseModel):
    replayed: list[ReplayedOut]


class HealthOut(BaseModel):
    backlog: int
    dead_letters: int = Field(description="Outstanding: no replay of them was delivered yet")
    dead_letters_resolved: int
    last_success: str | None
    last_error_at: str | None
    last_error: str | None
    error_rate_1h: float | None
    error_rate_24h: float | None
    attempts_1h: int
    attempts_24h: int


class ConnectorOut(BaseModel):
    name: str
    kind: str
    enabled: bool
    max_attempts: int
    timeout_seconds: float
    backoff_base_seconds: float
    backoff_max_seconds: float
    health: HealthOut


class HealthCheckOut(BaseModel):
    name: str
    ok: bool
    detail: str | None
    duration_ms: float


class PollOut(BaseModel):
    connector: str
    ok: bool
    error: str | None = None
    fetched: int | None = None
    stored: int | None = None
    duplicates: int | None = None
    rejected: int | None = None
    echoes: int | None = None


class RouteOut(BaseModel):
    id: int
    name: str
    resource_type: str
    interactions: list[str]
    filter: str | None
    connector: str
    #: the connectors tried after ``connector``, in order (a fallback chain); empty: none
    fallback: list[str]
    enabled: bool


class ImportOut(BaseModel):
    connectors: int
    routes: int


class DirectCertOut(BaseModel):
    """A Direct certificate or trust anchor of the store: never its key, only whether it has one."""

    id: int
    address: str
    trust_anchor: bool
    has_key: bool
    fingerprint: str
    subject: str
    not_after: str
    created_at: str


class DirectCrlOut(BaseModel):
    """A certificate revocation list of the store (ADR 0010); ``expired``: past its nextUpdate."""

    id: int
    issuer: str
    issuer_fingerprint: str
    fingerprint: str
    revoked: int
    this_update: str
    next_update: str | None
    expired: bool
    created_at: str
    #: on add: the older CRLs of the same issuer it superseded
    superseded: list[int] = []
