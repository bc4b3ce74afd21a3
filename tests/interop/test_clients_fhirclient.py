"""Standard FHIR client libraries against a real server (uvicorn on 127.0.0.1, SQLite and PostgreSQL).

* ``fhirclient`` (SMART on FHIR, models generated from R4 4.0.1): its parser is strict — unknown
  elements ("Superfluous entry"), missing required elements and malformed dates/instants raise —
  so it is the R4 check of what the server emits.
* ``fhirpy`` (async): the everyday client; follows ``Bundle.link[next]`` and takes the id of a
  created resource from the response body.
* ``fhir.resources.R4B``: every searchset/history Bundle and CapabilityStatement the server sent
  during a test must also validate there (R4B is not R4: a second opinion, not the R4 check).

Each test ends with :func:`assert_conformant`, which re-checks every response the recorder saw.

This module: ``fhirclient`` (SMART on FHIR, strict R4).
"""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl

import pytest
import requests
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.patient import Patient
from fhirclient.models.servicerequest import ServiceRequest
from fhirclient.server import FHIRNotFoundException

from tests.interop.client_support import (
    REFERRAL_SYSTEM,
    SEARCH_PARAM_TYPES,
    assert_conformant,
    fc_create,
    fc_patient,
    fc_service_request,
    sent,
    smart_server,
)
from tests.interop.conftest import LiveServer


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
