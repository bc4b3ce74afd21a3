"""The connector contract: value types, capability protocols and the error tree.

A connector is one adapter per partner kind (a webhook receiver, a FHIR EMR, a fax API ...). It
knows nothing of FastAPI, Celery or SQLAlchemy: a worker hands it a :class:`Delivery` and records
the :class:`SendResult` or the :class:`ConnectorError` it gets back.

A connector is a class with

* ``slug: ClassVar[str]`` - its registry name (``[a-z][a-z0-9_]*``), equal to its entry point name
  in the ``therapy_hub.connectors`` group;
* ``Config: ClassVar[type[pydantic.BaseModel]]`` - its typed configuration (``SecretStr`` for every
  secret; :class:`ConnectorConfig` is a convenient base that forbids unknown fields);
* ``__init__(self, config)`` taking an instance of ``Config``;
* :class:`Sender` and :class:`HealthChecker` (required), :class:`Poller` and :class:`Addresser`
  (optional), and ``close()`` which releases sockets and pools. One instance may be reused for many
  deliveries. An :class:`Addresser` says whether it can address a delivery at all (a fax connector:
  the recipient has a fax number); only such connectors can stand in a route's fallback chain;
* optionally ``context: ClassVar[frozenset[str]]`` - what a delivery must carry besides the changed
  resource: ``"references"`` (the payload is then a ``collection`` Bundle, the changed resource
  first, followed by the resources it references, two levels deep) and ``"previous"``
  (:attr:`Delivery.previous` holds the version the change replaced). The hub builds both when the
  delivery is claimed (:mod:`hub.sync.context`).

Errors
------
Every failure leaves a connector as one of these exceptions; no ``httpx``, ``socket``, ``ssl`` or
``smtplib`` exception escapes, and no message contains payload content or secrets::

    ConnectorError                 base class; .status (remote status code or None), .duration_ms
    +-- TransientError             worth retrying with backoff: timeouts, connection failures,
    |                              408, 429, 5xx. .retry_after = seconds the partner asked us to
    |                              wait (Retry-After) or None.
    +-- PermanentError             retrying the same delivery cannot succeed -> dead letter:
        |                          the partner rejected it (4xx), unexpected redirects.
        +-- AuthError              credentials rejected (401/403): fix the connector config,
        |                          then replay.
        +-- ConfigError            the connector config is invalid or names an unknown connector;
                                   messages name the fields, never their values.

Workers map them to job states: ``TransientError`` -> retry (honouring ``retry_after`` as a lower
bound for the next attempt), ``PermanentError`` and subclasses -> dead letter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, get_args, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ErrorType

__all__ = [
    "Addresser",
    "AuthError",
    "ConfigError",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "Delivery",
    "HL7_V2_ER7",
    "HUB_ONLY_TYPES",
    "HealthChecker",
    "HealthResult",
    "IssuedLink",
    "PermanentError",
    "PollBatch",
    "PolledItem",
    "Poller",
    "SendResult",
    "Sender",
    "TransientError",
    "X12_EDI",
    "can_address",
    "supports_polling",
    "validate_config",
]


# --------------------------------------------------------------------------------------- errors


class ConnectorError(Exception):
    """Base of every error a connector raises. ``str(error)`` is safe to log and store."""

    def __init__(self, message: str, *, status: int | None = None, duration_ms: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.duration_ms = duration_ms

    @property
    def retryable(self) -> bool:
        return False


class TransientError(ConnectorError):
    """Retry later (with backoff). ``retry_after``: seconds requested by the partner, if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        duration_ms: float | None = None,
    ) -> None:
        super().__init__(message, status=status, duration_ms=duration_ms)
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return True


class PermanentError(ConnectorError):
    """Retrying the same delivery cannot succeed: dead-letter it."""


class AuthError(PermanentError):
    """The partner rejected our credentials (401/403)."""


class ConfigError(PermanentError):
    """The connector configuration is invalid (fields named, values never shown) or unknown.

    ``fields``: dotted names of the offending fields, when known (for forms in the admin UI).
    """

    def __init__(
        self,
        message: str,
        *,
        fields: Sequence[str] = (),
        status: int | None = None,
        duration_ms: float | None = None,
    ) -> None:
        super().__init__(message, status=status, duration_ms=duration_ms)
        self.fields = tuple(fields)


# ---------------------------------------------------------------------------------- value types

# Header-safe: visible ASCII, no CR/LF, bounded. Keys and ids end up in HTTP/SMTP/MLLP headers.
_TOKEN = re.compile(r"[\x21-\x7e]{1,255}")
_TEXT = re.compile(r"[\x20-\x7e]{0,255}")


#: ``Delivery.content_type`` of a message the hub made in HL7 v2's pipe-delimited encoding (ER7),
#: e.g. an enhanced-mode application ACK; every other payload is ``application/fhir+json``
HL7_V2_ER7 = "x-application/hl7-v2+er7"
#: ``Delivery.content_type`` of an ASC X12 interchange the hub made (an 837P claim file, event ``x12.*``)
X12_EDI = "application/edi-x12"


@dataclass(frozen=True)
class Delivery:
    """One outbound message for one partner. ``payload`` never appears in ``repr``."""

    payload: bytes = field(repr=False)
    content_type: str
    idempotency_key: str
    correlation_id: str
    resource_type: str | None
    resource_id: str | None
    event: str  # e.g. "ServiceRequest.create"
    #: the version this change replaced, for connectors whose ``context`` asks for "previous"
    previous: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.payload, bytes):
            raise TypeError("Delivery.payload must be bytes")
        if not _TOKEN.fullmatch(self.idempotency_key):
            raise ValueError("Delivery.idempotency_key must be 1-255 visible ASCII characters")
        for name in ("content_type", "correlation_id", "event"):
            if not _TEXT.fullmatch(getattr(self, name)):
                raise ValueError(f"Delivery.{name} must be at most 255 printable ASCII characters")


@dataclass(frozen=True)
class IssuedLink:
    """A link the partner issued for someone to use (a patient's sign-in link to a HEP vendor's app).

    ``url`` may be a bearer credential: the hub stores it with the delivery's resource and shows it
    to the clinic; it is never logged nor put in ``detail``. ``rel`` names it (e.g. ``patient-access``),
    ``expires_at`` is the partner's ISO 8601 expiry, if any."""

    rel: str
    url: str = field(repr=False)
    expires_at: str | None = None


@dataclass(frozen=True)
class SendResult:
    """The partner accepted a delivery. ``detail`` is short and never holds payload content."""

    status: int | None
    remote_id: str | None
    detail: str
    duration_ms: float
    #: what this send wrote on the partner, named as this connector's ``poll`` will report it
    #: (``PolledItem.external_id``): the hub does not take its own writes back as news
    written: tuple[str, ...] = ()
    #: "accepted, confirmation to follow": the partner only took the send on, and reports its real
    #: outcome later (a fax vendor's status webhook, a Direct MDN naming ``remote_id``) within this
    #: many seconds, after which the hub counts the attempt as failed. None: the send is the delivery
    confirm_within_seconds: float | None = None
    #: links the partner issued with this send, for the hub to store (:class:`IssuedLink`)
    links: tuple[IssuedLink, ...] = ()


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    detail: str
    duration_ms: float


@dataclass(frozen=True)
class PolledItem:
    """One inbound message fetched by a :class:`Poller`; ``external_id`` is the partner's id."""

    external_id: str
    payload: bytes = field(repr=False)
    content_type: str


@dataclass(frozen=True)
class PollBatch:
    items: list[PolledItem]
    next_cursor: str | None  # store it and pass it to the next poll; None: nothing new to resume


# ------------------------------------------------------------------------------------ protocols


@runtime_checkable
class Sender(Protocol):
    def send(self, delivery: Delivery) -> SendResult:
        """Deliver once. Idempotent per ``delivery.idempotency_key``. Raises ConnectorError."""
        ...


@runtime_checkable
class Poller(Protocol):
    def poll(self, cursor: str | None, limit: int) -> PollBatch:
        """Fetch at most ``limit`` items after ``cursor`` (None: from the start). Raises ConnectorError."""
        ...


@runtime_checkable
class HealthChecker(Protocol):
    def health(self) -> HealthResult:
        """Probe the partner. Never raises for a partner problem: returns ``ok=False`` instead."""
        ...


@runtime_checkable
class Connector(Sender, HealthChecker, Protocol):
    """What the registry hands out: a configured connector instance (see the module docstring)."""

    slug: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    def __init__(self, config: Any) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Addresser(Protocol):
    def can_address(self, delivery: Delivery) -> bool:
        """Whether this connector has an address for ``delivery`` (its payload with the context the
        connector asks for, as far as it is known): pure, no I/O, never raises for a bad payload."""
        ...


def supports_polling(connector: object) -> bool:
    return isinstance(connector, Poller)


def can_address(connector: object, delivery: Delivery) -> bool | None:
    """The connector's answer, or None when it is no :class:`Addresser` (it cannot tell)."""
    if not isinstance(connector, Addresser):
        return None
    return bool(connector.can_address(delivery))


#: resource types that only the hub itself writes (its audit trail): no connector may send them in
HUB_ONLY_TYPES = frozenset({"AuditEvent", "Provenance"})
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


class ConnectorConfig(BaseModel):
    """Base for connector config models: immutable, unknown fields rejected (typos fail loudly).

    ``inbound_types``: the FHIR resource types this partner may write into the hub (webhook pushes,
    polled changes, HL7 v2 translations); None = the hub's default clinical types. The types of
    :data:`HUB_ONLY_TYPES` are refused here and by the hub whatever the config says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inbound_types: tuple[str, ...] | None = Field(default=None, max_length=64)

    @field_validator("inbound_types")
    @classmethod
    def _inbound_types(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if not _RESOURCE_TYPE.fullmatch(name):
                raise PydanticCustomError("not_a_resource_type", "not a FHIR resource type name")
            if name in HUB_ONLY_TYPES:
                raise PydanticCustomError("written_by_the_hub_only", "only the hub writes this type")
        return value


M = TypeVar("M", bound=BaseModel)

# pydantic's own messages never quote the input; custom validator messages might, so drop those
# (and the collection-length ones, which state the actual length of e.g. a secret).
_SAFE_ERROR_TYPES = frozenset(get_args(ErrorType)) - {
    "value_error",
    "assertion_error",
    "too_short",
    "too_long",
}


def validate_config(model: type[M], data: Mapping[str, Any] | BaseModel, *, connector: str) -> M:
    """Validate ``data`` with ``model``; a problem -> :class:`ConfigError` naming fields, never values."""
    if isinstance(data, model):
        return data
    if isinstance(data, BaseModel):
        data = dict(data)
    problems: list[str] = []
    fields: list[str] = []
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            name = ".".join(str(part) for part in error["loc"]) or "(config)"
            fields.append(name)
            reason = error["type"]
            if reason in _SAFE_ERROR_TYPES:
                reason = f"{reason}: {error['msg']}"
            problems.append(f"{name} ({reason})")
    # raised outside the except block: the ValidationError (which quotes inputs) is not chained
    raise ConfigError(f"invalid {connector} config: " + "; ".join(problems), fields=fields)
