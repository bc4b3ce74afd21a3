"""A small in-memory FHIR R4 server on 127.0.0.1 that plays a partner EMR, for tests, demos and load runs.

A real HTTP server (``http.server.ThreadingHTTPServer``, daemon threads) that keeps versioned
resources in memory, searches them, dedupes writes by ``Idempotency-Key`` and misbehaves on request.

In process::

    with SandboxFhirServer() as emr:                      # port 0: a free port
        emr.seed({"resourceType": "Patient", "id": "p1"})
        connector = FhirRestConnector({"base_url": emr.url})   # emr.url = http://127.0.0.1:<port>/fhir
        emr.configure(fail_rate=0.2, seed=7, retry_after=3)
        ...
        assert emr.resources("Patient")[0]["meta"]["versionId"] == "1"

As a process (prints its base URL on stdout, runs until SIGTERM or SIGINT)::

    python -m connectors.fhir_rest.sandbox --port 9000 [--bearer-token T --fail-rate 0.2 ...]

FHIR interface (``<base>`` = ``http://127.0.0.1:<port>/fhir``; JSON only, ``application/fhir+json``):

* ``GET <base>/metadata`` - a minimal ``CapabilityStatement`` (never needs a token).
* ``PUT <base>/<type>/<id>`` - create (201) or update (200) with the client's id; ``versionId``
  counts 1, 2, 3...; ``meta.lastUpdated`` has microseconds and strictly increases over all writes.
  ``If-Match: W/"<n>"`` is honoured (412). Answers carry the resource, ``Location`` (with
  ``_history``), ``ETag`` and ``Last-Modified``.
* ``POST <base>/<type>`` - create with a server id (``s000001``, ``s000002``...).
* ``GET <base>/<type>/<id>`` and ``GET <base>/<type>/<id>/_history/<vid>`` - read and vread.
* ``GET <base>/<type>?...`` - search: ``_lastUpdated`` (prefixes ``eq``, ``ge``, ``gt``, ``le``,
  ``lt``; any precision from a year to microseconds; repeatable), ``identifier`` (``system|value``,
  ``|value``, ``system|``, ``value``), ``_sort`` (``_lastUpdated`` or ``-_lastUpdated``; default
  ascending ``lastUpdated`` then id), ``_count`` (default 20, at most 1000), ``_offset``. Answers a
  ``searchset`` Bundle with ``total`` and absolute ``self``/``next``/``previous`` links. Unknown
  parameters are refused (400): a sandbox should expose client mistakes.

Writes with an ``Idempotency-Key`` are remembered: a repeat gets the first answer again (status,
headers, body) and is counted in ``duplicates``; reusing a key for a different request gets 422.
Errors are ``OperationOutcome`` resources.

Misbehaviour (see :class:`FhirSandboxControls`; set with ``configure(...)`` or ``POST /_control``), in
this order: an optional hang (``hang_rate``/``hang_seconds``); ``status_override``; 401 without the
``bearer_token`` when one is set (``/metadata`` excepted); ``fail_keys[Idempotency-Key]``; 503 for a
``fail_rate`` share of requests (``random.Random(seed)``: the same sequence fails the same way on
every run). Injected 429/503 answers carry ``Retry-After: <retry_after>`` when it is set, and injected
errors carry ``diagnostics`` in their OperationOutcome. ``link_base`` replaces the base URL in Bundle
links (a server behind a misconfigured proxy).

Outside ``/fhir``: ``GET /_requests`` (JSON summary), ``POST /_control`` (JSON object of controls),
``POST /_reset`` (forget resources and records, restore the starting controls, re-seed).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from connectors.sandboxing import ThreadedHttpSandbox, serve_until_signalled
from mappings.fhir import FHIR_VERSION, jsonio

__all__ = [
    "DEFAULT_RESOURCE_TYPES",
    "FhirSandboxControls",
    "SandboxFhirServer",
    "SandboxRequest",
    "main",
]

HOST = "127.0.0.1"
PREFIX = "/fhir"
FHIR_JSON = "application/fhir+json"
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_COUNT = 1000
DEFAULT_COUNT = 20

#: What the sandbox EMR stores unless told otherwise (``resource_types=``); others get 404.
DEFAULT_RESOURCE_TYPES: tuple[str, ...] = (
    "AllergyIntolerance",
    "Appointment",
    "Binary",
    "CarePlan",
    "CareTeam",
    "Claim",
    "ClaimResponse",
    "Communication",
    "CommunicationRequest",
    "Composition",
    "Condition",
    "Consent",
    "Coverage",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Endpoint",
    "EpisodeOfCare",
    "ExplanationOfBenefit",
    "Goal",
    "HealthcareService",
    "Location",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "ServiceRequest",
    "Task",
)

_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_SEARCH_PARAMS = frozenset({"_lastUpdated", "_sort", "_count", "_offset", "identifier", "_format"})
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_DATE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


# ------------------------------------------------------------------------------------ controls


@dataclass(frozen=True)
class FhirSandboxControls:
    """How the sandbox misbehaves. Rates are shares of FHIR requests in [0, 1]."""

    fail_rate: float = 0.0  # answered 503
    hang_rate: float = 0.0  # sleep hang_seconds before answering
    hang_seconds: float = 0.0
    status_override: int | None = None  # answer every FHIR request with this status
    fail_keys: Mapping[str, int] = field(default_factory=dict)  # Idempotency-Key -> status
    retry_after: float | str | None = None  # Retry-After on injected 429/503 (seconds or HTTP-date)
    diagnostics: str | None = None  # OperationOutcome diagnostics of injected errors
    bearer_token: str | None = None  # required as "Authorization: Bearer <token>" when set
    link_base: str | None = None  # base URL written into Bundle links instead of the real one
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("fail_rate", "hang_rate"):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1")
        if not _is_number(self.hang_seconds) or not 0.0 <= self.hang_seconds <= 600:
            raise ValueError("hang_seconds must be a number between 0 and 600")
        if self.status_override is not None and not _is_status(self.status_override):
            raise ValueError("status_override must be null or an HTTP status between 200 and 599")
        if not isinstance(self.fail_keys, Mapping) or not all(
            isinstance(k, str) and _is_status(v) for k, v in self.fail_keys.items()
        ):
            raise ValueError("fail_keys must map idempotency keys to HTTP statuses between 200 and 599")
        object.__setattr__(self, "fail_keys", dict(self.fail_keys))
        retry_after = self.retry_after
        if isinstance(retry_after, str):
            valid = bool(retry_after) and retry_after.isprintable() and retry_after.isascii()
        else:
            valid = retry_after is None or (_is_number(retry_after) and retry_after >= 0)
        if not valid:
            raise ValueError("retry_after must be null, non-negative seconds or an HTTP-date string")
        if self.diagnostics is not None and not isinstance(self.diagnostics, str):
            raise ValueError("diagnostics must be null or a string")
        for name in ("bearer_token", "link_base"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.isprintable() or not value):
                raise ValueError(f"{name} must be null or a non-empty printable string")
        if self.link_base is not None and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", self.link_base):
            raise ValueError("link_base must be an http(s) URL without query or fragment")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError("seed must be an integer")

    def updated(self, updates: Mapping[str, Any]) -> FhirSandboxControls:
        """A copy with ``updates`` applied; ``fail_keys`` may be a list plus ``fail_keys_status``."""
        changes = dict(updates)
        keys_status = changes.pop("fail_keys_status", 503)
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown control(s): {', '.join(unknown)}")
        keys = changes.get("fail_keys")
        if keys is not None and not isinstance(keys, Mapping):
            if isinstance(keys, str) or not isinstance(keys, Iterable):
                raise ValueError("fail_keys must be an object or a list of keys")
            changes["fail_keys"] = {str(key): keys_status for key in keys}
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["bearer_token"] is not None:
            data["bearer_token"] = "**********"
        return data


@dataclass(frozen=True)
class SandboxRequest:
    """One FHIR request the sandbox answered. ``outcome``: ok, duplicate, rejected, failed, error."""

    method: str
    path: str  # below the server root, e.g. /fhir/Patient/p1
    query: str
    idempotency_key: str | None
    correlation_id: str | None
    content_type: str | None
    status: int
    outcome: str
    received_at: float
    body: bytes = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # lower-case names

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "idempotency_key": self.idempotency_key,
            "correlation_id": self.correlation_id,
            "content_type": self.content_type,
            "status": self.status,
            "outcome": self.outcome,
            "received_at": self.received_at,
            "bytes": len(self.body),
            "sha256": hashlib.sha256(self.body).hexdigest(),
        }


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    outcome: str = "ok"


@dataclass(frozen=True)
class _Remembered:
    fingerprint: str
    reply: _Reply


class _Problem(Exception):
    """An error answer: becomes an OperationOutcome."""

    def __init__(self, status: int, code: str, diagnostics: str, headers: Mapping[str, str] | None = None):
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.headers = dict(headers or {})


# -------------------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emr: SandboxFhirServer

    def handle_error(self, request: Any, client_address: Any) -> None:  # no tracebacks on stderr
        pass


class SandboxFhirServer(ThreadedHttpSandbox):
    """The sandbox FHIR server. ``start()``/``stop()`` or use it as a context manager."""

    _owner_attr = "emr"
    _thread_name = "fhir-sandbox"

    def __init__(
        self, port: int = 0, *, resource_types: Iterable[str] = DEFAULT_RESOURCE_TYPES, **controls: Any
    ) -> None:
        types = tuple(resource_types)
        if not types or not all(isinstance(t, str) and _TYPE.fullmatch(t) for t in types):
            raise ValueError("resource_types must be FHIR resource type names")
        self.port = port
        self.resource_types = frozenset(types)
        self._initial = FhirSandboxControls().updated(controls)
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._set_controls(self._initial)
        self._clear()

    # ------------------------------------------------------------------------- lifecycle


    @property
    def url(self) -> str:
        """The FHIR base URL: ``http://127.0.0.1:<port>/fhir``."""
        return self.root + PREFIX

    # -------------------------------------------------------------------------- controls

    @property
    def controls(self) -> FhirSandboxControls:
        with self._lock:
            return self._controls

    def configure(self, **updates: Any) -> FhirSandboxControls:
        """Change controls (see :class:`FhirSandboxControls`); a new ``seed`` re-seeds the generators."""
        with self._lock:
            controls = self._controls.updated(updates)
            self._set_controls(controls, reseed="seed" in updates)
            return controls

    def reset(self) -> None:
        """Forget resources and records, restore the starting controls, re-seed."""
        with self._lock:
            self._set_controls(self._initial)
            self._clear()

    def _set_controls(self, controls: FhirSandboxControls, *, reseed: bool = True) -> None:
        self._controls = controls
        if reseed:
            self._fail_rng = random.Random(controls.seed)
            self._hang_rng = random.Random(controls.seed + 1)

    def _clear(self) -> None:
        self._current: dict[str, dict[str, dict[str, Any]]] = {}
        self._history: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._last_instant = datetime(1970, 1, 1, tzinfo=UTC)
        self._server_ids = 0
        self._requests: list[SandboxRequest] = []
        self._remembered: dict[str, _Remembered] = {}
        self._duplicate_keys: dict[str, int] = {}

    # ------------------------------------------------------------------------------ data

    def seed(
        self, resource: Mapping[str, Any], *, last_updated: str | datetime | None = None
    ) -> dict[str, Any]:
        """Store ``resource`` as if it were PUT (a server id if it has none); returns the stored copy.

        ``last_updated`` pins ``meta.lastUpdated`` (e.g. several resources stamped with one instant, as
        a transaction does); later writes still get later instants.
        """
        data = jsonio.loads(jsonio.dumpb(resource))  # a deep copy with the sandbox's number types
        if not isinstance(data, dict):
            raise ValueError("a resource is a JSON object")
        resource_type = data.get("resourceType")
        if not isinstance(resource_type, str) or resource_type not in self.resource_types:
            raise ValueError("resourceType is missing or not supported by this sandbox")
        instant = _as_instant(last_updated) if last_updated is not None else None
        with self._lock:
            resource_id = data.get("id")
            if resource_id is None:
                resource_id = self._new_id()
            if not isinstance(resource_id, str) or not _ID.fullmatch(resource_id):
                raise ValueError("id must be a FHIR id ([A-Za-z0-9-.]{1,64})")
            stored, _ = self._write(resource_type, resource_id, data, instant=instant)
            return copy.deepcopy(stored)

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        """The current version of every resource of a type, oldest ``lastUpdated`` first."""
        with self._lock:
            found = list(self._current.get(resource_type, {}).values())
            return copy.deepcopy(sorted(found, key=_order_key))

    def resource(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._current.get(resource_type, {}).get(resource_id)
            return copy.deepcopy(found) if found is not None else None

    def history(self, resource_type: str, resource_id: str) -> list[dict[str, Any]]:
        """Every version of one resource, oldest first."""
        with self._lock:
            return copy.deepcopy(self._history.get((resource_type, resource_id), []))

    def _new_id(self) -> str:
        self._server_ids += 1
        return f"s{self._server_ids:06d}"

    def _next_instant(self, pinned: datetime | None) -> datetime:
        if pinned is not None:
            self._last_instant = max(self._last_instant, pinned)
            return pinned
        now = datetime.now(UTC)
        instant = max(now, self._last_instant + timedelta(microseconds=1))
        self._last_instant = instant
        return instant

    def _write(
        self, resource_type: str, resource_id: str, data: dict[str, Any], *, instant: datetime | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Store a new version (lock held): (stored resource, created?)."""
        versions = self._history.setdefault((resource_type, resource_id), [])
        created = not versions
        meta = data.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        stamped = _format_instant(self._next_instant(instant))
        stored = {
            "resourceType": resource_type,
            "id": resource_id,
            "meta": {**meta, "versionId": str(len(versions) + 1), "lastUpdated": stamped},
            **{k: v for k, v in data.items() if k not in ("resourceType", "id", "meta")},
        }
        versions.append(stored)
        self._current.setdefault(resource_type, {})[resource_id] = stored
        return stored, created

    # --------------------------------------------------------------------------- records

    @property
    def requests(self) -> list[SandboxRequest]:
        """Every FHIR request answered, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def duplicates(self) -> int:
        """Writes answered from the idempotency record (a repeated ``Idempotency-Key``)."""
        with self._lock:
            return sum(self._duplicate_keys.values())

    @property
    def duplicate_keys(self) -> dict[str, int]:
        with self._lock:
            return dict(self._duplicate_keys)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` FHIR requests were answered; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._requests) >= count, timeout=timeout)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            requests = list(self._requests)
            counts = {t: len(r) for t, r in sorted(self._current.items())}
            versions = sum(len(v) for v in self._history.values())
            duplicate_keys = dict(self._duplicate_keys)
            controls = self._controls
        return {
            "requests": len(requests),
            "resources": counts,
            "versions": versions,
            "duplicates": sum(duplicate_keys.values()),
            "duplicate_keys": duplicate_keys,
            "failed": sum(1 for r in requests if r.outcome in ("failed", "rejected")),
            "items": [r.to_json() for r in requests],
            "controls": controls.to_json(),
        }

    # -------------------------------------------------------------------------- handling

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        """Answer one request below ``/fhir`` (``headers`` with lower-case names); None: hang up."""
        parts = urlsplit(target)
        path, query = parts.path, parts.query
        with self._lock:
            controls = self._controls
            hang = controls.hang_rate > 0 and self._hang_rng.random() < controls.hang_rate
            fail = controls.fail_rate > 0 and self._fail_rng.random() < controls.fail_rate
        if hang and self._stopping.wait(controls.hang_seconds):
            return None  # stopped while hanging
        key = headers.get("idempotency-key") or None
        try:
            reply = self._injected(method, path, headers, key, controls, fail)
            if reply is None:
                reply = self._route(method, path, query, headers, body, key)
        except _Problem as problem:
            reply = _outcome_reply(problem)
        except Exception as exc:  # a sandbox bug: answer like a server would, not with a reset socket
            reply = _outcome_reply(_Problem(500, "exception", f"sandbox error ({type(exc).__name__})"))
        with self._lock:
            self._requests.append(
                SandboxRequest(
                    method=method,
                    path=path,
                    query=query,
                    idempotency_key=key,
                    correlation_id=headers.get("x-correlation-id"),
                    content_type=headers.get("content-type"),
                    status=reply.status,
                    outcome=reply.outcome,
                    received_at=time.time(),
                    body=body,
                    headers=dict(headers),
                )
            )
            self._lock.notify_all()
        return reply

    def _injected(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        key: str | None,
        controls: FhirSandboxControls,
        fail: bool,
    ) -> _Reply | None:
        """The misbehaviour chosen by the controls, if any."""
        status: int | None = None
        if controls.status_override is not None:
            status, default = controls.status_override, "status_override"
        elif controls.bearer_token is not None and path.rstrip("/") != PREFIX + "/metadata":
            if headers.get("authorization") != f"Bearer {controls.bearer_token}":
                problem = _Problem(
                    401,
                    "login",
                    "missing or invalid bearer token",
                    {"WWW-Authenticate": 'Bearer realm="fhir"'},
                )
                return replace(_outcome_reply(problem), outcome="rejected")
        if status is None and key is not None and key in controls.fail_keys:
            status, default = controls.fail_keys[key], "fail_keys"
        if status is None and fail:
            status, default = 503, "fail_rate"
        if status is None:
            return None
        extra: dict[str, str] = {}
        if status in (429, 503) and controls.retry_after is not None:
            value = controls.retry_after
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            extra["Retry-After"] = str(value)
        if 200 <= status <= 299:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [_issue("information", "informational", default)],
            }
            return replace(_json_reply(status, outcome), outcome="failed")
        code = "transient" if status in (429, 503) or status >= 500 else "processing"
        problem = _Problem(status, code, controls.diagnostics or f"injected by {default}", extra)
        return replace(_outcome_reply(problem), outcome="failed")

    def _route(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, key: str | None
    ) -> _Reply:
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            raise _Problem(404, "not-found", "not a FHIR path (the base is /fhir)")
        segments = [unquote(s) for s in path[len(PREFIX) :].strip("/").split("/") if s]
        if segments == ["metadata"]:
            if method != "GET":
                raise _Problem(405, "not-supported", "metadata supports GET only", {"Allow": "GET"})
            return self._metadata()
        if not segments:
            raise _Problem(404, "not-supported", "system-level interactions are not supported")
        resource_type = segments[0]
        if resource_type not in self.resource_types:
            raise _Problem(404, "not-supported", f"resource type {_quote(resource_type)} is not supported")
        if len(segments) > 1 and not _ID.fullmatch(segments[1]):
            raise _Problem(400, "value", "invalid resource id")
        if len(segments) == 1:
            if method == "GET":
                return self._search(resource_type, path, query)
            if method == "POST":
                create = partial(self._create, resource_type, headers, body)
                return self._idempotent(method, path, body, key, create)
            raise _Problem(405, "not-supported", f"{method} is not supported here", {"Allow": "GET, POST"})
        resource_id = segments[1]
        if len(segments) == 2:
            if method == "GET":
                return self._read(resource_type, resource_id)
            if method == "PUT":
                return self._idempotent(
                    method, path, body, key, partial(self._update, resource_type, resource_id, headers, body)
                )
            raise _Problem(405, "not-supported", f"{method} is not supported here", {"Allow": "GET, PUT"})
        if len(segments) == 4 and segments[2] == "_history" and method == "GET":
            return self._vread(resource_type, resource_id, segments[3])
        raise _Problem(404, "not-supported", "unsupported interaction")

    def _idempotent(
        self, method: str, path: str, body: bytes, key: str | None, write: Callable[[], _Reply]
    ) -> _Reply:
        if key is None:
            return write()
        fingerprint = hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()
        with self._lock:
            remembered = self._remembered.get(key)
            if remembered is None:
                reply = write()
                if 200 <= reply.status <= 299:
                    self._remembered[key] = _Remembered(fingerprint, reply)
                return reply
            if remembered.fingerprint != fingerprint:
                raise _Problem(422, "conflict", "Idempotency-Key was already used for a different request")
            self._duplicate_keys[key] = self._duplicate_keys.get(key, 0) + 1
            return replace(remembered.reply, outcome="duplicate")

    # ------------------------------------------------------------------- interactions

    def _metadata(self) -> _Reply:
        interactions = [{"code": c} for c in ("read", "vread", "update", "create", "search-type")]
        search_params = [
            {"name": "_lastUpdated", "type": "date"},
            {"name": "identifier", "type": "token"},
        ]
        statement = {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": _format_instant(datetime.now(UTC)),
            "publisher": "Therapy Interop Hub sandbox",
            "kind": "instance",
            "software": {"name": "therapy-hub FHIR sandbox", "version": "1"},
            "implementation": {"description": "in-memory partner EMR", "url": self._link_base()},
            "fhirVersion": FHIR_VERSION,
            "format": [FHIR_JSON, "json"],
            "rest": [
                {
                    "mode": "server",
                    "resource": [
                        {
                            "type": t,
                            "versioning": "versioned",
                            "updateCreate": True,
                            "interaction": interactions,
                            "searchParam": search_params,
                        }
                        for t in sorted(self.resource_types)
                    ],
                }
            ],
        }
        return _json_reply(200, statement)

    def _parse_body(self, resource_type: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in (FHIR_JSON, "application/json"):
            raise _Problem(415, "not-supported", "Content-Type must be application/fhir+json")
        try:
            data = jsonio.loads(body)
        except (jsonio.InvalidJson, RecursionError) as exc:
            raise _Problem(400, "structure", f"the body is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise _Problem(400, "structure", "the body is not a JSON object")
        if data.get("resourceType") != resource_type:
            raise _Problem(400, "invalid", f"resourceType must be {resource_type}")
        if "meta" in data and not isinstance(data["meta"], dict):
            raise _Problem(400, "structure", "meta must be an object")
        return data

    def _create(self, resource_type: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        data = self._parse_body(resource_type, headers, body)
        with self._lock:
            stored, _ = self._write(resource_type, self._new_id(), data)
            return self._resource_reply(201, stored)

    def _update(
        self, resource_type: str, resource_id: str, headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        data = self._parse_body(resource_type, headers, body)
        if data.get("id") != resource_id:
            raise _Problem(400, "invalid", "the resource id must equal the id in the URL")
        with self._lock:
            current = self._current.get(resource_type, {}).get(resource_id)
            if_match = headers.get("if-match")
            if if_match is not None:
                wanted = if_match.strip().removeprefix("W/").strip('"')
                if current is None or current["meta"]["versionId"] != wanted:
                    raise _Problem(412, "conflict", "If-Match does not name the current version")
            stored, created = self._write(resource_type, resource_id, data)
            return self._resource_reply(201 if created else 200, stored)

    def _read(self, resource_type: str, resource_id: str) -> _Reply:
        with self._lock:
            current = self._current.get(resource_type, {}).get(resource_id)
            if current is None:
                raise _Problem(404, "not-found", f"{resource_type}/{resource_id} is not known")
            return self._resource_reply(200, current, location=False)

    def _vread(self, resource_type: str, resource_id: str, version: str) -> _Reply:
        with self._lock:
            versions = self._history.get((resource_type, resource_id), [])
            if not version.isdigit() or not 1 <= int(version) <= len(versions):
                what = f"{resource_type}/{resource_id} has no version {_quote(version)}"
                raise _Problem(404, "not-found", what)
            return self._resource_reply(200, versions[int(version) - 1], location=False)

    def _resource_reply(self, status: int, resource: Mapping[str, Any], *, location: bool = True) -> _Reply:
        meta = resource["meta"]
        headers = {
            "Content-Type": FHIR_JSON + "; charset=utf-8",
            "ETag": f'W/"{meta["versionId"]}"',
            "Last-Modified": format_datetime(_as_instant(meta["lastUpdated"]), usegmt=True),
        }
        if location:
            base = self._link_base()
            where = f"{resource['resourceType']}/{resource['id']}/_history/{meta['versionId']}"
            headers["Location"] = f"{base}/{where}"
        return _Reply(status, headers, jsonio.dumpb(resource))

    def _search(self, resource_type: str, path: str, query: str) -> _Reply:
        params = parse_qsl(query, keep_blank_values=True)
        unknown = sorted({name for name, _ in params if name not in _SEARCH_PARAMS})
        if unknown:
            names = ", ".join(map(_quote, unknown))
            raise _Problem(400, "not-supported", f"unsupported search parameter(s): {names}")
        ranges = [_date_filter(value) for name, value in params if name == "_lastUpdated"]
        identifiers = [_token(value) for name, value in params if name == "identifier"]
        sort = _single(params, "_sort", "_lastUpdated")
        if sort not in ("_lastUpdated", "-_lastUpdated"):
            raise _Problem(400, "not-supported", "_sort supports _lastUpdated and -_lastUpdated only")
        count = min(_non_negative(params, "_count", DEFAULT_COUNT), MAX_COUNT)
        offset = _non_negative(params, "_offset", 0)
        with self._lock:
            candidates = list(self._current.get(resource_type, {}).values())
            matches = [
                r
                for r in candidates
                if all(test(_as_instant(r["meta"]["lastUpdated"])) for test in ranges)
                and all(_has_identifier(r, system, value) for system, value in identifiers)
            ]
            matches.sort(key=_order_key, reverse=sort.startswith("-"))
            page = copy.deepcopy(matches[offset : offset + count])
        base = self._link_base()
        kept = [(n, v) for n, v in params if n not in ("_count", "_offset")]

        def link(relation: str, at: int) -> dict[str, str]:
            q = urlencode([*kept, ("_count", str(count)), ("_offset", str(at))])
            return {"relation": relation, "url": f"{base}/{resource_type}?{q}"}

        links = [link("self", offset)]
        if count and offset + count < len(matches):
            links.append(link("next", offset + count))
        if count and offset > 0:
            links.append(link("previous", max(0, offset - count)))
        bundle = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": _format_instant(datetime.now(UTC))},
            "type": "searchset",
            "total": len(matches),
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{base}/{resource_type}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in page
            ],
        }
        return _json_reply(200, bundle)

    def _link_base(self) -> str:
        return (self._controls.link_base or self.url).rstrip("/")


# ------------------------------------------------------------------------------------- helpers


def _format_instant(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_instant(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("last_updated must be timezone-aware")
        return value.astimezone(UTC)
    lo, _ = _date_range(value)
    return lo


def _order_key(resource: Mapping[str, Any]) -> tuple[datetime, str]:
    return _as_instant(resource["meta"]["lastUpdated"]), resource["id"]


def _date_range(value: str) -> tuple[datetime, datetime]:
    """The interval [lo, hi) a FHIR date/dateTime/instant covers, by its precision (UTC if no zone)."""
    match = _DATE.fullmatch(value)
    if match is None:
        raise ValueError("not a FHIR date")
    year = int(match["year"])
    month, day = int(match["month"] or 1), int(match["day"] or 1)
    hour, minute, second = int(match["hour"] or 0), int(match["minute"] or 0), int(match["second"] or 0)
    fraction = match["fraction"] or ""
    zone = match["zone"]
    tz = UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    lo = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    if match["month"] is None:
        hi = lo.replace(year=year + 1)
    elif match["day"] is None:
        hi = lo.replace(year=year + month // 12, month=month % 12 + 1)
    elif match["hour"] is None:
        hi = lo + timedelta(days=1)
    elif match["second"] is None:
        hi = lo + timedelta(minutes=1)
    elif not fraction:
        hi = lo + timedelta(seconds=1)
    else:
        hi = lo + timedelta(microseconds=10 ** max(0, 6 - len(fraction)))
    return lo.astimezone(UTC), hi.astimezone(UTC)


def _date_filter(raw: str) -> Any:
    prefix, value = (raw[:2], raw[2:]) if raw[:2] in _PREFIXES else ("eq", raw)
    try:
        lo, hi = _date_range(value)
    except ValueError:
        raise _Problem(400, "value", f"_lastUpdated: {_quote(raw)} is not a FHIR date") from None
    tests = {
        "eq": lambda t: lo <= t < hi,
        "ge": lambda t: t >= lo,
        "gt": lambda t: t >= hi,
        "le": lambda t: t < hi,
        "lt": lambda t: t < lo,
    }
    if prefix not in tests:
        raise _Problem(400, "not-supported", f"_lastUpdated prefix {prefix} is not supported")
    return tests[prefix]


def _token(value: str) -> tuple[str | None, str | None]:
    """``system|value`` -> (system, value); ``|value`` -> ("", value); ``value`` -> (None, value)."""
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    return system, code or None


def _has_identifier(resource: Mapping[str, Any], system: str | None, value: str | None) -> bool:
    identifiers = resource.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if not isinstance(identifier, dict):
            continue
        if system is not None and (identifier.get("system") or "") != system:
            continue
        if value is not None and identifier.get("value") != value:
            continue
        return True
    return False


def _single(params: Sequence[tuple[str, str]], name: str, default: str) -> str:
    values = [v for n, v in params if n == name]
    if len(values) > 1:
        raise _Problem(400, "value", f"{name} may appear once")
    return values[0] if values else default


def _non_negative(params: Sequence[tuple[str, str]], name: str, default: int) -> int:
    raw = _single(params, name, str(default))
    if not raw.isdigit() or len(raw) > 9:
        raise _Problem(400, "value", f"{name} must be a non-negative integer")
    return int(raw)


def _quote(value: str) -> str:
    return repr(value[:64])


def _issue(severity: str, code: str, diagnostics: str) -> dict[str, str]:
    return {"severity": severity, "code": code, "diagnostics": diagnostics}


def _json_reply(status: int, value: Any) -> _Reply:
    return _Reply(status, {"Content-Type": FHIR_JSON + "; charset=utf-8"}, jsonio.dumpb(value))


def _plain(status: int, value: Any, headers: Mapping[str, str] | None = None) -> _Reply:
    """A control-endpoint answer (plain JSON)."""
    return _Reply(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(value).encode())


def _outcome_reply(problem: _Problem) -> _Reply:
    issue = _issue("error", problem.code, problem.diagnostics)
    reply = _json_reply(problem.status, {"resourceType": "OperationOutcome", "issue": [issue]})
    return replace(reply, headers={**reply.headers, **problem.headers}, outcome="error")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_status(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= 599


# ------------------------------------------------------------------------------------- handler


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like a real partner: the connector reuses connections
    server_version = "FhirSandbox/1"
    timeout = 30  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms ACK stalls

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def emr(self) -> SandboxFhirServer:
        return self.server.emr

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_requests":
            self._send(_plain(200, self.emr.summary()))
        elif path in ("/_control", "/_reset"):
            self._send(_plain(405, {"error": "use POST"}, {"Allow": "POST"}))
        else:
            self._fhir(b"")

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path == "/_control":
            self._control(body)
        elif path == "/_reset":
            self.emr.reset()
            self._send(_plain(200, {"status": "reset"}))
        else:
            self._fhir(body)

    def do_PUT(self) -> None:
        body = self._read_body()
        if body is not None:
            self._fhir(body)

    def do_DELETE(self) -> None:
        body = self._read_body()
        if body is not None:
            self._fhir(body)

    do_PATCH = do_DELETE

    def _fhir(self, body: bytes) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.emr.handle(self.command, self.path, headers, body)
        if reply is None:
            self.close_connection = True
            return
        self._send(reply)

    def _control(self, body: bytes) -> None:
        try:
            updates = json.loads(body or b"{}")
            if not isinstance(updates, dict):
                raise ValueError("expected a JSON object")
            controls = self.emr.configure(**updates)
        except (ValueError, TypeError) as exc:
            self._send(_plain(400, {"error": str(exc)}))
            return
        self._send(_plain(200, {"controls": controls.to_json()}))

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send(_outcome_reply(_Problem(411, "structure", "Content-Length required")))
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            status = 413 if length > 0 else 400
            self._send(_outcome_reply(_Problem(status, "too-costly", "bad or too large Content-Length")))
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status, _phrase(reply.status))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:  # the client gave up (e.g. its timeout while we hung)
            self.close_connection = True


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


# ------------------------------------------------------------------------------------- process


SandboxFhirServer._server_class = _Server
SandboxFhirServer._handler_class = _Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.fhir_rest.sandbox", description="Sandbox FHIR R4 server on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--bearer-token", default=None, help="require Authorization: Bearer <token>")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=0.0)
    parser.add_argument("--status-override", type=int, default=None)
    parser.add_argument("--retry-after", default=None, help="seconds or an HTTP-date")
    args = parser.parse_args(argv)
    retry_after: float | str | None = args.retry_after
    if isinstance(retry_after, str):
        try:
            retry_after = float(retry_after)
        except ValueError:
            pass
    try:
        emr = SandboxFhirServer(
            port=args.port,
            bearer_token=args.bearer_token,
            seed=args.seed,
            fail_rate=args.fail_rate,
            hang_rate=args.hang_rate,
            hang_seconds=args.hang_seconds,
            status_override=args.status_override,
            retry_after=retry_after,
        )
    except ValueError as exc:
        parser.error(str(exc))

    return serve_until_signalled(emr)


if __name__ == "__main__":
    sys.exit(main())
