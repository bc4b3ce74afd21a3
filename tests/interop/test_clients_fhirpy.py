"""Standard FHIR client libraries against a real server: ``fhirpy`` (async), history paging, and
transactions and batches from both clients. Each test ends with ``assert_conformant``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import pytest
from fhirclient.models.bundle import Bundle
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.servicerequest import ServiceRequest
from fhirpy.base.exceptions import OperationOutcome as FhirpyOperationOutcome
from fhirpy.base.exceptions import ResourceNotFound

from tests.interop.client_support import (
    REFERRAL_SYSTEM,
    assert_conformant,
    fc_create,
    fc_patient,
    fc_service_request,
    fhirpy_client,
    sent,
    smart_server,
)
from tests.interop.conftest import Exchange, LiveServer

# ------------------------------------------------------------------ fhirpy (async)



def test_fhirpy_create_get_update_delete(live_server: LiveServer) -> None:
    async def scenario() -> None:
        client = fhirpy_client(live_server)
        patient = client.resource(
            "Patient",
            name=[{"family": "Hopper", "given": ["Grace"]}],
            gender="female",
            birthDate="1906-12-09",
            identifier=[{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-G"}],
        )
        await patient.create()
        # fhirpy takes the id from the response body; it must agree with the Location header
        assert patient.id and patient["meta"]["versionId"] == "1"
        (post,) = sent(live_server, "POST", "/fhir/Patient")
        assert post.headers["location"] == f"{live_server.fhir_base}/Patient/{patient.id}/_history/1"

        fetched = await client.get("Patient", patient.id)
        assert fetched["name"][0]["family"] == "Hopper" and fetched["meta"]["versionId"] == "1"
        via_reference = await client.reference("Patient", patient.id).to_resource()
        assert via_reference.id == patient.id

        referral = client.resource(
            "ServiceRequest",
            status="active",
            intent="order",
            subject=patient.to_reference(),
        )
        await referral.create()
        assert referral["subject"]["reference"] == f"Patient/{patient.id}"

        patient["active"] = False
        await patient.update()
        assert patient["meta"]["versionId"] == "2" and patient["active"] is False
        (put,) = sent(live_server, "PUT", f"/fhir/Patient/{patient.id}")
        assert put.status == 200 and put.headers["etag"] == 'W/"2"'
        await patient.refresh()  # conditional read: fhirpy sends If-None-Match with the bare versionId
        assert patient["meta"]["versionId"] == "2"
        refresh = sent(live_server, "GET", f"/fhir/Patient/{patient.id}")[-1]
        assert refresh.request_headers["if-none-match"] == "2"
        assert refresh.status == 304 and refresh.headers["etag"] == 'W/"2"' and not refresh.body

        assert await patient.is_valid()
        broken = client.resource("ServiceRequest", intent="order")  # no status, no subject
        assert not await broken.is_valid()
        with pytest.raises(FhirpyOperationOutcome):
            await broken.create()

        await patient.delete()
        (delete,) = sent(live_server, "DELETE", f"/fhir/Patient/{patient.id}")
        assert delete.status == 204 and delete.headers["etag"] == 'W/"3"'
        with pytest.raises(ResourceNotFound):  # 410 Gone
            await client.get("Patient", patient.id)
        with pytest.raises(ResourceNotFound):  # 404
            await client.get("Patient", "never-was")

    asyncio.run(scenario())
    assert_conformant(live_server)


def _queries(exchanges: Iterable[Exchange]) -> list[dict[str, str]]:
    return [dict(parse_qsl(e.query, keep_blank_values=True)) for e in exchanges]


def test_fhirpy_search_pages_and_count(live_server: LiveServer) -> None:
    async def scenario() -> None:
        client = fhirpy_client(live_server)
        ada = client.resource("Patient", name=[{"family": "Lovelace"}])
        bob = client.resource("Patient", name=[{"family": "Byron"}])
        await asyncio.gather(ada.create(), bob.create())

        def referral(patient: Any, i: int, status: str = "active") -> Any:
            return client.resource(
                "ServiceRequest",
                status=status,
                intent="order",
                subject=patient.to_reference(),
                identifier=[{"system": REFERRAL_SYSTEM, "value": f"REF-{i}"}],
            )

        ada_referrals = [referral(ada, i) for i in range(7)]
        for resource in ada_referrals:  # sequential: distinct _lastUpdated, a stable order
            await resource.create()
        await referral(bob, 100).create()
        await referral(ada, 200, status="completed").create()

        requests_ = client.resources("ServiceRequest")
        mine = requests_.search(subject=f"Patient/{ada.id}", status="active")

        # fetch_all follows link[next]: pages of 3 -> 3 requests
        before = len(live_server.exchanges)
        everything = await mine.limit(3).sort("_lastUpdated").fetch_all()
        assert [r.id for r in everything] == [r.id for r in ada_referrals]
        pages = [e for e in live_server.exchanges[before:] if e.path == "/fhir/ServiceRequest"]
        assert [q.get("_offset") for q in _queries(pages)] == [None, "3", "6"]
        assert all(q["_count"] == "3" and q["subject"] == f"Patient/{ada.id}" for q in _queries(pages))

        newest_first = await mine.sort("-_lastUpdated").limit(2).fetch()
        assert [r.id for r in newest_first] == [ada_referrals[6].id, ada_referrals[5].id]
        assert (await mine.sort("_lastUpdated").first()).id == ada_referrals[0].id
        single = await requests_.search(identifier=f"{REFERRAL_SYSTEM}|REF-100").get()
        assert single["subject"]["reference"] == f"Patient/{bob.id}"
        assert await requests_.search(patient=ada.id).search(status__not="completed").fetch_all() != []

        # count(): fhirpy sends _count=0 and its own _totalMethod=count; the answer is Bundle.total
        before = len(live_server.exchanges)
        assert await mine.count() == 7
        assert await requests_.search(patient=ada.id).count() == 8
        assert await requests_.count() == 9
        counted = [e for e in live_server.exchanges[before:] if e.path == "/fhir/ServiceRequest"]
        first = _queries(counted)[0]
        assert first["_count"] == "0" and first["_totalMethod"] == "count"
        for exchange in counted:
            body = json.loads(exchange.body)
            assert body["type"] == "searchset" and "total" in body
            assert [link["relation"] for link in body["link"]] == ["self"], (
                "_count=0 must not link to a next page"
            )
            # _totalMethod is not FHIR: ignored, and said so in an outcome entry (lenient handling)
            assert [e["search"]["mode"] for e in body["entry"]] == ["outcome"]

        # _summary=count (the FHIR way) agrees
        raw = await client.execute(
            "ServiceRequest", method="get", params={"_summary": "count", "patient": ada.id}
        )
        assert raw["total"] == 8 and "entry" not in raw

        # _include with fhirpy: fetch() keeps only the searched type, fetch_raw() has the Patient too
        with_patient = requests_.search(identifier=f"{REFERRAL_SYSTEM}|REF-0").include(
            "ServiceRequest", "subject"
        )
        assert [r.resourceType for r in await with_patient.fetch()] == ["ServiceRequest"]
        bundle = await with_patient.fetch_raw()
        assert {e["search"]["mode"]: e["resource"]["resourceType"] for e in bundle["entry"]} == {
            "match": "ServiceRequest",
            "include": "Patient",
        }

    asyncio.run(scenario())
    assert_conformant(live_server)


def test_history_count_zero_does_not_link_to_itself(live_server: LiveServer) -> None:
    server = smart_server(live_server)
    fc_create(fc_patient("Lovelace", "MRN-1"), server)
    for path in ("Patient/_history?_count=0", "_history?_count=0", "Patient?_count=0"):
        bundle = Bundle.read_from(path, server)
        assert bundle.total == 1 and not bundle.entry
        assert [link.relation for link in bundle.link] == ["self"], path
    assert_conformant(live_server)


def test_transaction_and_batch_from_both_clients(live_server: LiveServer) -> None:
    """Both libraries post Bundles to ``[base]/`` (trailing slash): answered directly, no redirect."""
    server = smart_server(live_server)
    patient_url = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
    transaction = Bundle(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": patient_url,
                    "resource": fc_patient("Turing", "MRN-T").as_json(),
                    "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=MRN-T"},
                },
                {
                    "resource": {
                        **fc_service_request("placeholder", "REF-T").as_json(),
                        "subject": {"reference": patient_url},
                    },
                    "request": {"method": "POST", "url": "ServiceRequest"},
                },
            ],
        }
    )
    response = Bundle(transaction.create(server))  # strict
    assert response.type == "transaction-response"
    assert [e.response.status for e in response.entry] == ["201 Created", "201 Created"]
    patient_id = response.entry[0].resource.id
    assert response.entry[0].response.location == f"Patient/{patient_id}/_history/1"
    referral = ServiceRequest.read(response.entry[1].resource.id, server)
    assert referral.subject.reference == f"Patient/{patient_id}"  # urn:uuid resolved

    async def batch() -> Any:
        client = fhirpy_client(live_server)
        return await client.execute(
            "",
            method="post",
            data={
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {"request": {"method": "GET", "url": f"Patient/{patient_id}"}},
                    {"request": {"method": "GET", "url": "ServiceRequest?identifier=REF-T"}},
                    {"request": {"method": "GET", "url": "Patient/nobody"}},
                ],
            },
        )

    result = Bundle(asyncio.run(batch()))  # strict
    assert result.type == "batch-response"
    assert [e.response.status.split()[0] for e in result.entry] == ["200", "200", "404"]
    assert result.entry[1].resource.type == "searchset" and result.entry[1].resource.total == 1
    assert isinstance(result.entry[2].response.outcome, OperationOutcome)

    posts = [e for e in live_server.exchanges if e.method == "POST" and e.path in ("/fhir", "/fhir/")]
    assert [(e.path, e.status) for e in posts] == [("/fhir/", 200), ("/fhir/", 200)]
    assert_conformant(live_server)
