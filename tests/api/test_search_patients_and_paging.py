"""FHIR search through /fhir: Patient strings, dates and gender; paging, sorting, _include, _summary."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.search_support import (
    BASE,
    ID_SYS,
    concept,
    create,
    delete,
    found,
    link,
    matches,
    put,
    query_of,
    search,
    service_request,
)

# ------------------------------------------------------------------ Patient strings, dates, gender


@pytest.fixture
def patients(client: TestClient) -> dict[str, str]:
    def patient(family: str | None, given: list[str], birth: str | None, gender: str | None) -> str:
        resource: dict = {"resourceType": "Patient"}
        if family or given:
            resource["name"] = [{k: v for k, v in (("family", family), ("given", given)) if v}]
        if birth:
            resource["birthDate"] = birth
        if gender:
            resource["gender"] = gender
        return create(client, resource)["id"]

    return {
        "muller": patient("Müller", ["Anna"], "1980-05-01", "female"),
        "mueller": patient("Mueller", ["Jonas"], "1990-12-31", "male"),
        "mullerson": patient("Müllerson", ["Érik"], "2001", "other"),
        "schmidt": patient("Schmidt", ["Anna-Lena"], None, None),
    }


def test_patient_name_and_family(client: TestClient, patients: dict[str, str]) -> None:
    p = patients

    def pt(params) -> set[str]:  # type: ignore[no-untyped-def]
        return found(client, "Patient", params)

    assert pt({"name": "mul"}) == {p["muller"], p["mullerson"]}  # prefix, accent-insensitive
    assert pt({"name": "MÜL"}) == {p["muller"], p["mullerson"]}  # case-insensitive
    assert pt({"name": "müller"}) == {p["muller"], p["mullerson"]}
    assert pt({"family": "mue"}) == {p["mueller"]}
    assert pt({"family": "muller"}) == {p["muller"], p["mullerson"]}
    assert pt({"family": "anna"}) == set()  # family only looks at family names
    assert pt({"name": "anna"}) == {p["muller"], p["schmidt"]}
    assert pt({"name": "ERIK"}) == {p["mullerson"]}
    assert pt({"given": "ann"}) == {p["muller"], p["schmidt"]}
    assert pt({"name": "ller"}) == set()  # starts-with, not contains
    assert pt({"name": "schmidt,jonas"}) == {p["schmidt"], p["mueller"]}
    assert pt([("name", "anna"), ("family", "schm")]) == {p["schmidt"]}
    # :exact is the whole string, with case and accents
    assert pt({"family:exact": "Müller"}) == {p["muller"]}
    assert pt({"name:exact": "Müller"}) == {p["muller"]}
    assert pt({"family:exact": "müller"}) == set()
    assert pt({"family:exact": "Muller"}) == set()
    assert pt({"family:exact": "Mül"}) == set()
    assert pt({"given:exact": "Érik"}) == {p["mullerson"]}
    assert pt({"family:exact": "Mueller,Schmidt"}) == {p["mueller"], p["schmidt"]}


def test_patient_birthdate_and_gender(client: TestClient, patients: dict[str, str]) -> None:
    p = patients

    def pt(params) -> set[str]:  # type: ignore[no-untyped-def]
        return found(client, "Patient", params)

    assert pt({"birthdate": "1980-05-01"}) == {p["muller"]}
    assert pt({"birthdate": "1980"}) == {p["muller"]}
    assert pt({"birthdate": "lt1985"}) == {p["muller"]}
    assert pt({"birthdate": "le1980-05-01"}) == {p["muller"]}
    assert pt({"birthdate": "ge1990-12-31"}) == {p["mueller"], p["mullerson"]}
    assert pt({"birthdate": "gt1990-12-31"}) == {p["mullerson"]}
    # a birthDate of only "2001" is the whole year: within 2001, not within one day of it
    assert pt({"birthdate": "2001"}) == {p["mullerson"]}
    assert pt({"birthdate": "2001-06-01"}) == set()
    assert pt({"birthdate": "gt2001-06-01"}) == {p["mullerson"]}
    assert pt({"birthdate": "sa2000-12-31"}) == {p["mullerson"]}
    assert pt({"birthdate:missing": "true"}) == {p["schmidt"]}
    assert pt({"gender": "female"}) == {p["muller"]}
    assert pt({"gender": "female,other"}) == {p["muller"], p["mullerson"]}
    assert pt({"gender:not": "male"}) == {p["muller"], p["mullerson"], p["schmidt"]}
    assert pt({"gender:missing": "true"}) == {p["schmidt"]}
    assert pt([("gender", "female,male"), ("birthdate", "ge1985")]) == {p["mueller"]}


def test_repeated_parameter_is_and_comma_is_or(client: TestClient) -> None:
    both = create(client, service_request(category=[concept("A"), concept("B")]))["id"]
    only_a = create(client, service_request(category=[concept("A")]))["id"]
    only_b = create(client, service_request(category=[concept("B")], status="completed"))["id"]
    create(client, service_request(category=[concept("C")]))
    assert found(client, "ServiceRequest", [("category", "A"), ("category", "B")]) == {both}
    assert found(client, "ServiceRequest", {"category": "A,B"}) == {both, only_a, only_b}
    assert found(client, "ServiceRequest", [("category", "A,B"), ("status", "completed")]) == {only_b}
    assert found(client, "ServiceRequest", [("category", "A,B"), ("category", "B,C")]) == {both, only_b}
    # an escaped comma is part of the value, not an OR
    odd = create(client, service_request(identifier=[{"system": ID_SYS, "value": "a,b"}]))["id"]
    assert found(client, "ServiceRequest", {"identifier": "a\\,b"}) == {odd}


# ------------------------------------------------------------------ paging, sorting, _include, _summary


def test_paging_follows_next_links_through_every_resource_once(client: TestClient) -> None:
    created = [create(client, service_request())["id"] for _ in range(7)]
    create(client, service_request(status="completed"))  # not part of the search
    bundle = search(client, "ServiceRequest", {"status": "active", "_count": "3"})
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        assert bundle["total"] == 7
        page = matches(bundle)
        assert len(page) == (3 if pages < 3 else 1)
        seen.extend(page)
        self_query = dict(query_of(link(bundle, "self")))
        assert self_query["status"] == "active" and self_query["_count"] == "3"
        assert link(bundle, "first") is not None
        assert query_of(link(bundle, "first")) == [("status", "active"), ("_count", "3")]
        if pages > 1:
            previous = link(bundle, "previous")
            assert previous is not None
            assert (
                matches(search(client, previous.removeprefix(f"{BASE}/")))[:3]
                == seen[(pages - 2) * 3 : (pages - 1) * 3]
            )
        else:
            assert link(bundle, "previous") is None
        next_url = link(bundle, "next")
        if next_url is None:
            break
        assert next_url.startswith(f"{BASE}/ServiceRequest?")
        assert pages < 10, "next links never end"
        bundle = search(client, next_url.removeprefix(f"{BASE}/"))
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert seen == created  # default order: oldest first
    # a page of exactly the remaining resources has no next link
    assert link(search(client, "ServiceRequest", {"status": "active", "_count": "7"}), "next") is None


def test_count_zero_gives_only_the_total(client: TestClient) -> None:
    for _ in range(3):
        create(client, service_request())
    bundle = search(client, "ServiceRequest", {"_count": "0"})
    assert bundle["total"] == 3
    assert "entry" not in bundle
    assert link(bundle, "next") is None


def test_count_is_capped_and_defaulted(client: TestClient, settings) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        create(client, service_request())
    bundle = search(client, "ServiceRequest", {"_count": "100000"})
    assert len(matches(bundle)) == 3
    assert dict(query_of(link(bundle, "self")))["_count"] == str(settings.max_page_size)
    assert link(bundle, "next") is None


def test_sort_by_last_updated(client: TestClient) -> None:
    created = [create(client, service_request())["id"] for _ in range(4)]
    assert matches(search(client, "ServiceRequest", {"_sort": "_lastUpdated"})) == created
    assert matches(search(client, "ServiceRequest", {"_sort": "-_lastUpdated"})) == created[::-1]
    descending = search(client, "ServiceRequest", {"_sort": "-_lastUpdated", "_count": "3"})
    assert matches(descending) == created[::-1][:3]
    assert dict(query_of(link(descending, "self")))["_sort"] == "-_lastUpdated"
    assert matches(search(client, link(descending, "next").removeprefix(f"{BASE}/"))) == [created[0]]
    # an update moves a resource to the end
    put(client, service_request(id=created[0], status="completed"))
    assert matches(search(client, "ServiceRequest", {"_sort": "_lastUpdated"})) == created[1:] + created[:1]


def test_include_service_request_patient(client: TestClient) -> None:
    p1 = put(client, {"resourceType": "Patient", "id": "p1"})["id"]
    p2 = put(client, {"resourceType": "Patient", "id": "p2"})["id"]
    put(client, {"resourceType": "Patient", "id": "gone"})
    delete(client, "Patient", "gone")
    requests = {
        create(client, service_request(subject={"reference": "Patient/p1"}))["id"],
        create(client, service_request(subject={"reference": "Patient/p1"}))["id"],
        create(client, service_request(subject={"reference": f"{BASE}/Patient/p2"}))["id"],
        create(client, service_request(subject={"reference": "Patient/ghost"}))["id"],
        create(client, service_request(subject={"reference": "Patient/gone"}))["id"],
    }
    bundle = search(client, "ServiceRequest", {"_include": "ServiceRequest:patient"})
    assert bundle["total"] == 5  # includes are not counted
    assert set(matches(bundle)) == requests
    included = [e for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert sorted(e["resource"]["id"] for e in included) == sorted([p1, p2])
    for entry in included:
        assert entry["resource"]["resourceType"] == "Patient"
        assert entry["fullUrl"] == f"{BASE}/Patient/{entry['resource']['id']}"
    assert dict(query_of(link(bundle, "self")))["_include"] == "ServiceRequest:patient"
    # only the targets of the current page are included
    page = search(client, "ServiceRequest", {"_include": "ServiceRequest:patient", "_count": "1"})
    assert [e["resource"]["id"] for e in page["entry"] if e["search"]["mode"] == "include"] == [p1]
    # with a search on the same page: subject with a type
    subject = search(
        client, "ServiceRequest", {"_include": "ServiceRequest:subject:Patient", "patient": "p2"}
    )
    assert [(e["search"]["mode"], e["resource"]["id"]) for e in subject["entry"]][1:] == [("include", p2)]


def test_summary_count_and_searchset_entries(client: TestClient) -> None:
    ids = {create(client, service_request())["id"] for _ in range(3)}
    summary = search(client, "ServiceRequest", {"_summary": "count"})
    assert summary["type"] == "searchset"
    assert summary["total"] == 3
    assert "entry" not in summary
    assert dict(query_of(link(summary, "self")))["_summary"] == "count"
    bundle = search(client, "ServiceRequest")
    assert bundle["total"] == 3
    assert {e["resource"]["id"] for e in bundle["entry"]} == ids
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"{BASE}/ServiceRequest/{entry['resource']['id']}"
        assert entry["search"] == {"mode": "match"}
    assert link(bundle, "self") == f"{BASE}/ServiceRequest"
    empty = search(client, "Goal")
    assert empty["total"] == 0 and "entry" not in empty
    assert search(client, "ServiceRequest", {"_total": "none"}).get("total") is None
