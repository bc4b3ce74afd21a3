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

    python -m sandboxes.fhir --port 9000 [--bearer-token T --fail-rate 0.2 ...]

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
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from mappings.fhir import FHIR_VERSION, jsonio
from sandboxes.base import (
    MisbehaviourControls,
    SandboxHandler,
    ThreadedHttpSandbox,
    add_misbehaviour_arguments,
    misbehaviour_options,
    serve_until_signalled,
)
from sandboxes.fhir_support import (
    DEFAULT_RESOURCE_TYPES,
    FHIR_JSON,
    PREFIX,
    RESOURCE_ID,
    RESOURCE_TYPE,
    Problem,
    Reply,
    as_instant,
    date_filter,
    format_instant,
    has_identifier,
    identifier_token,
    json_reply,
    non_negative_param,
    order_key,
    outcome_issue,
    outcome_reply,
    quote,
    single_param,
)

__all__ = [
    "DEFAULT_RESOURCE_TYPES",
    "FhirSandboxControls",
    "SandboxFhirServer",
    "SandboxRequest",
    "main",
]

MAX_COUNT = 1000
DEFAULT_COUNT = 20
_SEARCH_PARAMS = frozenset({"_lastUpdated", "_sort", "_count", "_offset", "identifier", "_format"})


# ------------------------------------------------------------------------------------ controls


@dataclass(frozen=True)
class FhirSandboxControls(MisbehaviourControls):
    """How the sandbox misbehaves (see :class:`~sandboxes.base.MisbehaviourControls`), plus its own."""

    diagnostics: str | None = None  # OperationOutcome diagnostics of injected errors
    bearer_token: str | None = None  # required as "Authorization: Bearer <token>" when set
    link_base: str | None = None  # base URL written into Bundle links instead of the real one

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.diagnostics is not None and not isinstance(self.diagnostics, str):
            raise ValueError("diagnostics must be null or a string")
        for name in ("bearer_token", "link_base"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.isprintable() or not value):
                raise ValueError(f"{name} must be null or a non-empty printable string")
        if self.link_base is not None and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", self.link_base):
            raise ValueError("link_base must be an http(s) URL without query or fragment")

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
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
class _Remembered:
    fingerprint: str
    reply: Reply


# -------------------------------------------------------------------------------------- server


class SandboxFhirServer(ThreadedHttpSandbox[FhirSandboxControls]):
    """The sandbox FHIR server. ``start()``/``stop()`` or use it as a context manager."""

    controls_class = FhirSandboxControls
    thread_name = "fhir-sandbox"

    def __init__(
        self, port: int = 0, *, resource_types: Iterable[str] = DEFAULT_RESOURCE_TYPES, **controls: Any
    ) -> None:
        types = tuple(resource_types)
        if not types or not all(isinstance(t, str) and RESOURCE_TYPE.fullmatch(t) for t in types):
            raise ValueError("resource_types must be FHIR resource type names")
        self.resource_types = frozenset(types)
        super().__init__(port, **controls)

    @property
    def url(self) -> str:
        """The FHIR base URL: ``http://127.0.0.1:<port>/fhir``."""
        return self.root + PREFIX

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
        instant = as_instant(last_updated) if last_updated is not None else None
        with self._lock:
            resource_id = data.get("id")
            if resource_id is None:
                resource_id = self._new_id()
            if not isinstance(resource_id, str) or not RESOURCE_ID.fullmatch(resource_id):
                raise ValueError("id must be a FHIR id ([A-Za-z0-9-.]{1,64})")
            stored, _ = self._write(resource_type, resource_id, data, instant=instant)
            return copy.deepcopy(stored)

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        """The current version of every resource of a type, oldest ``lastUpdated`` first."""
        with self._lock:
            found = list(self._current.get(resource_type, {}).values())
            return copy.deepcopy(sorted(found, key=order_key))

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
        stamped = format_instant(self._next_instant(instant))
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
        return self._wait_until(lambda: len(self._requests) >= count, timeout)

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

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply | None:
        """Answer one request below ``/fhir`` (``headers`` with lower-case names); None: hang up."""
        parts = urlsplit(target)
        path, query = parts.path, parts.query
        controls, fail, stopped = self._draw()
        if stopped:
            return None  # stopped while hanging
        key = headers.get("idempotency-key") or None
        try:
            reply = self._injected(method, path, headers, key, controls, fail)
            if reply is None:
                reply = self._route(method, path, query, headers, body, key)
        except Problem as problem:
            reply = outcome_reply(problem)
        except Exception as exc:  # a sandbox bug: answer like a server would, not with a reset socket
            reply = outcome_reply(Problem(500, "exception", f"sandbox error ({type(exc).__name__})"))
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
    ) -> Reply | None:
        """The misbehaviour chosen by the controls, if any."""
        status: int | None = None
        if controls.status_override is not None:
            status, default = controls.status_override, "status_override"
        elif controls.bearer_token is not None and path.rstrip("/") != PREFIX + "/metadata":
            if headers.get("authorization") != f"Bearer {controls.bearer_token}":
                problem = Problem(
                    401,
                    "login",
                    "missing or invalid bearer token",
                    {"WWW-Authenticate": 'Bearer realm="fhir"'},
                )
                return replace(outcome_reply(problem), outcome="rejected")
        if status is None and key is not None and key in controls.fail_keys:
            status, default = controls.fail_keys[key], "fail_keys"
        if status is None and fail:
            status, default = 503, "fail_rate"
        if status is None:
            return None
        extra = controls.retry_after_headers(status)
        if 200 <= status <= 299:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [outcome_issue("information", "informational", default)],
            }
            return replace(json_reply(status, outcome), outcome="failed")
        code = "transient" if status in (429, 503) or status >= 500 else "processing"
        problem = Problem(status, code, controls.diagnostics or f"injected by {default}", extra)
        return replace(outcome_reply(problem), outcome="failed")

    def _route(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, key: str | None
    ) -> Reply:
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            raise Problem(404, "not-found", "not a FHIR path (the base is /fhir)")
        segments = [unquote(s) for s in path[len(PREFIX) :].strip("/").split("/") if s]
        if segments == ["metadata"]:
            if method != "GET":
                raise Problem(405, "not-supported", "metadata supports GET only", {"Allow": "GET"})
            return self._metadata()
        if not segments:
            raise Problem(404, "not-supported", "system-level interactions are not supported")
        resource_type = segments[0]
        if resource_type not in self.resource_types:
            raise Problem(404, "not-supported", f"resource type {quote(resource_type)} is not supported")
        if len(segments) > 1 and not RESOURCE_ID.fullmatch(segments[1]):
            raise Problem(400, "value", "invalid resource id")
        if len(segments) == 1:
            if method == "GET":
                return self._search(resource_type, path, query)
            if method == "POST":
                create = partial(self._create, resource_type, headers, body)
                return self._idempotent(method, path, body, key, create)
            raise Problem(405, "not-supported", f"{method} is not supported here", {"Allow": "GET, POST"})
        resource_id = segments[1]
        if len(segments) == 2:
            if method == "GET":
                return self._read(resource_type, resource_id)
            if method == "PUT":
                return self._idempotent(
                    method, path, body, key, partial(self._update, resource_type, resource_id, headers, body)
                )
            raise Problem(405, "not-supported", f"{method} is not supported here", {"Allow": "GET, PUT"})
        if len(segments) == 4 and segments[2] == "_history" and method == "GET":
            return self._vread(resource_type, resource_id, segments[3])
        raise Problem(404, "not-supported", "unsupported interaction")

    def _idempotent(
        self, method: str, path: str, body: bytes, key: str | None, write: Callable[[], Reply]
    ) -> Reply:
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
                raise Problem(422, "conflict", "Idempotency-Key was already used for a different request")
            self._duplicate_keys[key] = self._duplicate_keys.get(key, 0) + 1
            return replace(remembered.reply, outcome="duplicate")

    # ------------------------------------------------------------------- interactions

    def _metadata(self) -> Reply:
        interactions = [{"code": c} for c in ("read", "vread", "update", "create", "search-type")]
        search_params = [
            {"name": "_lastUpdated", "type": "date"},
            {"name": "identifier", "type": "token"},
        ]
        statement = {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": format_instant(datetime.now(UTC)),
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
        return json_reply(200, statement)

    def _parse_body(self, resource_type: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in (FHIR_JSON, "application/json"):
            raise Problem(415, "not-supported", "Content-Type must be application/fhir+json")
        try:
            data = jsonio.loads(body)
        except (jsonio.InvalidJson, RecursionError) as exc:
            raise Problem(400, "structure", f"the body is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise Problem(400, "structure", "the body is not a JSON object")
        if data.get("resourceType") != resource_type:
            raise Problem(400, "invalid", f"resourceType must be {resource_type}")
        if "meta" in data and not isinstance(data["meta"], dict):
            raise Problem(400, "structure", "meta must be an object")
        return data

    def _create(self, resource_type: str, headers: Mapping[str, str], body: bytes) -> Reply:
        data = self._parse_body(resource_type, headers, body)
        with self._lock:
            stored, _ = self._write(resource_type, self._new_id(), data)
            return self._resource_reply(201, stored)

    def _update(
        self, resource_type: str, resource_id: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        data = self._parse_body(resource_type, headers, body)
        if data.get("id") != resource_id:
            raise Problem(400, "invalid", "the resource id must equal the id in the URL")
        with self._lock:
            current = self._current.get(resource_type, {}).get(resource_id)
            if_match = headers.get("if-match")
            if if_match is not None:
                wanted = if_match.strip().removeprefix("W/").strip('"')
                if current is None or current["meta"]["versionId"] != wanted:
                    raise Problem(412, "conflict", "If-Match does not name the current version")
            stored, created = self._write(resource_type, resource_id, data)
            return self._resource_reply(201 if created else 200, stored)

    def _read(self, resource_type: str, resource_id: str) -> Reply:
        with self._lock:
            current = self._current.get(resource_type, {}).get(resource_id)
            if current is None:
                raise Problem(404, "not-found", f"{resource_type}/{resource_id} is not known")
            return self._resource_reply(200, current, location=False)

    def _vread(self, resource_type: str, resource_id: str, version: str) -> Reply:
        with self._lock:
            versions = self._history.get((resource_type, resource_id), [])
            if not version.isdigit() or not 1 <= int(version) <= len(versions):
                what = f"{resource_type}/{resource_id} has no version {quote(version)}"
                raise Problem(404, "not-found", what)
            return self._resource_reply(200, versions[int(version) - 1], location=False)

    def _resource_reply(self, status: int, resource: Mapping[str, Any], *, location: bool = True) -> Reply:
        meta = resource["meta"]
        headers = {
            "Content-Type": FHIR_JSON + "; charset=utf-8",
            "ETag": f'W/"{meta["versionId"]}"',
            "Last-Modified": format_datetime(as_instant(meta["lastUpdated"]), usegmt=True),
        }
        if location:
            base = self._link_base()
            where = f"{resource['resourceType']}/{resource['id']}/_history/{meta['versionId']}"
            headers["Location"] = f"{base}/{where}"
        return Reply(status, headers, jsonio.dumpb(resource))

    def _search(self, resource_type: str, path: str, query: str) -> Reply:
        params = parse_qsl(query, keep_blank_values=True)
        unknown = sorted({name for name, _ in params if name not in _SEARCH_PARAMS})
        if unknown:
            names = ", ".join(map(quote, unknown))
            raise Problem(400, "not-supported", f"unsupported search parameter(s): {names}")
        ranges = [date_filter(value) for name, value in params if name == "_lastUpdated"]
        identifiers = [identifier_token(value) for name, value in params if name == "identifier"]
        sort = single_param(params, "_sort", "_lastUpdated")
        if sort not in ("_lastUpdated", "-_lastUpdated"):
            raise Problem(400, "not-supported", "_sort supports _lastUpdated and -_lastUpdated only")
        count = min(non_negative_param(params, "_count", DEFAULT_COUNT), MAX_COUNT)
        offset = non_negative_param(params, "_offset", 0)
        with self._lock:
            candidates = list(self._current.get(resource_type, {}).values())
            matches = [
                r
                for r in candidates
                if all(test(as_instant(r["meta"]["lastUpdated"])) for test in ranges)
                and all(has_identifier(r, system, value) for system, value in identifiers)
            ]
            matches.sort(key=order_key, reverse=sort.startswith("-"))
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
            "meta": {"lastUpdated": format_instant(datetime.now(UTC))},
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
        return json_reply(200, bundle)

    def _link_base(self) -> str:
        return (self._controls.link_base or self.url).rstrip("/")


# ------------------------------------------------------------------------------------- handler


class _Handler(SandboxHandler):
    server_version = "FhirSandbox/1"
    summary_path = "/_requests"

    def do_PUT(self) -> None:
        body = self._read_body()
        if body is not None:
            self._partner(body)

    do_DELETE = do_PUT
    do_PATCH = do_PUT

    def _partner(self, body: bytes) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.sandbox.handle(self.command, self.path, headers, body)
        if reply is None:
            self.close_connection = True
            return
        self._send(reply.status, reply.headers, reply.body)

    def _refuse(self, status: int, message: str) -> None:
        reply = outcome_reply(Problem(status, "structure" if status == 411 else "too-costly", message))
        self._send(reply.status, reply.headers, reply.body)


# ------------------------------------------------------------------------------------- process


SandboxFhirServer.handler_class = _Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandboxes.fhir", description="Sandbox FHIR R4 server on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--bearer-token", default=None, help="require Authorization: Bearer <token>")
    add_misbehaviour_arguments(parser)
    args = parser.parse_args(argv)
    try:
        emr = SandboxFhirServer(port=args.port, bearer_token=args.bearer_token, **misbehaviour_options(args))
    except ValueError as exc:
        parser.error(str(exc))

    return serve_until_signalled(emr)


if __name__ == "__main__":
    sys.exit(main())

