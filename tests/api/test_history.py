"""History through /fhir: instance, type and system _history, paging, _since."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from fastapi.testclient import TestClient

from tests.api.search_support import BASE, create, delete, put


def history(client: TestClient, path: str, params=None, status: int = 200) -> dict:  # type: ignore[no-untyped-def]
    response = client.get(f"/fhir/{path}", params=params)
    assert response.status_code == status, response.text
    body = response.json()
    if status == 200:
        assert body["resourceType"] == "Bundle" and body["type"] == "history"
    return body


def link(bundle: dict, relation: str) -> str | None:
    return next((li["url"] for li in bundle.get("link", []) if li["relation"] == relation), None)


def versions(bundle: dict) -> list[tuple[str, str, str]]:
    """(method, url, etag) of each entry, in order."""
    return [
        (e["request"]["method"], e["request"]["url"], e["response"]["etag"]) for e in bundle.get("entry", [])
    ]


def keys(bundle: dict) -> list[tuple[str, str]]:
    """(fullUrl, etag): one version of one resource."""
    return [(e["fullUrl"], e["response"]["etag"]) for e in bundle.get("entry", [])]


def patient(**extra) -> dict:  # type: ignore[no-untyped-def]
    return {"resourceType": "Patient", **extra}


def shift(instant: str, hours: int) -> str:
    value = datetime.fromisoformat(instant.replace("Z", "+00:00")) + timedelta(hours=hours)
    return (
        value.replace(tzinfo=None).isoformat(timespec="microseconds")
        + f"{'+' if hours >= 0 else '-'}{abs(hours):02d}:00"
    )


def test_instance_history_newest_first_with_deletions(client: TestClient) -> None:
    first = create(client, patient(gender="female"))
    pid = first["id"]
    put(client, patient(id=pid, gender="male"))
    delete(client, "Patient", pid)
    put(client, patient(id=pid, gender="other"))  # re-created after the deletion
    create(client, patient())  # another resource: not in this history

    bundle = history(client, f"Patient/{pid}/_history")
    assert bundle["total"] == 4
    assert versions(bundle) == [
        ("PUT", f"Patient/{pid}", 'W/"4"'),
        ("DELETE", f"Patient/{pid}", 'W/"3"'),
        ("PUT", f"Patient/{pid}", 'W/"2"'),
        ("POST", "Patient", 'W/"1"'),
    ]
    entries = bundle["entry"]
    assert all(e["fullUrl"] == f"{BASE}/Patient/{pid}" for e in entries)
    deletion = entries[1]
    assert "resource" not in deletion
    assert deletion["response"]["status"].startswith("204")
    assert [e["resource"]["gender"] for e in entries if "resource" in e] == ["other", "male", "female"]
    assert [e["resource"]["meta"]["versionId"] for e in entries if "resource" in e] == ["4", "2", "1"]
    assert entries[3]["response"]["status"].startswith("201")
    assert entries[3]["response"]["lastModified"] == first["meta"]["lastUpdated"]
    modified = [e["response"]["lastModified"] for e in entries]
    assert modified == sorted(modified, reverse=True)


def test_history_of_a_deleted_resource_and_of_unknown_ones(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    delete(client, "Patient", pid)
    bundle = history(client, f"Patient/{pid}/_history")
    assert versions(bundle) == [("DELETE", f"Patient/{pid}", 'W/"2"'), ("POST", "Patient", 'W/"1"')]
    assert "resource" not in bundle["entry"][0] and "resource" in bundle["entry"][1]
    assert history(client, "Patient/nobody/_history", status=404)["resourceType"] == "OperationOutcome"
    assert history(client, "Spaceship/_history", status=404)["resourceType"] == "OperationOutcome"


def test_type_and_system_history(client: TestClient) -> None:
    a = create(client, patient())["id"]
    b = create(client, patient())["id"]
    sr = create(
        client,
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{a}"},
        },
    )["id"]
    put(client, patient(id=a, active=True))
    delete(client, "ServiceRequest", sr)

    patients = history(client, "Patient/_history")
    assert patients["total"] == 3
    assert keys(patients) == [
        (f"{BASE}/Patient/{a}", 'W/"2"'),
        (f"{BASE}/Patient/{b}", 'W/"1"'),
        (f"{BASE}/Patient/{a}", 'W/"1"'),
    ]
    requests = history(client, "ServiceRequest/_history")
    assert versions(requests) == [
        ("DELETE", f"ServiceRequest/{sr}", 'W/"2"'),
        ("POST", "ServiceRequest", 'W/"1"'),
    ]

    everything = history(client, "_history")
    assert everything["total"] == 5
    assert keys(everything) == [
        (f"{BASE}/ServiceRequest/{sr}", 'W/"2"'),
        (f"{BASE}/Patient/{a}", 'W/"2"'),
        (f"{BASE}/ServiceRequest/{sr}", 'W/"1"'),
        (f"{BASE}/Patient/{b}", 'W/"1"'),
        (f"{BASE}/Patient/{a}", 'W/"1"'),
    ]
    assert (
        everything["entry"][0]["request"]["method"] == "DELETE" and "resource" not in everything["entry"][0]
    )


def test_history_paging_with_count_and_next_links(client: TestClient) -> None:
    ids = [create(client, patient())["id"] for _ in range(3)]
    put(client, patient(id=ids[0], active=True))
    put(client, patient(id=ids[1], active=False))
    expected = keys(history(client, "_history", {"_count": "50"}))
    assert len(expected) == 5

    bundle = history(client, "_history", {"_count": "2"})
    seen: list[tuple[str, str]] = []
    sizes = []
    while True:
        assert bundle["total"] == 5
        sizes.append(len(bundle.get("entry", [])))
        seen.extend(keys(bundle))
        next_url = link(bundle, "next")
        if next_url is None:
            break
        assert next_url.startswith(f"{BASE}/_history?")
        assert dict(parse_qsl(urlsplit(next_url).query))["_count"] == "2"
        assert len(sizes) < 10, "next links never end"
        bundle = history(client, next_url.removeprefix(f"{BASE}/"))
    assert sizes == [2, 2, 1]
    assert seen == expected  # every version exactly once, newest first

    # the same at type and instance level
    typed = history(client, "Patient/_history", {"_count": "4"})
    assert len(typed["entry"]) == 4 and link(typed, "next") is not None
    rest = history(client, link(typed, "next").removeprefix(f"{BASE}/"))
    assert keys(typed) + keys(rest) == expected
    instance = history(client, f"Patient/{ids[0]}/_history", {"_count": "1"})
    assert versions(instance) == [("PUT", f"Patient/{ids[0]}", 'W/"2"')]
    last = history(client, link(instance, "next").removeprefix(f"{BASE}/"))
    assert versions(last) == [("POST", "Patient", 'W/"1"')]
    assert link(last, "next") is None


def test_history_count_zero_and_bad_values(client: TestClient) -> None:
    create(client, patient())
    create(client, patient())
    zero = history(client, "_history", {"_count": "0"})
    assert zero["total"] == 2
    assert "entry" not in zero
    assert link(zero, "next") is None
    for name, value in [
        ("_count", "-1"),
        ("_count", "ten"),
        ("_since", "yesterday"),
        ("_since", "2024-13-01"),
    ]:
        outcome = history(client, "_history", {name: value}, status=400)
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == [name]


def test_history_since(client: TestClient) -> None:
    a = create(client, patient())
    b = create(client, patient())
    a2 = put(client, patient(id=a["id"], active=True))
    since = b["meta"]["lastUpdated"]

    recent = history(client, "_history", {"_since": since})
    assert recent["total"] == 2
    assert keys(recent) == [(f"{BASE}/Patient/{a['id']}", 'W/"2"'), (f"{BASE}/Patient/{b['id']}", 'W/"1"')]
    # the same instant written with a time zone offset, encoded or not
    assert keys(history(client, "_history", {"_since": shift(since, 2)})) == keys(recent)
    assert keys(history(client, f"_history?_since={shift(since, 5)}")) == keys(recent)
    # the next link keeps _since
    paged = history(client, "Patient/_history", {"_since": since, "_count": "1"})
    assert len(paged["entry"]) == 1
    following = history(client, link(paged, "next").removeprefix(f"{BASE}/"))
    assert keys(paged) + keys(following) == keys(recent)
    assert link(following, "next") is None
    # instance level, a date, and a future instant
    assert keys(history(client, f"Patient/{a['id']}/_history", {"_since": a2["meta"]["lastUpdated"]})) == [
        (f"{BASE}/Patient/{a['id']}", 'W/"2"')
    ]
    assert history(client, "_history", {"_since": "2000-01-01"})["total"] == 3
    future = history(client, "_history", {"_since": "2999-01-01T00:00:00Z"})
    assert future["total"] == 0 and "entry" not in future
