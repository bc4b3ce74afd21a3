"""Standard FHIR client libraries against a real server (uvicorn on 127.0.0.1, SQLite and PostgreSQL).

* ``fhirclient`` (SMART on FHIR, models generated from R4 4.0.1): its parser is strict — unknown
  elements ("Superfluous entry"), missing required elements and malformed dates/instants raise —
  so it is the R4 check of what the server emits.
* ``fhirpy`` (async): the everyday client; follows ``Bundle.link[next]`` and takes the id of a
  created resource from the response body.
* ``fhir.resources.R4B``: every searchset/history Bundle and CapabilityStatement the server sent
  during a test must also validate there (R4B is not R4: a second opinion, not the R4 check).

Each test ends with :func:`assert_conformant`, which re-checks every response the recorder saw.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from fhir.resources.R4B import get_fhir_model_class
from fhirclient.client import FHIRClient
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.fhirdate import FHIRDate
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.patient import Patient
from fhirclient.models.servicerequest import ServiceRequest
from fhirclient.server import FHIRNotFoundException, FHIRServer
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome as FhirpyOperationOutcome
from fhirpy.base.exceptions import ResourceNotFound

from tests.interop.conftest import Exchange, LiveServer

PT_SYSTEM = "http://snomed.info/sct"
REFERRAL_SYSTEM = "urn:oid:2.16.840.1.113883.3.1"
SEARCH_PARAM_TYPES = {
    "number",
    "date",
    "string",
    "token",
    "reference",
    "composite",
    "quantity",
    "uri",
    "special",
}


# ------------------------------------------------------------------ conformance of what the server sent


def strict_r4(body: dict[str, Any]) -> Any:
    """Parse with fhirclient's R4 models, strictly (raises FHIRValidationError on any deviation)."""
    return FHIRElementFactory.instantiate(body["resourceType"], body)


def r4b(body: dict[str, Any]) -> Any:
    return get_fhir_model_class(body["resourceType"]).model_validate(body)


def json_representation_errors(node: Any, path: str = "") -> list[str]:
    """FHIR JSON rules a model parser lets through: no null, no empty array, object or string."""
    if node is None or node in ("", [], {}):
        return [f"{path or '(root)'} is {json.dumps(node)}"]
    errors: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            errors += json_representation_errors(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            errors += json_representation_errors(value, f"{path}[{index}]")
    return errors


def _fhir_json(exchange: Exchange) -> dict[str, Any] | None:
    if not exchange.path.startswith("/fhir") or not exchange.body:
        return None
    assert exchange.headers.get("content-type", "").startswith("application/fhir+json"), exchange
    return json.loads(exchange.body)


def assert_conformant(live: LiveServer) -> None:
    """Check every FHIR body the recorder saw.

    All parse strictly as R4 (fhirclient) and keep the JSON rules (no null, no empty array, object
    or string); error responses are OperationOutcomes; every searchset/history Bundle and the
    CapabilityStatement also validate with fhir.resources R4B; Bundle links are absolute and point
    back at this server.
    """
    checked = 0
    for exchange in live.exchanges:
        body = _fhir_json(exchange)
        if body is None:
            continue
        where = f"{exchange.method} {exchange.path}?{exchange.query} -> {exchange.status}"
        try:
            strict_r4(body)
        except FHIRValidationError as exc:
            pytest.fail(f"not strict R4 ({where}): {exc}")
        assert not json_representation_errors(body), (where, json_representation_errors(body))
        if exchange.status >= 400:
            assert body["resourceType"] == "OperationOutcome", where
        kind = body["resourceType"]
        if kind == "CapabilityStatement" or (
            kind == "Bundle" and body.get("type") in ("searchset", "history")
        ):
            r4b(body)
        if kind == "Bundle":
            for link in body.get("link", []):
                assert link["url"].startswith(live.fhir_base + "/"), (where, link)
        checked += 1
    assert checked, "the recorder saw no FHIR response"


def sent(live: LiveServer, method: str, path: str) -> list[Exchange]:
    return [e for e in live.exchanges if e.method == method and e.path == path]


# ------------------------------------------------------------------ fhirclient (SMART, strict R4)


def smart_server(live: LiveServer) -> FHIRServer:
    client = FHIRClient(settings={"app_id": "interop-tests", "api_base": live.fhir_base})
    client.server.session.trust_env = False  # never a proxy: 127.0.0.1 only
    assert client.prepare(), (
        "an open server: fhirclient should be ready after reading the CapabilityStatement"
    )
    return client.server


def fc_patient(family: str, mrn: str) -> Patient:
    patient = Patient()
    name = HumanName()
    name.family = family
    name.given = ["Ada"]
    patient.name = [name]
    identifier = Identifier()
    identifier.system = "urn:oid:1.2.36.146.595.217.0.1"
    identifier.value = mrn
    patient.identifier = [identifier]
    patient.gender = "female"
    patient.birthDate = FHIRDate("1980-02-29")
    return patient


def fc_service_request(patient_id: str, referral: str, status: str = "active") -> ServiceRequest:
    request = ServiceRequest()
    request.status = status
    request.intent = "order"
    subject = FHIRReference()
    subject.reference = f"Patient/{patient_id}"
    request.subject = subject
    identifier = Identifier()
    identifier.system = REFERRAL_SYSTEM
    identifier.value = referral
    request.identifier = [identifier]
    coding = Coding()
    coding.system = PT_SYSTEM
    coding.code = "91251008"
    coding.display = "Physical therapy procedure"
    category = CodeableConcept()
    category.coding = [coding]
    request.category = [category]
    return request


def fc_create(resource: Any, server: FHIRServer) -> Any:
    """Create through the model's own ``.create(server)``; return the strictly parsed response body."""
    body = resource.create(server)
    assert body is not None, "the server should return the created resource (Prefer return=representation)"
    created = type(resource)(body)  # strict
    assert created.id and created.meta.versionId == "1"
    return created


def test_fhirclient_parses_the_capability_statement_strictly(live_server: LiveServer) -> None:
    server = smart_server(live_server)
    statement = server.capabilityStatement  # CapabilityStatement.read_from("metadata"): a strict parse
    assert isinstance(statement, CapabilityStatement)
    raw = server.request_json("metadata")
    assert statement.as_json() == raw, (
        "the strict R4 model must keep every element (nothing unknown, nothing lost)"
    )
    assert statement.fhirVersion == "4.0.1"
    assert statement.kind == "instance" and statement.status == "active"
    assert statement.format and "application/fhir+json" in statement.format
    assert statement.implementation.url == live_server.fhir_base
    (rest,) = statement.rest
    assert rest.mode == "server"
    assert {i.code for i in rest.interaction} >= {"transaction", "batch", "history-system"}
    by_type = {r.type: r for r in rest.resource}
    for resource_type in ("Patient", "ServiceRequest"):
        resource = by_type[resource_type]
        codes = {i.code for i in resource.interaction}
        assert codes >= {"read", "vread", "update", "delete", "create", "search-type", "history-instance"}
    # definitions are canonical URLs of real R4 SearchParameters (shared ones are not {Type}-{name})
    definitions = {(r.type, p.name): p.definition for r in rest.resource for p in r.searchParam or []}
    sp = "http://hl7.org/fhir/SearchParameter/"
    assert definitions[("ServiceRequest", "_id")] == sp + "Resource-id"
    assert definitions[("ServiceRequest", "patient")] == sp + "clinical-patient"
    assert definitions[("ServiceRequest", "subject")] == sp + "ServiceRequest-subject"
    assert definitions[("Observation", "encounter")] == sp + "clinical-encounter"
    assert definitions[("Condition", "encounter")] == sp + "Condition-encounter"
    assert definitions[("Patient", "family")] == sp + "individual-family"
    assert definitions[("Patient", "name")] == sp + "Patient-name"
    assert definitions[("Task", "patient")] == sp + "Task-patient"
    for resource in rest.resource:
        names = [p.name for p in resource.searchParam or []]
        assert len(names) == len(set(names)), f"cpb-12: duplicate search parameter on {resource.type}"
        assert {p.type for p in resource.searchParam or []} <= SEARCH_PARAM_TYPES
        reference_params = {p.name for p in resource.searchParam or [] if p.type == "reference"}
        for include in resource.searchInclude or []:
            source, _, param = include.partition(":")
            assert source == resource.type and param in reference_params, include
    assert_conformant(live_server)


def test_fhirclient_create_read_search_and_history(live_server: LiveServer) -> None:
    server = smart_server(live_server)

    patient = fc_create(fc_patient("Lovelace", "MRN-1"), server)
    other = fc_create(fc_patient("Byron", "MRN-2"), server)
    created = sent(live_server, "POST", "/fhir/Patient")[0]
    assert created.status == 201
    assert created.headers["location"] == f"{live_server.fhir_base}/Patient/{patient.id}/_history/1"
    assert created.headers["etag"] == 'W/"1"'
    last_modified = parsedate_to_datetime(created.headers["last-modified"])
    assert last_modified.replace(microsecond=0) == patient.meta.lastUpdated.datetime.replace(microsecond=0)

    again = Patient.read(patient.id, server)
    assert again.id == patient.id and again.name[0].family == "Lovelace"
    assert again.birthDate.isostring == "1980-02-29"
    assert again.meta.versionId == "1"
    read = sent(live_server, "GET", f"/fhir/Patient/{patient.id}")[-1]
    assert read.headers["etag"] == 'W/"1"'

    referrals = [fc_create(fc_service_request(patient.id, f"REF-{i}"), server) for i in range(5)]
    fc_create(fc_service_request(other.id, "REF-X"), server)
    fc_create(fc_service_request(patient.id, "REF-DONE", status="completed"), server)
    wanted = {r.id for r in referrals}

    first = ServiceRequest.read(referrals[0].id, server)
    assert first.subject.reference == f"Patient/{patient.id}"
    assert first.identifier[0].value == "REF-0"
    assert first.category[0].coding[0].code == "91251008"

    # search: fhirclient expands the struct into a query string and follows link[next] (3 pages of 2)
    search = ServiceRequest.where(
        struct={"subject": f"Patient/{patient.id}", "status": "active", "_count": "2"}
    )
    found = search.perform_resources(server)
    assert all(isinstance(r, ServiceRequest) for r in found)
    assert sorted(r.id for r in found) == sorted(wanted)
    pages = [e for e in sent(live_server, "GET", "/fhir/ServiceRequest") if "_count=2" in e.query]
    assert len(pages) == 3, [p.query for p in pages]
    assert dict(parse_qsl(pages[0].query)) == {
        "subject": f"Patient/{patient.id}",
        "status": "active",
        "_count": "2",
    }

    # token search with system|code, and :missing through the struct's $missing modifier
    by_identifier = ServiceRequest.where(struct={"identifier": f"{REFERRAL_SYSTEM}|REF-3"}).perform_resources(
        server
    )
    assert [r.id for r in by_identifier] == [referrals[3].id]
    nobody = ServiceRequest.where(struct={"subject": {"$missing": "true"}}).perform_resources(server)
    assert nobody == []

    # _include through the fhirclient API: the Patient comes back with mode=include
    include = ServiceRequest.where(struct={"identifier": f"{REFERRAL_SYSTEM}|REF-1"}).include("subject")
    bundle = next(include.perform_iter(server))
    modes = {(e.resource.resource_type, e.search.mode) for e in bundle.entry}
    assert modes == {("ServiceRequest", "match"), ("Patient", "include")}

    # a searchset Bundle, strictly parsed
    searchset = Bundle.read_from(f"ServiceRequest?patient={patient.id}&_count=4", server)
    assert searchset.type == "searchset" and searchset.total == 6
    assert {link.relation for link in searchset.link} == {"self", "first", "next"}
    assert len(searchset.entry) == 4
    for entry in searchset.entry:
        assert entry.fullUrl == f"{live_server.fhir_base}/ServiceRequest/{entry.resource.id}"
        assert entry.search.mode == "match"

    # update through the model (it remembers the server it was read from), then delete
    first.status = "on-hold"
    updated = ServiceRequest(first.update())
    assert updated.meta.versionId == "2" and updated.status == "on-hold"
    put = sent(live_server, "PUT", f"/fhir/ServiceRequest/{first.id}")[0]
    assert put.status == 200 and put.headers["etag"] == 'W/"2"'
    assert put.headers["location"] == f"{live_server.fhir_base}/ServiceRequest/{first.id}/_history/2"
    assert ServiceRequest.read(first.id, server).status == "on-hold"
    assert first.delete() is None  # 204, no body

    # a history Bundle (instance, type, system), strictly parsed, including the deletion
    history = Bundle.read_from(f"ServiceRequest/{first.id}/_history", server)
    assert history.type == "history" and history.total == 3
    assert [e.request.method for e in history.entry] == ["DELETE", "PUT", "POST"]
    assert [e.response.etag for e in history.entry] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert history.entry[0].resource is None
    assert history.entry[1].resource.status == "on-hold" and history.entry[2].resource.status == "active"
    type_history = Bundle.read_from("ServiceRequest/_history?_count=3", server)
    assert type_history.total == 9 and len(type_history.entry) == 3
    assert any(link.relation == "next" for link in type_history.link)
    system_history = Bundle.read_from("_history", server)
    # PT referrals (ServiceRequest orders) also open a referral Task each: 11 versions + 4 Task versions
    # + the clinic Organization, + the Task versions of the referral that was updated
    by_type: dict[str, int] = {}
    for resource_type in ("Patient", "ServiceRequest", "Task", "Organization", "Communication"):
        by_type[resource_type] = Bundle.read_from(f"{resource_type}/_history?_count=0", server).total
    assert by_type["Patient"] + by_type["ServiceRequest"] == 11
    assert system_history.total == sum(by_type.values())
    assert {e.resource.resource_type for e in system_history.entry if e.resource} <= {
        "Patient", "ServiceRequest", "Task", "Organization", "Communication",
    }

    assert_conformant(live_server)


def _outcome_of(response: requests.Response, status: int, code: str) -> OperationOutcome:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = OperationOutcome(response.json())  # strict
    assert outcome.issue and all(issue.severity in ("error", "fatal") for issue in outcome.issue)
    assert code in {issue.code for issue in outcome.issue}, [issue.as_json() for issue in outcome.issue]
    return outcome


def test_fhirclient_error_responses_are_strict_operation_outcomes(live_server: LiveServer) -> None:
    server = smart_server(live_server)
    with pytest.raises(FHIRNotFoundException) as missing:
        ServiceRequest.read("no-such-id", server)
    _outcome_of(missing.value.response, 404, "not-found")

    with pytest.raises(FHIRNotFoundException) as unknown_type:
        server.request_json("Medication/1")
    _outcome_of(unknown_type.value.response, 404, "not-supported")

    # an R4-invalid resource (no ServiceRequest.status, an unknown element) posted as raw JSON
    with pytest.raises(requests.HTTPError) as invalid:
        server.post_json(
            "ServiceRequest", {"resourceType": "ServiceRequest", "intent": "order", "colour": "red"}
        )
    outcome = _outcome_of(invalid.value.response, 400, "required")
    assert {issue.code for issue in outcome.issue} == {"required", "structure"}
    assert all(issue.expression for issue in outcome.issue)

    with pytest.raises(requests.HTTPError) as strict_search:
        server.request_data("ServiceRequest?colour=red", headers={"Prefer": "handling=strict"})
    _outcome_of(strict_search.value.response, 400, "invalid")

    with pytest.raises(requests.HTTPError) as xml:
        server.request_data("metadata", headers={"Accept": "application/fhir+xml"})
    _outcome_of(xml.value.response, 406, "not-supported")

    created = fc_create(fc_patient("Gone", "MRN-9"), server)
    created.delete(server)
    with pytest.raises(requests.HTTPError) as gone:
        Patient.read(created.id, server)
    _outcome_of(gone.value.response, 410, "deleted")

    # a stale If-Match (version 1 after an update) is refused with 412
    patient = fc_create(fc_patient("Stale", "MRN-10"), server)
    patient.active = True
    patient.update(server)
    patient.active = False
    stale = server.session.put(
        f"{live_server.fhir_base}/Patient/{patient.id}",
        data=json.dumps(patient.as_json()),
        headers={"Content-Type": "application/fhir+json", "If-Match": 'W/"1"'},
    )
    _outcome_of(stale, 412, "conflict")

    # lenient handling: the unknown parameter is reported in a strict-R4 outcome entry of the searchset
    bundle = Bundle.read_from("ServiceRequest?colour=red", server)
    (entry,) = bundle.entry
    assert entry.search.mode == "outcome" and isinstance(entry.resource, OperationOutcome)
    assert entry.resource.issue[0].severity == "warning"

    assert_conformant(live_server)


# ------------------------------------------------------------------ fhirpy (async)


def fhirpy_client(live: LiveServer) -> AsyncFHIRClient:
    return AsyncFHIRClient(live.fhir_base, aiohttp_config={"timeout": None})


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
