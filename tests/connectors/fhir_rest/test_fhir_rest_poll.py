"""The FHIR REST connector's polls: pages, cursors, limits and malformed searchsets."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from connectors.base import (
    AuthError,
    PermanentError,
    TransientError,
)
from connectors.fhir_rest import PollCursor
from sandboxes.fhir import SandboxFhirServer
from tests.connectors.conftest import make_delivery
from tests.connectors.fhir_rest.conftest import (
    TOKEN,
    MakeConnector,
    all_versions,
    mock_connector,
    payload,
    poll_all,
    resource,
    seed_clinic,
)

# ------------------------------------------------------------------------------------- poll




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
