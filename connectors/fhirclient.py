"""The FHIR R4 HTTP client shared by the FHIR connectors (``fhir_rest``, ``fhir_emr``).

:class:`FhirClient` sends one request at a time on the connector's ``httpx.Client`` and reads at most
a given number of bytes of the answer (:class:`Answer`), retrying once after a 401 when the auth
scheme could refresh its credentials. It reads search pages (a ``searchset`` Bundle, checked) and
follows ``next`` links only on the configured scheme, host and port. The functions below read what a
FHIR server answers - the id and version of a written resource, the ``match`` entries of a search -
and turn a status into the :mod:`connectors.base` error tree (:mod:`connectors.httputil`).

Nothing here quotes a payload or the free text of a response: descriptions name types and codes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from connectors.base import ConnectorError, PermanentError, TransientError
from connectors.fhir_rest.auth import FhirAuth
from connectors.fhir_rest.cursor import RESOURCE_TYPE
from connectors.httputil import error_for_status, excerpt, ms_since, read_capped, safe_target, translate_transport_error
from mappings.fhir import jsonio

__all__ = [
    "FHIR_ID",
    "FHIR_JSON",
    "NOT_A_RESOURCE",
    "Answer",
    "FhirClient",
    "describe",
    "escape_search_value",
    "json_object",
    "matches",
    "origin",
    "raise_for_status",
    "remote_ref",
    "resource_ref",
    "status_error",
]

FHIR_JSON = "application/fhir+json"
NOT_A_RESOURCE = "payload is not a FHIR resource with an id"
#: a FHIR ``id`` (R4 ``id`` datatype)
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

_LOCATION = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<vid>[^/]+))?/?$"
)
_ERROR_BODY_LIMIT = 64 * 1024  # an OperationOutcome; only its issue codes are quoted
_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers and at most the asked-for number of body bytes."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes
    complete: bool
    duration_ms: float


class FhirClient:
    """Requests to one FHIR base on a connector's ``httpx.Client``, authenticated by ``auth``."""

    def __init__(self, client: httpx.Client, base: str, auth: FhirAuth, *, timeout: float) -> None:
        self.client = client
        self.base = base.rstrip("/")
        self.target = safe_target(self.base)
        self.origin = origin(self.base)
        self.auth = auth
        self.timeout = timeout

    def exchange(
        self,
        method: str,
        url: str,
        *,
        what: str,
        limit: int,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """One request (plus one retry after a 401 if the auth scheme refreshed its credentials)."""
        started = time.perf_counter()
        retried = False
        while True:
            request_headers = {**(headers or {}), **self.auth.headers()}
            try:
                with self.client.stream(
                    method, url, headers=request_headers, content=content, params=params
                ) as response:
                    data, complete = read_capped(
                        response, limit if response.is_success else _ERROR_BODY_LIMIT
                    )
            except _TRANSPORT_ERRORS as exc:
                raise translate_transport_error(
                    exc, what=what, timeout=self.timeout, duration_ms=ms_since(started)
                ) from None
            if response.status_code == 401 and not retried and self.auth.refresh():
                retried = True
                continue
            return Answer(
                status=response.status_code,
                reason=response.reason_phrase,
                headers=response.headers,
                body=data,
                complete=complete,
                duration_ms=ms_since(started),
            )

    def search_page(self, url: str, params: Mapping[str, str] | None, what: str, *, limit: int) -> dict[str, Any]:
        """One page of a search: a complete ``searchset`` Bundle of at most ``limit`` bytes, or an error."""
        answer = self.exchange("GET", url, what=what, limit=limit, params=params)
        raise_for_status(answer, what)
        if not answer.complete:
            if len(answer.body) >= limit:
                raise PermanentError(
                    f"{what} -> {answer.status}: the page exceeds {limit // 2**20} MiB (lower page_size)",
                    status=answer.status,
                )
            raise TransientError(f"{what} -> {answer.status}: the response was cut off", status=answer.status)
        bundle = json_object(answer.body)
        kind = describe(bundle)
        if kind != "Bundle/searchset":
            raise PermanentError(
                f"{what} -> {answer.status}: expected a searchset Bundle, got {kind}", status=answer.status
            )
        assert bundle is not None
        return bundle

    def next_link(self, bundle: Mapping[str, Any], current: str, what: str) -> str | None:
        """The absolute ``next`` link of a search Bundle; PermanentError if it leaves the configured origin."""
        links = bundle.get("link")
        for link in links if isinstance(links, list) else []:
            if not isinstance(link, dict) or link.get("relation") != "next":
                continue
            href = link.get("url")
            if not isinstance(href, str) or not href:
                return None
            absolute = urljoin(current, href)
            link_origin = origin(absolute)
            if link_origin is None:
                raise PermanentError(f"{what}: the next link is not a valid http(s) URL")
            if link_origin != self.origin:
                raise PermanentError(
                    f"{what}: refusing to follow a next link to another host ({safe_target(absolute)}); "
                    f"expected {self.target}"
                )
            return absolute
        return None


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the default port filled in; None for a non-http(s) or bad URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, parsed.host.lower(), port


def json_object(body: bytes) -> dict[str, Any] | None:
    """The JSON object of a body; None when it is empty, not JSON or not an object."""
    if not body:
        return None
    try:
        value = jsonio.loads(body)
    except (jsonio.InvalidJson, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def describe(value: Mapping[str, Any] | None) -> str:
    """A short, safe description of a response document: "Bundle/history", "OperationOutcome"..."""
    if value is None:
        return "no JSON object"
    kind = value.get("resourceType")
    if not isinstance(kind, str):
        return "JSON without a resourceType"
    text = excerpt(kind, 40)
    if kind == "Bundle":
        bundle_type = value.get("type")
        text += "/" + (excerpt(bundle_type, 40) if isinstance(bundle_type, str) else "?")
    return text


def resource_ref(payload: bytes) -> tuple[str, str]:
    """(resourceType, id) of a payload, or PermanentError - before any network call."""
    resource = json_object(payload)
    if resource is not None:
        resource_type, resource_id = resource.get("resourceType"), resource.get("id")
        if (
            isinstance(resource_type, str)
            and RESOURCE_TYPE.fullmatch(resource_type)
            and isinstance(resource_id, str)
            and FHIR_ID.fullmatch(resource_id)
        ):
            return resource_type, resource_id
    raise PermanentError(NOT_A_RESOURCE)


def remote_ref(resource: Mapping[str, Any] | None, headers: httpx.Headers) -> tuple[str | None, str | None]:
    """(id, versionId) from the returned resource, else from ``Location``/``ETag``."""
    remote_id = version = None
    if resource is not None:
        value = resource.get("id")
        if isinstance(value, str) and value:
            remote_id = excerpt(value, 64)
        meta = resource.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("versionId"), str):
            version = excerpt(meta["versionId"], 64)
    location = headers.get("Location") or headers.get("Content-Location")
    match = _LOCATION.search(location.split("?", 1)[0]) if location else None
    if match is not None:
        remote_id = remote_id or match["id"]
        version = version or (excerpt(match["vid"], 64) if match["vid"] else None)
    elif remote_id is None and location:
        remote_id = excerpt(location) or None
    etag = headers.get("ETag")
    if version is None and etag:
        version = excerpt(etag.removeprefix("W/").strip('"'), 64) or None
    return remote_id, version


def status_error(answer: Answer, what: str) -> ConnectorError | None:
    """The error for a non-2xx answer (see :func:`connectors.httputil.error_for_status`), None for 2xx."""
    return error_for_status(
        answer.status,
        what=what,
        reason=answer.reason,
        retry_after=answer.headers.get("Retry-After"),
        body=answer.body,
        duration_ms=answer.duration_ms,
    )


def raise_for_status(answer: Answer, what: str) -> None:
    error = status_error(answer, what)
    if error is not None:
        raise error


def matches(bundle: Mapping[str, Any], resource_type: str, what: str) -> Iterator[dict[str, Any]]:
    """The resources of the ``match`` entries of one type (``include``/``outcome`` entries skipped)."""
    entries = bundle.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        raise PermanentError(f"{what}: Bundle.entry is not a list")
    for entry in entries:
        if not isinstance(entry, dict):
            raise PermanentError(f"{what}: a Bundle entry is not an object")
        search = entry.get("search")
        mode = search.get("mode", "match") if isinstance(search, dict) else "match"
        if mode != "match":
            continue
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            raise PermanentError(f"{what}: a Bundle entry has no resource")
        if resource.get("resourceType") != resource_type:
            continue  # e.g. an OperationOutcome warning without a search mode
        yield resource


def escape_search_value(text: str) -> str:
    """FHIR search escaping of a token part: backslash, pipe, comma and dollar."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")
