"""The FHIR REST connector: mirror resources to a FHIR R4 server and pull its changes.

Send (one delivery = one resource, ids kept)::

    PUT <base_url>/<resourceType>/<id>
    Content-Type: application/fhir+json
    Accept: application/fhir+json
    Idempotency-Key: <delivery.idempotency_key>
    X-Correlation-ID: <delivery.correlation_id>
    Authorization: Bearer <token>                 (from the pluggable auth, see connectors.fhir_rest.auth)

    <the delivery payload, unchanged>

The payload must be a FHIR resource (JSON object) with ``resourceType`` and ``id``; otherwise
``PermanentError("payload is not a FHIR resource with an id")`` is raised without any network call.
Outcome: 2xx -> ``SendResult`` (``remote_id`` = the ``id`` of the returned resource, else the id in
``Location``, else the id we PUT); 408/429/5xx, timeouts and connection failures -> ``TransientError``
(``retry_after`` from ``Retry-After``); 401/403 -> ``AuthError`` (after one retry if the auth scheme
could refresh its credentials); any other status, redirects included -> ``PermanentError``. Error
messages carry the ``OperationOutcome`` issue codes (:func:`connectors.httputil.coded_reason`), never
its diagnostics text (a server may echo patient data there), nor the payload.

Poll (incremental, per resource type in the configured order)::

    GET <base_url>/<type>?_lastUpdated=ge<mark>&_sort=_lastUpdated&_count=<page_size>

then ``link[relation=next]`` until ``limit`` items are collected or the search is exhausted. Next
links must stay on the configured scheme, host and port (``PermanentError`` otherwise: the
credentials must not leak to another host). Each resource becomes ``PolledItem(external_id=
"<type>/<id>/_history/<versionId>", payload=<its JSON>, content_type="application/fhir+json")``; an
update is a new version, hence a new item. Decimals keep the digits the server wrote.

The cursor (:mod:`connectors.fhir_rest.cursor`) keeps per type the greatest ``meta.lastUpdated``
returned plus the ids returned at exactly that instant. Because the next search uses ``ge``, the
boundary items come back from the server; the connector drops the ones it already returned, so
nothing is missed when several resources share one ``lastUpdated`` across a page or ``limit``
boundary. Delivery is still at least once - the hub may fail before it stores the new cursor, and
then the same batch comes again - so the hub dedupes items by ``external_id`` (its inbox).

Requirements on the server, checked where possible: results sorted by ``_lastUpdated`` ascending
(``PermanentError`` if they are not: the marks would skip items); ``meta.lastUpdated`` on every
resource. Without ``meta.versionId`` the ``lastUpdated`` value stands in for the version. Paging
through a search while the server's data changes is only as consistent as the server's paging:
offset paging on a live result set can shift an item across a page boundary within one poll.

429 and 503 answers raise ``TransientError`` with the server's ``Retry-After``; a response that is
not a ``searchset`` Bundle raises ``PermanentError``.

Health: ``GET <base_url>/metadata`` is healthy when it answers 200 with a ``CapabilityStatement``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar, cast

import httpx
from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator

from connectors.base import (
    ConnectorConfig,
    ConnectorError,
    Delivery,
    HealthResult,
    PermanentError,
    PollBatch,
    PolledItem,
    SendResult,
    validate_config,
)
from connectors.fhir_rest.auth import BearerTokenAuth, FhirAuth, NoAuth
from connectors.fhir_rest.cursor import RESOURCE_TYPE, PollCursor, parse_instant
from connectors.fhirclient import (
    FHIR_ID,
    FHIR_JSON,
    FhirClient,
    describe,
    json_object,
    matches,
    raise_for_status,
    remote_ref,
    resource_ref,
    status_error,
)
from connectors.httputil import excerpt, ms_since, safe_target, shared_ssl_context
from mappings.fhir import jsonio

__all__ = ["FHIR_JSON", "FhirRestConfig", "FhirRestConnector"]

USER_AGENT = "therapy-hub-fhir-rest/1"
DEFAULT_RESOURCE_TYPES = ("Patient", "ServiceRequest", "Task")

_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,8192}")

_SEND_BODY_LIMIT = 1024 * 1024  # read to find the remote id and version; more is ignored
_PAGE_BODY_LIMIT = 64 * 1024 * 1024
_METADATA_LIMIT = 16 * 1024 * 1024  # CapabilityStatements of big servers run to megabytes
_MAX_PAGES_PER_POLL = 1000


class FhirRestConfig(ConnectorConfig):
    base_url: AnyHttpUrl = Field(description="The FHIR base, e.g. https://emr.example/fhir")
    resource_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RESOURCE_TYPES),
        min_length=1,
        max_length=64,
        description="Resource types to poll, in this order",
    )
    page_size: int = Field(default=50, ge=1, le=500, description="_count of each search page")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    bearer_token: SecretStr | None = None
    verify_tls: bool = True

    @field_validator("base_url")
    @classmethod
    def _plain_base(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if value.query or value.fragment or value.username or value.password:
            raise ValueError("the FHIR base must not carry credentials, a query or a fragment")
        return value

    @field_validator("resource_types")
    @classmethod
    def _known_shape(cls, value: list[str]) -> list[str]:
        if not all(isinstance(t, str) and RESOURCE_TYPE.fullmatch(t) for t in value):
            raise ValueError("resource types are names like Patient or ServiceRequest")
        if len(set(value)) != len(value):
            raise ValueError("resource types must not repeat")
        return value

    @field_validator("bearer_token")
    @classmethod
    def _header_safe(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _HEADER_SAFE.fullmatch(value.get_secret_value()):
            raise ValueError("the token must be visible ASCII")  # never quote it
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "base_url":
                value = safe_target(str(value)) + "/..."
            yield name, value


class FhirRestConnector:
    """A generic FHIR R4 REST partner. One ``httpx.Client`` per instance; call ``close()``.

    ``transport`` replaces the HTTP transport (tests); ``auth`` replaces the scheme built from the
    config. Subclasses (e.g. a SMART Backend Services EMR connector) set their own ``slug`` and
    ``Config`` (a subclass of :class:`FhirRestConfig`) and override :meth:`_build_auth`.
    """

    slug: ClassVar[str] = "fhir_rest"
    Config: ClassVar[type[BaseModel]] = FhirRestConfig

    def __init__(
        self,
        config: FhirRestConfig | Mapping[str, Any],
        *,
        transport: httpx.BaseTransport | None = None,
        auth: FhirAuth | None = None,
    ) -> None:
        model = cast(type[FhirRestConfig], type(self).Config)
        self.config: FhirRestConfig = validate_config(model, config, connector=self.slug)
        self._base = str(self.config.base_url).rstrip("/")
        self._target = safe_target(self._base)
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.config.timeout_seconds),
            follow_redirects=False,
            verify=shared_ssl_context() if self.config.verify_tls else False,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": FHIR_JSON},
            trust_env=False,
        )
        self._auth: FhirAuth = auth if auth is not None else self._build_auth()
        self._fhir = FhirClient(self._client, self._base, self._auth, timeout=self.config.timeout_seconds)

    def _build_auth(self) -> FhirAuth:
        """The auth scheme for this config. Override to add one (it may use ``self._client``)."""
        if self.config.bearer_token is not None:
            return BearerTokenAuth(self.config.bearer_token)
        return NoAuth()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self._target!r})"

    # ------------------------------------------------------------------------------- Sender

    def send(self, delivery: Delivery) -> SendResult:
        resource_type, resource_id = resource_ref(delivery.payload)
        what = f"FHIR PUT {self._target} {resource_type}/{resource_id}"
        answer = self._fhir.exchange(
            "PUT",
            f"{self._base}/{resource_type}/{resource_id}",
            what=what,
            limit=_SEND_BODY_LIMIT,
            content=delivery.payload,
            headers={
                "Content-Type": FHIR_JSON,
                "Idempotency-Key": delivery.idempotency_key,
                "X-Correlation-ID": delivery.correlation_id,
            },
        )
        raise_for_status(answer, what)
        resource = json_object(answer.body) if answer.complete else None
        remote_id, version = remote_ref(resource, answer.headers)
        detail = f"{what} -> {answer.status}"
        if version:
            detail += f" (version {version})"
        return SendResult(
            status=answer.status,
            remote_id=remote_id or resource_id,
            detail=detail,
            duration_ms=answer.duration_ms,
            # what the server now holds, as poll() will name it: the hub skips its own write there
            written=(f"{resource_type}/{remote_id or resource_id}/_history/{version}",) if version else (),
        )

    # ------------------------------------------------------------------------------- Poller

    def poll(self, cursor: str | None, limit: int) -> PollBatch:
        try:
            state = PollCursor.decode(cursor)
        except ValueError as exc:
            raise PermanentError(f"invalid {self.slug} poll cursor: {exc}") from None
        items: list[PolledItem] = []
        pages = 0
        for resource_type in self.config.resource_types:
            if len(items) >= limit or pages >= _MAX_PAGES_PER_POLL:
                break
            params = {"_sort": "_lastUpdated", "_count": str(self.config.page_size)}
            mark = state.marks.get(resource_type)
            if mark is not None:
                params["_lastUpdated"] = f"ge{mark.since}"
            url: str | None = f"{self._base}/{resource_type}"
            query: dict[str, str] | None = params
            visited: set[str] = set()
            previous = None  # the lastUpdated of the previous match, to check the sort order
            while url is not None and len(items) < limit and pages < _MAX_PAGES_PER_POLL:
                pages += 1
                what = f"FHIR GET {self._target} {resource_type} search (page {len(visited) + 1})"
                bundle = self._search_page(url, query, what)
                visited.add(url if query is None else str(httpx.URL(url, params=query)))
                for resource in matches(bundle, resource_type, what):
                    external_id, last_updated, instant = _identify(resource, resource_type, what)
                    if previous is not None and instant < previous:
                        raise PermanentError(
                            f"{what}: results are not sorted by _lastUpdated "
                            "(does the server support _sort=_lastUpdated?)"
                        )
                    previous = instant
                    mark = state.marks.get(resource_type)
                    if mark is not None and mark.covers(instant, external_id):
                        continue  # returned by an earlier poll (the boundary of a ge search)
                    items.append(PolledItem(external_id, jsonio.dumpb(resource), FHIR_JSON))
                    state.advance(resource_type, last_updated, instant, external_id)
                    if len(items) >= limit:
                        break
                url, query = self._fhir.next_link(bundle, url, what), None
                if url is not None and url in visited:
                    raise PermanentError(f"{what}: the next link points back to a page already read")
        return PollBatch(items=items, next_cursor=state.encode())

    def _search_page(self, url: str, params: Mapping[str, str] | None, what: str) -> dict[str, Any]:
        return self._fhir.search_page(url, params, what, limit=_PAGE_BODY_LIMIT)

    # ------------------------------------------------------------------------ HealthChecker

    def health(self) -> HealthResult:
        what = f"FHIR GET {self._target} metadata"
        started = time.perf_counter()
        try:
            answer = self._fhir.exchange("GET", f"{self._base}/metadata", what=what, limit=_METADATA_LIMIT)
        except ConnectorError as exc:
            return HealthResult(ok=False, detail=exc.message, duration_ms=ms_since(started))
        if answer.status != 200:
            error = status_error(answer, what)
            detail = error.message if error is not None else f"{what} -> {answer.status} (expected 200)"
            return HealthResult(ok=False, detail=detail, duration_ms=answer.duration_ms)
        statement = json_object(answer.body) if answer.complete else None
        kind = describe(statement)
        if statement is None or statement.get("resourceType") != "CapabilityStatement":
            return HealthResult(
                ok=False,
                detail=f"{what} -> 200 but {kind}, not a CapabilityStatement",
                duration_ms=answer.duration_ms,
            )
        version = statement.get("fhirVersion")
        suffix = f" (FHIR {excerpt(version, 20)})" if isinstance(version, str) else ""
        return HealthResult(
            ok=True, detail=f"{what} -> 200 CapabilityStatement{suffix}", duration_ms=answer.duration_ms
        )

    # -------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> FhirRestConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------- helpers


def _identify(resource: Mapping[str, Any], resource_type: str, what: str) -> tuple[str, str, datetime]:
    """(external id, meta.lastUpdated as written, its datetime) of one polled resource."""
    resource_id = resource.get("id")
    if not isinstance(resource_id, str) or not FHIR_ID.fullmatch(resource_id):
        raise PermanentError(f"{what}: a {resource_type} without a valid id")
    meta = resource.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    last_updated = meta.get("lastUpdated")
    instant = parse_instant(last_updated)
    if instant is None:
        raise PermanentError(f"{what}: {resource_type}/{resource_id} has no valid meta.lastUpdated")
    assert isinstance(last_updated, str)
    version = meta.get("versionId")
    if not isinstance(version, str) or not FHIR_ID.fullmatch(version):
        version = last_updated  # an unversioned server: each change has its own instant
    return f"{resource_type}/{resource_id}/_history/{version}", last_updated, instant
