"""The FHIR REST connector against the real sandbox FHIR server on 127.0.0.1 (and the sandbox itself)."""

from __future__ import annotations

import email.utils
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import registry
from connectors.base import (
    AuthError,
    ConfigError,
    Connector,
    ConnectorError,
    HealthChecker,
    PermanentError,
    PollBatch,
    Poller,
    Sender,
    TransientError,
    supports_polling,
)
from connectors.fhir_rest import BearerTokenAuth, FhirRestConfig, FhirRestConnector, NoAuth, PollCursor
from sandboxes.fhir import FhirSandboxControls, SandboxFhirServer
from tests.connectors.conftest import free_port, make_delivery

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "sandbox-bearer-token-0123456789"
MakeConnector = Callable[..., FhirRestConnector]


def resource(resource_type: str, resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": resource_type, "id": resource_id, **fields}


def payload(resource_type: str = "Patient", resource_id: str = "p1", **fields: Any) -> bytes:
    return json.dumps(resource(resource_type, resource_id, **fields)).encode()


@pytest.fixture
def emr() -> Iterator[SandboxFhirServer]:
    with SandboxFhirServer() as server:
        yield server


@pytest.fixture
def make_connector() -> Iterator[MakeConnector]:
    made: list[FhirRestConnector] = []

    def factory(base_url: str, **config: Any) -> FhirRestConnector:
        options = {key: config.pop(key) for key in ("transport", "auth") if key in config}
        connector = FhirRestConnector({"base_url": base_url, "timeout_seconds": 2.0, **config}, **options)
        made.append(connector)
        return connector

    yield factory
    for connector in made:
        connector.close()


def poll_all(connector: FhirRestConnector, limit: int, cursor: str | None = None) -> list[PollBatch]:
    """Poll until a batch comes back empty (at most 50 polls)."""
    batches = []
    for _ in range(50):
        batch = connector.poll(cursor, limit)
        batches.append(batch)
        cursor = batch.next_cursor
        if not batch.items:
            return batches
    raise AssertionError("polling does not converge")


def all_versions(emr: SandboxFhirServer, *types: str) -> set[str]:
    return {
        f"{t}/{r['id']}/_history/{v['meta']['versionId']}"
        for t in types
        for r in emr.resources(t)
        for v in emr.history(t, r["id"])
    }


# ------------------------------------------------------------------------------------- send


def test_send_creates_with_our_id(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    body = b'{"resourceType":"Patient","id":"p1","extension":[{"url":"u","valueDecimal":1.50}]}'
    result = make_connector(emr.url).send(make_delivery("job-1", body, correlation_id="corr-9"))

    assert result.status == 201 and result.remote_id == "p1"
    assert "Patient/p1 -> 201" in result.detail and "version 1" in result.detail
    assert "1.50" not in result.detail and result.duration_ms > 0
    [stored] = emr.resources("Patient")
    assert stored["id"] == "p1" and stored["meta"]["versionId"] == "1"
    [request] = emr.requests
    assert (request.method, request.path, request.idempotency_key) == ("PUT", "/fhir/Patient/p1", "job-1")
    assert request.body == body  # sent unchanged
    headers = request.headers
    assert headers["content-type"] == "application/fhir+json"
    assert headers["accept"] == "application/fhir+json"
    assert headers["x-correlation-id"] == "corr-9"
    assert headers["user-agent"].startswith("therapy-hub-fhir-rest/")
    assert "authorization" not in headers


def test_send_updates_as_a_new_version(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    connector = make_connector(emr.url)
    connector.send(make_delivery("job-1", payload(gender="female")))
    result = connector.send(make_delivery("job-2", payload(gender="other")))

    assert result.status == 200 and result.remote_id == "p1" and "version 2" in result.detail
    # what the server now holds, named as poll() will name it: the hub skips it when it comes back
    assert result.written == ("Patient/p1/_history/2",)
    [polled] = connector.poll(None, 10).items
    assert polled.external_id in result.written
    assert [v["gender"] for v in emr.history("Patient", "p1")] == ["female", "other"]
    assert emr.resource("Patient", "p1")["meta"]["versionId"] == "2"  # type: ignore[index]


def test_repeated_key_is_deduped_by_the_server(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    connector = make_connector(emr.url)
    results = [connector.send(make_delivery("job-7", payload())) for _ in range(3)]

    assert [r.status for r in results] == [201, 201, 201]  # the first answer, replayed
    assert {r.remote_id for r in results} == {"p1"}
    assert len(emr.history("Patient", "p1")) == 1
    assert emr.duplicates == 2 and emr.duplicate_keys == {"job-7": 2}


def test_retry_after_a_lost_response_is_a_duplicate(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    """The server stored the resource but answered too late: the retry must not make a version 2."""
    connector = make_connector(emr.url, timeout_seconds=0.2)
    emr.configure(hang_rate=1.0, hang_seconds=0.5)
    with pytest.raises(TransientError):
        connector.send(make_delivery("job-9", payload()))
    emr.configure(hang_rate=0.0)
    assert emr.wait_for_requests(1, timeout=3)

    result = connector.send(make_delivery("job-9", payload()))

    assert result.status == 201
    assert len(emr.history("Patient", "p1")) == 1 and emr.duplicates == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'["Patient", "p1"]',
        b'{"resourceType": "Patient"}',
        b'{"id": "p1", "name": [{"family": "Doe"}]}',
        b'{"resourceType": "Patient", "id": "../metadata"}',
        b'{"resourceType": "Patient", "id": 12}',
        b'{"resourceType": "patient", "id": "p1"}',
        b"\xff\xfe",
    ],
)
def test_a_payload_that_is_not_a_fhir_resource_is_refused_without_a_request(
    emr: SandboxFhirServer, make_connector: MakeConnector, body: bytes
) -> None:
    for base in (emr.url, f"http://127.0.0.1:{free_port()}/fhir"):  # a request would be transient here
        with pytest.raises(PermanentError) as caught:
            make_connector(base).send(make_delivery(payload=body))
        assert str(caught.value) == "payload is not a FHIR resource with an id"
        assert caught.value.status is None
    assert emr.requests == []


# ----------------------------------------------------------------------------- send errors


def test_503_with_retry_after_is_transient(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(fail_rate=1.0, retry_after=7)
    with pytest.raises(TransientError) as caught:
        make_connector(emr.url).send(make_delivery())
    error = caught.value
    assert error.status == 503 and error.retry_after == 7.0 and error.retryable
    assert "503 Service Unavailable" in str(error) and error.duration_ms is not None
    assert emr.resources("Patient") == []


def test_429_with_an_http_date_is_transient(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    emr.configure(fail_keys={"job-1": 429}, retry_after=when)
    with pytest.raises(TransientError) as caught:
        make_connector(emr.url).send(make_delivery("job-1", payload()))
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and 115 <= caught.value.retry_after <= 121


@pytest.mark.parametrize("status", [408, 500, 502, 504])
def test_other_transient_statuses(emr: SandboxFhirServer, make_connector: MakeConnector, status: int) -> None:
    emr.configure(fail_keys={"job-1": status})
    with pytest.raises(TransientError) as caught:
        make_connector(emr.url).send(make_delivery("job-1", payload()))
    assert caught.value.status == status


def test_400_quotes_the_operation_outcome_but_not_the_payload(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    emr.configure(
        status_override=400,
        diagnostics="Patient.birthDate: invalid date\r\n\x1b[31m" + "x" * 500,
    )
    marker = payload(name=[{"family": "Doe-Marker"}], birthDate="1990-13-45")
    with pytest.raises(PermanentError) as caught:
        make_connector(emr.url).send(make_delivery(payload=marker))
    error = caught.value
    message = str(error)
    assert not isinstance(error, AuthError) and error.status == 400 and not error.retryable
    assert message.endswith("-> 400 Bad Request: processing")  # the issue code, not the server's free text
    assert "Doe-Marker" not in message and "1990-13-45" not in message and "birthDate" not in message
    assert all(32 <= ord(ch) < 127 for ch in message)
    assert len(message) < 300


def test_unknown_resource_type_is_permanent_with_the_issue_code(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    with pytest.raises(PermanentError) as caught:
        make_connector(emr.url).send(make_delivery(payload=payload("Spaceship", "x1")))
    assert caught.value.status == 404
    assert str(caught.value).endswith("-> 404 Not Found: not-supported")


def test_401_without_the_token_is_an_auth_error(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    emr.configure(bearer_token=TOKEN)
    with pytest.raises(AuthError) as caught:
        make_connector(emr.url).send(make_delivery(payload=payload()))
    assert caught.value.status == 401 and str(caught.value).endswith("401 Unauthorized: login")
    with pytest.raises(AuthError):
        make_connector(emr.url, bearer_token="a-wrong-token").send(make_delivery(payload=payload()))

    connector = make_connector(emr.url, bearer_token=TOKEN)
    assert connector.send(make_delivery(payload=payload())).status == 201
    assert emr.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(connector) + repr(connector.config) + str(connector.config.model_dump())


def test_403_is_an_auth_error(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(fail_keys={"job-1": 403})
    with pytest.raises(AuthError) as caught:
        make_connector(emr.url).send(make_delivery("job-1", payload()))
    assert caught.value.status == 403


def test_redirects_are_not_followed(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(status_override=307)
    with pytest.raises(PermanentError, match="redirects are not followed"):
        make_connector(emr.url).send(make_delivery(payload=payload()))


def test_hanging_server_times_out_quickly(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(hang_rate=1.0, hang_seconds=5)
    connector = make_connector(emr.url, timeout_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        connector.send(make_delivery(payload=payload()))
    assert time.monotonic() - started < 2
    assert "timed out" in str(caught.value) and caught.value.status is None
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_connection_refused_is_transient(make_connector: MakeConnector) -> None:
    connector = make_connector(f"http://127.0.0.1:{free_port()}/fhir")
    with pytest.raises(TransientError, match="ConnectError"):
        connector.send(make_delivery(payload=payload()))
    with pytest.raises(TransientError, match="ConnectError"):
        connector.poll(None, 10)


class RotatingAuth:
    """A stand-in for an expiring-token scheme (SMART Backend Services): refreshes once on a 401."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.refreshes = 0

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.tokens[0]}"}

    def refresh(self) -> bool:
        self.refreshes += 1
        if len(self.tokens) > 1:
            self.tokens.pop(0)
            return True
        return False


def test_pluggable_auth_is_refreshed_once_after_a_401(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    emr.configure(bearer_token=TOKEN)
    auth = RotatingAuth(["expired-token", TOKEN])
    connector = make_connector(emr.url, auth=auth)

    assert connector.send(make_delivery("job-1", payload())).status == 201
    assert [r.status for r in emr.requests] == [401, 201] and auth.refreshes == 1

    stale = RotatingAuth(["expired-token"])  # nothing fresher to offer: the 401 is final
    with pytest.raises(AuthError):
        make_connector(emr.url, auth=stale).send(make_delivery("job-2", payload()))
    assert stale.refreshes == 1 and [r.status for r in emr.requests] == [401, 201, 401]


def test_auth_schemes_hide_their_secrets() -> None:
    assert NoAuth().headers() == {} and not NoAuth().refresh()
    auth = BearerTokenAuth(TOKEN)
    assert auth.headers() == {"Authorization": f"Bearer {TOKEN}"} and not auth.refresh()
    assert TOKEN not in repr(auth)
    with pytest.raises(ValueError) as caught:
        BearerTokenAuth("bad\r\ntoken")
    assert "bad" not in str(caught.value)


# ------------------------------------------------------------------------------------- poll


def seed_clinic(emr: SandboxFhirServer) -> None:
    """7 Patients, 5 ServiceRequests and 3 Tasks, interleaved in time."""
    for n in range(7):
        emr.seed(resource("Patient", f"p{n}", identifier=[{"system": "urn:mrn", "value": f"M{n}"}]))
        if n < 5:
            emr.seed(resource("ServiceRequest", f"sr{n}", status="active", intent="order"))
        if n < 3:
            emr.seed(resource("Task", f"t{n}", status="requested", intent="order"))


def test_poll_from_the_start_over_several_pages_and_types(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    seed_clinic(emr)
    emr.seed({"resourceType": "Observation", "id": "o1", "status": "final"})  # not polled
    connector = make_connector(emr.url, page_size=3)

    batch = connector.poll(None, 100)

    ids = [item.external_id for item in batch.items]
    assert ids == (
        [f"Patient/p{n}/_history/1" for n in range(7)]
        + [f"ServiceRequest/sr{n}/_history/1" for n in range(5)]
        + [f"Task/t{n}/_history/1" for n in range(3)]
    )
    searches = [r for r in emr.requests if r.method == "GET"]
    assert len(searches) == 3 + 2 + 1  # pages of 3 followed through next links
    first = dict(part.split("=", 1) for part in searches[0].query.split("&"))
    assert first == {"_sort": "_lastUpdated", "_count": "3"}  # no _lastUpdated without a mark
    assert all(item.content_type == "application/fhir+json" for item in batch.items)
    assert json.loads(batch.items[0].payload) == emr.resource("Patient", "p0")
    assert batch.next_cursor is not None
    marks = PollCursor.decode(batch.next_cursor).marks
    assert set(marks) == {"Patient", "ServiceRequest", "Task"}
    assert marks["Task"].since == emr.resource("Task", "t2")["meta"]["lastUpdated"]  # type: ignore[index]

    again = connector.poll(batch.next_cursor, 100)
    assert again.items == [] and again.next_cursor == batch.next_cursor
    resumed = [r for r in emr.requests if r.method == "GET"][len(searches) :]
    assert all("_lastUpdated=ge" in r.query for r in resumed)


def test_poll_respects_the_limit_and_resumes_from_the_cursor(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    seed_clinic(emr)
    connector = make_connector(emr.url, page_size=2)

    batches = poll_all(connector, limit=4)

    assert all(len(b.items) <= 4 for b in batches)
    seen = [item.external_id for b in batches for item in b.items]
    assert set(seen) == all_versions(emr, "Patient", "ServiceRequest", "Task")
    assert len(seen) == len(set(seen)) == 15  # the cursor also drops the boundary repeats


def test_items_sharing_a_last_updated_across_page_and_limit_boundaries_are_not_missed(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    """A transaction stamps many resources with one instant; more of them than fit in a page or a
    batch. ``ge`` brings the boundary back; the hub dedupes by external_id, so the union counts."""
    emr.seed(resource("Task", "t-before"))
    instant = "2030-01-02T03:04:05.123456Z"
    for n in range(7):
        emr.seed(resource("Task", f"t-batch-{n}"), last_updated=instant)
    emr.seed(resource("Task", "t-after"))  # later than the pinned instant
    connector = make_connector(emr.url, page_size=3, resource_types=["Task"])

    batches = poll_all(connector, limit=2)

    seen = [item.external_id for b in batches for item in b.items]
    assert set(seen) == all_versions(emr, "Task") and len(set(seen)) == 9
    assert len(batches) <= 6  # 9 items in batches of 2, then the empty one: progress every time


def test_updates_come_back_as_new_versions(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    seed_clinic(emr)
    connector = make_connector(emr.url)
    cursor = connector.poll(None, 100).next_cursor

    connector.send(make_delivery("job-1", payload("Patient", "p3", gender="female")))
    emr.seed(resource("Task", "t-new", status="requested"))
    emr.seed(resource("Task", "t0", status="accepted"))

    batch = connector.poll(cursor, 100)
    assert [item.external_id for item in batch.items] == [
        "Patient/p3/_history/2",
        "Task/t-new/_history/1",
        "Task/t0/_history/2",
    ]
    assert json.loads(batch.items[0].payload)["gender"] == "female"


def test_poll_payloads_keep_decimal_digits(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    connector = make_connector(emr.url, resource_types=["Observation"])
    body = b'{"resourceType":"Observation","id":"o1","status":"final","valueQuantity":{"value":1.50}}'
    connector.send(make_delivery(payload=body))
    [item] = connector.poll(None, 10).items
    assert b'"value":1.50' in item.payload


def test_poll_honours_retry_after_and_keeps_the_cursor(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    seed_clinic(emr)
    connector = make_connector(emr.url, page_size=3)
    cursor = connector.poll(None, 2).next_cursor

    for status in (429, 503):
        emr.configure(status_override=status, retry_after=30)
        with pytest.raises(TransientError) as caught:
            connector.poll(cursor, 10)
        assert caught.value.status == status and caught.value.retry_after == 30.0

    emr.configure(status_override=None)
    assert len(connector.poll(cursor, 100).items) == 13


def test_poll_auth_error(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(bearer_token=TOKEN)
    with pytest.raises(AuthError):
        make_connector(emr.url).poll(None, 10)
    assert make_connector(emr.url, bearer_token=TOKEN).poll(None, 10).items == []


def test_a_next_link_to_another_host_is_refused(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    seed_clinic(emr)
    connector = make_connector(emr.url, page_size=3)
    for other in (
        "http://other.example:8080/fhir",
        f"http://localhost:{emr.port}/fhir",
        "https://127.0.0.1/fhir",
    ):
        emr.configure(link_base=other)
        before = len(emr.requests)
        with pytest.raises(PermanentError) as caught:
            connector.poll(None, 100)
        assert "refusing to follow a next link to another host" in str(caught.value)
        assert len(emr.requests) == before + 1  # the first page only

    emr.configure(link_base=emr.url + "/")  # same origin, other spelling: fine
    assert len(connector.poll(None, 100).items) == 15


def test_an_invalid_cursor_is_permanent(make_connector: MakeConnector) -> None:
    connector = make_connector("http://127.0.0.1:9/fhir")
    for cursor in (
        "not json",
        "[]",
        '{"v": 2, "types": {}}',
        '{"v": 1, "types": {"Patient": {"since": "x"}}}',
    ):
        with pytest.raises(PermanentError, match="invalid fhir_rest poll cursor"):
            connector.poll(cursor, 10)


def test_a_zero_limit_returns_nothing(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    seed_clinic(emr)
    assert make_connector(emr.url).poll(None, 0).items == []
    assert emr.requests == []


def mock_connector(
    make_connector: MakeConnector, answer: Callable[[httpx.Request], httpx.Response], **config: Any
) -> FhirRestConnector:
    """A connector whose server is a function: for answers the sandbox would never give."""
    return make_connector("http://fhir.test/fhir", transport=httpx.MockTransport(answer), **config)


def bundle(entries: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries, **fields}


def entry(resource_id: str, last_updated: str, version: str | None = "1", **search: str) -> dict[str, Any]:
    meta = {"lastUpdated": last_updated, **({"versionId": version} if version else {})}
    return {"resource": resource("Patient", resource_id, meta=meta), "search": search or {"mode": "match"}}


@pytest.mark.parametrize(
    ("status", "content", "message"),
    [
        (200, {"resourceType": "Bundle", "type": "history", "entry": []}, "got Bundle/history"),
        (200, {"resourceType": "OperationOutcome", "issue": []}, "got OperationOutcome"),
        (200, "<html>maintenance</html>", "got no JSON object"),
        (200, {"resourceType": "Bundle", "type": "searchset", "entry": {}}, "Bundle.entry is not a list"),
        (
            404,
            {"resourceType": "OperationOutcome", "issue": [{"code": "not-found"}]},
            "404 Not Found: not-found",
        ),
    ],
)
def test_a_response_that_is_not_a_searchset_bundle_is_permanent(
    make_connector: MakeConnector, status: int, content: Any, message: str
) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    connector = mock_connector(make_connector, lambda request: httpx.Response(status, text=text))
    with pytest.raises(PermanentError, match=message):
        connector.poll(None, 10)


def test_unsorted_results_are_refused(make_connector: MakeConnector) -> None:
    page = bundle([entry("a", "2024-01-02T00:00:00Z"), entry("b", "2024-01-01T00:00:00Z")])
    connector = mock_connector(make_connector, lambda request: httpx.Response(200, json=page))
    with pytest.raises(PermanentError, match="not sorted by _lastUpdated"):
        connector.poll(None, 10)


def test_included_entries_and_unversioned_servers(make_connector: MakeConnector) -> None:
    page = bundle(
        [
            entry("a", "2024-01-01T00:00:00+02:00", version=None),
            {"resource": {"resourceType": "Organization", "id": "o"}, "search": {"mode": "include"}},
            {"resource": {"resourceType": "OperationOutcome", "issue": []}},
            entry("b", "2024-01-01T00:00:00.5Z"),
        ]
    )
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=page)

    connector = mock_connector(make_connector, answer, resource_types=["Patient"])
    batch = connector.poll(None, 10)
    ids = [item.external_id for item in batch.items if item.external_id.startswith("Patient")]
    assert ids == ["Patient/a/_history/2024-01-01T00:00:00+02:00", "Patient/b/_history/1"]

    connector.poll(batch.next_cursor, 10)
    assert requests[-1].url.params["_lastUpdated"] == "ge2024-01-01T00:00:00.5Z"
    # a "+" in a mark is sent encoded (%2B), not as a space
    cursor = json.dumps({"v": 1, "types": {"Patient": {"since": "2024-01-01T00:00:00+02:00", "seen": []}}})
    connector.poll(cursor, 10)
    assert "ge2024-01-01T00%3A00%3A00%2B02%3A00" in str(requests[-1].url)


# ----------------------------------------------------------------------------------- health


def test_health(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    connector = make_connector(emr.url)
    result = connector.health()
    assert result.ok is True and "CapabilityStatement (FHIR 4.0.1)" in result.detail

    emr.configure(bearer_token=TOKEN)  # metadata stays open, as on real servers
    assert connector.health().ok is True

    emr.configure(status_override=500)
    result = connector.health()
    assert result.ok is False and "500 Internal Server Error" in result.detail


def test_health_never_raises(make_connector: MakeConnector) -> None:
    down = make_connector(f"http://127.0.0.1:{free_port()}/fhir").health()
    assert down.ok is False and "ConnectError" in down.detail

    not_fhir = mock_connector(make_connector, lambda request: httpx.Response(200, json={"status": "ok"}))
    result = not_fhir.health()
    assert result.ok is False and "not a CapabilityStatement" in result.detail


# --------------------------------------------------------------------------- the contract


def test_registry_finds_fhir_rest(emr: SandboxFhirServer) -> None:
    registry.default_registry.cache_clear()
    assert "fhir_rest" in registry.available()
    assert registry.get("fhir_rest") is FhirRestConnector
    connector = registry.create("fhir_rest", {"base_url": emr.url, "page_size": 10})
    try:
        assert isinstance(connector, FhirRestConnector) and isinstance(connector, Connector)
        assert isinstance(connector, Sender) and isinstance(connector, HealthChecker)
        assert isinstance(connector, Poller) and supports_polling(connector)
        assert connector.health().ok
    finally:
        connector.close()


def test_config_defaults_and_validation() -> None:
    config = registry.validate_config("fhir_rest", {"base_url": "https://emr.example/fhir/"})
    assert isinstance(config, FhirRestConfig)
    assert config.resource_types == ["Patient", "ServiceRequest", "Task"]
    assert (config.page_size, config.timeout_seconds, config.bearer_token, config.verify_tls) == (
        50,
        10,
        None,
        True,
    )

    bad = {
        "base_url": "https://emr.example/fhir?token=s3cr3t-value",
        "resource_types": ["Patient", "patient/../x"],
        "page_size": 501,
        "bearer_token": "line\nbreak-secret",
    }
    with pytest.raises(ConfigError) as caught:
        registry.create("fhir_rest", bad)
    assert set(caught.value.fields) == {"base_url", "resource_types", "page_size", "bearer_token"}
    for value in ("s3cr3t-value", "patient/../x", "break-secret"):
        assert value not in str(caught.value)
    with pytest.raises(ConfigError):
        registry.create("fhir_rest", {"base_url": "https://emr.example/fhir", "resource_types": []})
    with pytest.raises(ConfigError):
        registry.create("fhir_rest", {"base_url": "https://emr.example/fhir", "page_size": 0})


def test_errors_never_carry_payload_or_token(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(status_override=422)
    connector = make_connector(emr.url, bearer_token=TOKEN)
    with pytest.raises(ConnectorError) as caught:
        connector.send(make_delivery(payload=payload(name=[{"family": "Doe-Marker"}])))
    text = str(caught.value) + repr(caught.value) + repr(connector) + repr(connector.config)
    assert "Doe-Marker" not in text and TOKEN not in text and "422" in text


def test_connector_is_a_context_manager(emr: SandboxFhirServer) -> None:
    with FhirRestConnector({"base_url": emr.url}) as connector:
        assert connector.health().ok
    assert connector._client.is_closed


# ---------------------------------------------------------------------------------- sandbox


def test_sandbox_search(emr: SandboxFhirServer) -> None:
    seed_clinic(emr)
    with httpx.Client(base_url=emr.url, trust_env=False) as http:
        page = http.get("/Patient", params={"_count": 2, "_offset": 2, "_sort": "-_lastUpdated"}).json()
        assert page["type"] == "searchset" and page["total"] == 7
        assert [e["resource"]["id"] for e in page["entry"]] == ["p4", "p3"]
        relations = {link["relation"]: link["url"] for link in page["link"]}
        assert relations["next"].startswith(emr.url + "/Patient?") and "_offset=4" in relations["next"]
        assert "_offset=0" in relations["previous"]

        mark = emr.resource("Patient", "p4")["meta"]["lastUpdated"]  # type: ignore[index]
        for prefix, expected in (("ge", 3), ("gt", 2), ("le", 5), ("lt", 4), ("eq", 1), ("", 1)):
            found = http.get("/Patient", params={"_lastUpdated": prefix + mark}).json()
            assert found["total"] == expected, prefix
        assert http.get("/Patient", params={"_lastUpdated": "ge2000"}).json()["total"] == 7
        assert (
            http.get("/Patient", params={"_lastUpdated": ["ge2000-01-01", "lt2000-02"]}).json()["total"] == 0
        )

        for token, ids in (("urn:mrn|M2", ["p2"]), ("M5", ["p5"]), ("|M5", []), ("urn:other|M5", [])):
            found = http.get("/Patient", params={"identifier": token}).json()
            assert [e["resource"]["id"] for e in found.get("entry", [])] == ids, token
        assert http.get("/Patient", params={"identifier": "urn:mrn|"}).json()["total"] == 7

        for params in ({"name": "x"}, {"_count": "-1"}, {"_sort": "name"}, {"_lastUpdated": "sa2024"}):
            answer = http.get("/Patient", params=params)
            assert answer.status_code == 400 and answer.json()["resourceType"] == "OperationOutcome"


def test_sandbox_writes_reads_and_idempotency(emr: SandboxFhirServer) -> None:
    headers = {"Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=emr.url, trust_env=False, headers=headers) as http:
        created = http.post("/Task", json={"resourceType": "Task", "id": "ignored", "status": "requested"})
        assert created.status_code == 201 and created.json()["id"] == "s000001"
        assert created.headers["Location"] == emr.url + "/Task/s000001/_history/1"
        assert created.headers["ETag"] == 'W/"1"'

        task = {"resourceType": "Task", "id": "s000001", "status": "accepted"}
        stale = http.put("/Task/s000001", json=task, headers={"If-Match": 'W/"7"'})
        assert stale.status_code == 412
        updated = http.put("/Task/s000001", json=task, headers={"If-Match": 'W/"1"'})
        assert updated.status_code == 200 and updated.json()["meta"]["versionId"] == "2"
        assert http.get("/Task/s000001/_history/1").json()["status"] == "requested"
        assert http.get("/Task/s000001").json()["status"] == "accepted"
        assert http.get("/Task/nope").status_code == 404

        assert http.put("/Task/other", json=task).status_code == 400  # id mismatch
        assert http.put("/Task/s000001", json={**task, "resourceType": "Patient"}).status_code == 400
        assert (
            http.put("/Task/s000001", content=b"{}", headers={"Content-Type": "text/plain"}).status_code
            == 415
        )
        assert http.delete("/Task/s000001").status_code == 405

        key = {"Idempotency-Key": "k-1"}
        first = http.post("/Task", json={"resourceType": "Task"}, headers=key)
        second = http.post("/Task", json={"resourceType": "Task"}, headers=key)
        assert first.json() == second.json() and second.status_code == 201
        reused = http.post("/Task", json={"resourceType": "Task", "status": "draft"}, headers=key)
        assert reused.status_code == 422 and emr.duplicates == 1

    stamps = [r["meta"]["lastUpdated"] for t in ("Task",) for r in emr.history(t, "s000001")]
    assert stamps == sorted(stamps) and len(set(stamps)) == 2 and len(stamps[0].split(".")[1]) == 7  # µs + Z


def test_sandbox_fail_rate_is_deterministic() -> None:
    def statuses(seed: int) -> list[int]:
        with SandboxFhirServer(fail_rate=0.5, seed=seed) as server:
            with httpx.Client(base_url=server.url, trust_env=False) as http:
                return [http.get("/Patient").status_code for _ in range(12)]

    first = statuses(3)
    assert first == statuses(3) and {200, 503} == set(first)


def test_sandbox_controls_over_http(emr: SandboxFhirServer) -> None:
    with httpx.Client(base_url=emr.root, trust_env=False) as http:
        answer = http.post(
            "/_control", json={"bearer_token": TOKEN, "fail_keys": ["k"], "fail_keys_status": 409}
        )
        assert answer.status_code == 200
        assert answer.json()["controls"]["bearer_token"] == "**********"
        assert http.get("/fhir/Patient").status_code == 401
        assert http.post("/_control", json={"fail_rate": 2}).status_code == 400
        assert http.post("/_control", json={"nope": 1}).status_code == 400
        summary = http.get("/_requests").json()
        assert summary["requests"] == 1 and summary["failed"] == 1
        assert http.post("/_reset").status_code == 200
        assert http.get("/fhir/Patient").status_code == 200
    with pytest.raises(ValueError):
        FhirSandboxControls(status_override=99)
    with pytest.raises(ValueError):
        FhirSandboxControls(link_base="ftp://x")


def test_sandbox_runs_as_a_process_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandboxes.fhir", "--port", "0", "--bearer-token", TOKEN],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/fhir"), (
            process.stderr.read() if process.stderr else ""
        )
        with FhirRestConnector({"base_url": url, "bearer_token": TOKEN}) as connector:
            assert connector.send(make_delivery(payload=payload())).status == 201
            [item] = connector.poll(None, 10).items
            assert item.external_id == "Patient/p1/_history/1"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < 3
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
