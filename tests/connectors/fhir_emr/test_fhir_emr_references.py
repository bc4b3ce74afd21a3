"""Resolving references on delivery and on poll."""

from __future__ import annotations

import json

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.base import (
    AuthError,
    ConfigError,
    PermanentError,
)
from connectors.fhir_emr import (
    FhirEmrConnector,
)
from connectors.fhir_rest import FhirRestConnector
from hub.sync.polling import resolve_references
from sandboxes.emr import SandboxEmr
from tests.connectors.conftest import make_delivery
from tests.connectors.fhir_emr.conftest import (
    MakeConnector,
    body,
    fhir_requests,
    in_context,
    patient,
    public_pem,
    referral,
    searches,
)

# -------------------------------------------------------------------------------- references




def test_the_connector_asks_for_references() -> None:
    assert FhirEmrConnector.context == frozenset({"references"})
    assert "context" not in vars(FhirRestConnector)  # fhir_rest mirrors ids: bare resources


def test_a_referenced_patient_missing_on_the_emr_is_written_first(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    result = connector.send(make_delivery("job-1", in_context(referral(), patient())))

    [stored_patient] = emr.resources("Patient")
    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"] == {"reference": f"Patient/{stored_patient['id']}", "display": "the patient"}
    assert stored_patient["identifier"] == [{"system": "urn:emr:mrn", "value": "M1"}]
    assert stored_patient["id"] != "p1" and "id" not in json.loads(fhir_requests(emr, "PUT")[0].body)
    calls = [(r.method, r.path, r.status) for r in emr.requests]
    assert calls == [
        ("GET", "/fhir/Patient", 200),  # is it there? no
        ("PUT", "/fhir/Patient", 201),  # then write it, by its identifier
        ("PUT", "/fhir/ServiceRequest", 201),
    ]
    assert searches(emr, "Patient")[0].query == "identifier=urn%3Aemr%3Amrn%7CM1&_count=2"
    dependency, request = fhir_requests(emr, "PUT")
    assert dependency.idempotency_key == "job-1:Patient/p1" and request.idempotency_key == "job-1"
    assert dependency.correlation_id == request.correlation_id == "corr-123"
    assert result.remote_id == stored["id"]
    assert "references: 1 resolved to EMR ids (0 from cache), 1 dependencies written, 0 logical" in result.detail
    assert "M1" not in result.detail and "the patient" not in result.detail
    # both writes are the hub's own: a later poll skips them (SendResult.written, as poll names them)
    assert result.written == (
        f"Patient/{stored_patient['id']}/_history/1", f"ServiceRequest/{stored['id']}/_history/1"
    )


def test_a_second_delivery_resolves_from_the_cache(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector()
    connector.send(make_delivery("job-1", in_context(referral(), patient())))
    before = len(emr.requests)
    other = referral("sr2", "R-2", subject={"reference": "Patient/p1"})
    result = connector.send(make_delivery("job-2", in_context(other, patient())))

    assert [(r.method, r.path) for r in emr.requests[before:]] == [("PUT", "/fhir/ServiceRequest")]
    assert len(searches(emr, "Patient")) == 1  # the first delivery's search only
    [stored_patient] = emr.resources("Patient")
    assert {r["subject"]["reference"] for r in emr.resources("ServiceRequest")} == {f"Patient/{stored_patient['id']}"}
    assert "1 resolved to EMR ids (1 from cache), 0 dependencies written" in result.detail

    # the resource a delivery writes is remembered too: a Task about the referral needs no search
    task = {"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order",
            "focus": {"reference": "ServiceRequest/sr1"}, "for": {"reference": "Patient/p1"}}
    before = len(emr.requests)
    connector.send(make_delivery("job-3", in_context(task, referral(), patient())))
    assert [r.method for r in emr.requests[before:]] == ["PUT"]
    [emr_task] = emr.resources("Task")
    assert emr_task["focus"]["reference"] == "ServiceRequest/" + emr.resources("ServiceRequest")[0]["id"]


def test_a_patient_already_on_the_emr_is_found_not_duplicated(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    emr.seed({"resourceType": "Patient", "id": "emr-7", "identifier": [{"system": "urn:emr:mrn", "value": "M1"}]})
    result = make_connector().send(make_delivery("job-1", in_context(referral(), patient(gender="male"))))

    [existing] = emr.resources("Patient")
    assert existing["id"] == "emr-7" and existing["meta"]["versionId"] == "1"  # found, used as it is
    assert "gender" not in existing
    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"]["reference"] == "Patient/emr-7"
    assert [(r.method, r.path) for r in emr.requests] == [("GET", "/fhir/Patient"), ("PUT", "/fhir/ServiceRequest")]
    assert "0 dependencies written" in result.detail


def test_an_identifier_not_unique_on_the_emr_is_permanent(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    for emr_id in ("e1", "e2"):
        emr.seed({"resourceType": "Patient", "id": emr_id, "identifier": [{"system": "urn:emr:mrn", "value": "M1"}]})
    with pytest.raises(PermanentError) as caught:
        make_connector().send(make_delivery("job-1", in_context(referral(), patient())))

    message = str(caught.value)
    assert not isinstance(caught.value, AuthError)
    assert "2 Patient resources carry that identifier on the EMR (not unique" in message
    assert "Patient/p1 by urn:emr:mrn" in message and "M1" not in message
    assert emr.resources("ServiceRequest") == [] and fhir_requests(emr, "PUT") == []


def test_dependencies_are_resolved_recursively(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    organization = {"resourceType": "Organization", "id": "org1", "name": "Ortho Associates"}
    practitioner = {"resourceType": "Practitioner", "id": "dr1",
                    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]}
    role = {"resourceType": "PractitionerRole", "id": "role1", "practitioner": {"reference": "Practitioner/dr1"},
            "organization": {"reference": "Organization/org1"}}
    request = referral(requester={"reference": "PractitionerRole/role1"})
    connector = make_connector(scope="system/*.cruds")
    result = connector.send(make_delivery("job-1", in_context(request, patient(), role, practitioner, organization)))

    [stored_role] = emr.resources("PractitionerRole")
    [stored_practitioner] = emr.resources("Practitioner")
    [stored_organization] = emr.resources("Organization")
    assert stored_role["practitioner"]["reference"] == f"Practitioner/{stored_practitioner['id']}"
    assert stored_role["organization"]["reference"] == f"Organization/{stored_organization['id']}"
    # keyed by the hub id when it has no identifier of its own, as any write
    assert stored_organization["identifier"] == [{"system": "urn:therapy-hub:id", "value": "org1"}]
    [stored] = emr.resources("ServiceRequest")
    assert stored["requester"]["reference"] == f"PractitionerRole/{stored_role['id']}"
    assert "4 resolved to EMR ids (0 from cache), 4 dependencies written, 0 logical" in result.detail
    assert fhir_requests(emr, "PUT")[-1].path == "/fhir/ServiceRequest"  # dependencies first


def test_references_without_a_target_become_logical(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    request = referral(
        subject={"reference": "Patient/gone", "display": "the patient"},  # not in the hub's store any more
        performer=[{"reference": "Organization/o9", "identifier": {"system": "urn:hub:mrn", "value": "O-9"}}],
        supportingInfo=[{"reference": "#local"}, {"reference": "urn:uuid:0d6f7a9e-1c1b-4c54-9b52-2d0d4f1e5f0a"},
                        {"reference": "https://elsewhere.example/fhir/Binary/b1"}],
        contained=[{"resourceType": "Observation", "id": "local", "status": "final",
                    "code": {"text": "x"}, "subject": {"reference": "Patient/gone"}}],
    )
    emr.configure(check_references=False)  # the contained reference is not the connector's to rewrite
    result = make_connector().send(make_delivery("job-1", body(request)))  # a bare resource: no context

    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"] == {
        "display": "the patient",
        "type": "Patient",
        "identifier": {"system": "urn:therapy-hub:id", "value": "gone"},
    }
    assert stored["performer"] == [{"type": "Organization", "identifier": {"system": "urn:emr:mrn", "value": "O-9"}}]
    assert stored["supportingInfo"] == request["supportingInfo"]  # local, urn: and absolute: untouched
    assert stored["contained"][0]["subject"] == {"reference": "Patient/gone"}
    assert [r.method for r in emr.requests] == ["PUT"]  # nothing to look up
    assert "0 resolved to EMR ids (0 from cache), 0 dependencies written, 2 logical" in result.detail


def test_a_target_that_cannot_be_keyed_stays_logical(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    letter = {"resourceType": "Composition", "id": "c1", "status": "final", "type": {"text": "letter"},
              "identifier": {"system": "urn:hub:letter", "value": "L-1"}, "date": "2024-01-01", "title": "t",
              "author": [{"display": "x"}]}  # a single identifier, not a list: not writable by identifier
    request = referral(supportingInfo=[{"reference": "Composition/c1"}])
    result = make_connector().send(make_delivery("job-1", in_context(request, patient(), letter)))

    [stored] = emr.resources("ServiceRequest")
    assert stored["supportingInfo"] == [{"type": "Composition",
                                         "identifier": {"system": "urn:therapy-hub:id", "value": "c1"}}]
    assert emr.resources("Composition") == [] and "1 resolved to EMR ids" in result.detail


def test_cycles_and_depth_end_in_logical_references(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    one = patient("p1", "M1", link=[{"other": {"reference": "Patient/p2"}, "type": "seealso"}])
    two = patient("p2", "M2", link=[{"other": {"reference": "Patient/p1"}, "type": "seealso"}])
    connector = make_connector(scope="system/*.cruds")
    connector.send(make_delivery("job-1", in_context(one, two)))
    stored = {p["identifier"][0]["value"]: p for p in emr.resources("Patient")}
    assert stored["M2"]["link"][0]["other"] == {"type": "Patient",
                                               "identifier": {"system": "urn:therapy-hub:id", "value": "p1"}}
    assert stored["M1"]["link"][0]["other"] == {"reference": f"Patient/{stored['M2']['id']}"}

    chain = [{"resourceType": "Organization", "id": f"o{n}", "partOf": {"reference": f"Organization/o{n + 1}"}}
             for n in range(6)]
    result = connector.send(make_delivery("job-2", in_context(*chain)))
    written = {o["identifier"][0]["value"]: o for o in emr.resources("Organization")}
    assert sorted(written) == ["o0", "o1", "o2", "o3"]  # o1..o3: three dependency levels
    assert written["o3"]["partOf"] == {"type": "Organization",
                                       "identifier": {"system": "urn:therapy-hub:id", "value": "o4"}}
    assert written["o0"]["partOf"] == {"reference": f"Organization/{written['o1']['id']}"}
    assert "3 dependencies written" in result.detail


def test_a_type_the_hub_may_not_write_stays_logical(
    emr: SandboxEmr, make_connector: MakeConnector, rsa_key: rsa.RSAPrivateKey
) -> None:
    emr.register_client("referrals-only", public_pem(rsa_key), "system/*.rs system/ServiceRequest.cu", kid="rsa-1")
    connector = make_connector(client_id="referrals-only", scope="system/*.rs system/ServiceRequest.cu")
    result = connector.send(make_delivery("job-1", in_context(referral(), patient())))

    assert [(r.method, r.path, r.status) for r in emr.requests] == [
        ("GET", "/fhir/Patient", 200), ("PUT", "/fhir/Patient", 403), ("PUT", "/fhir/ServiceRequest", 201)]
    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"] == {"display": "the patient", "type": "Patient",
                                 "identifier": {"system": "urn:therapy-hub:id", "value": "p1"}}
    assert "1 logical" in result.detail


def test_a_refused_write_makes_a_retry_look_the_ids_up_again(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    connector.send(make_delivery("job-1", in_context(referral(), patient())))
    emr.reset()  # the EMR lost the Patient (merged away, restored from a backup...): the cache is stale

    with pytest.raises(PermanentError) as caught:
        connector.send(make_delivery("job-2", in_context(referral(status="on-hold"), patient())))
    assert caught.value.status == 400
    assert str(caught.value).endswith("-> 400 Bad Request: processing")

    result = connector.send(make_delivery("job-2", in_context(referral(status="on-hold"), patient())))
    assert "1 dependencies written" in result.detail
    [stored_patient] = emr.resources("Patient")
    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"]["reference"] == f"Patient/{stored_patient['id']}" and stored["status"] == "on-hold"


def test_the_cache_is_bounded(
    emr: SandboxEmr, make_connector: MakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("connectors.fhir_emr.connector.REFERENCE_CACHE_SIZE", 2)
    connector = make_connector()
    for n in range(3):
        connector.send(make_delivery(f"job-{n}", in_context(referral(f"sr{n}", f"R-{n}"), patient())))
    assert len(connector._emr_ids) == 2
    assert [key[0] for key in connector._emr_ids] == ["Patient", "ServiceRequest"]  # least recently used out


def test_keep_mode_sends_hub_ids(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    emr.configure(check_references=False)  # an EMR that mirrors the hub's ids
    connector = make_connector(reference_mode="keep")
    connector.send(make_delivery("job-1", in_context(referral(), patient())))

    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"] == {"reference": "Patient/p1", "display": "the patient"}
    assert emr.resources("Patient") == [] and [r.method for r in emr.requests] == ["PUT"]
    with pytest.raises(ConfigError, match="reference_mode"):
        make_connector(reference_mode="guess")


def test_a_malformed_context_bundle_is_refused_without_a_request(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    empty = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": []}).encode()
    without_id = json.dumps({"resourceType": "Bundle", "type": "collection",
                             "entry": [{"resource": {"resourceType": "Patient"}}]}).encode()
    for payload in (empty, without_id):
        with pytest.raises(PermanentError, match="payload is not a FHIR resource with an id"):
            make_connector().send(make_delivery(payload=payload))
    assert emr.requests == []


def test_the_sandbox_refuses_a_dangling_reference(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    with pytest.raises(PermanentError) as caught:  # hub ids sent as they are: nothing on the EMR
        make_connector(reference_mode="keep").send(make_delivery(payload=body(referral())))
    assert caught.value.status == 400
    assert str(caught.value).endswith("-> 400 Bad Request: processing")

    emr.configure(require_token=False)
    headers = {"Content-Type": "application/fhir+json"}
    task = {"resourceType": "Task", "status": "requested", "intent": "order",
            "identifier": [{"system": "urn:s", "value": "1"}],
            "basedOn": [{"reference": "ServiceRequest/x/_history/2"}]}
    with httpx.Client(base_url=emr.url, trust_env=False, headers=headers) as http:
        refused = http.put("/Task", params={"identifier": "urn:s|1"}, json=task)
        assert refused.status_code == 400
        [issue] = refused.json()["issue"]
        assert issue["code"] == "processing"
        assert issue["diagnostics"] == "Task.basedOn: ServiceRequest/x not found"
        assert http.post("/Task", json=task).status_code == 400
        assert http.put("/Task/t1", json=task | {"id": "t1"}).status_code == 400
        emr.seed({"resourceType": "ServiceRequest", "id": "x", "status": "active", "intent": "order"})
        assert http.put("/Task", params={"identifier": "urn:s|1"}, json=task).status_code == 201
        itself = task | {"id": "t2", "partOf": [{"reference": "Task/t2"}],
                         "focus": {"reference": "Binary-less/none"},
                         "owner": {"reference": "Device/not-served"}}
        assert http.put("/Task/t2", json=itself).status_code == 201  # itself, a bad type, an unserved type
        emr.configure(check_references=False)
        unchecked = task | {"id": "t3", "focus": {"reference": "Patient/nobody"}}
        assert http.put("/Task/t3", json=unchecked).status_code == 201


# ------------------------------------------------------------------------------- poll references


def test_poll_returns_references_the_hub_can_resolve(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    emr.seed({"resourceType": "Patient", "id": "emr-p",
              "identifier": [{"system": "urn:x", "value": "X"}, {"system": "urn:emr:mrn", "value": "M1"}]})
    emr.seed({"resourceType": "ServiceRequest", "id": "emr-sr", "status": "active", "intent": "order",
              "identifier": [{"system": "urn:emr:referral", "value": "R-1"}],
              "subject": {"reference": "Patient/emr-p"}})
    emr.seed({"resourceType": "Organization", "id": "emr-o",
              "identifier": [{"system": "urn:emr:npi", "value": "N"}, {"system": "urn:therapy-hub:id", "value": "o1"}]})
    task = {"resourceType": "Task", "id": "emr-t", "status": "accepted", "intent": "order",
            "identifier": [{"system": "urn:emr:referral", "value": "R-1"}],
            "focus": {"reference": "ServiceRequest/emr-sr", "display": "the referral"},
            "for": {"reference": f"{emr.url}/Patient/emr-p"},
            "owner": {"reference": "Organization/emr-o/_history/1"},
            "requester": {"reference": "Practitioner/not-there"},
            "input": [{"type": {"text": "d"}, "valueReference": {"reference": "Device/emr-d"}}],  # not served
            "basedOn": [{"reference": "#x"}], "contained": [{"resourceType": "Patient", "id": "x"}]}
    emr.seed(task)
    connector = make_connector(resource_types=["Task"])
    [item] = connector.poll(None, 10).items
    polled = json.loads(item.payload)

    assert item.external_id == "Task/emr-t/_history/1"
    assert polled["identifier"] == [{"system": "urn:hub:referral", "value": "R-1"}]
    assert polled["focus"] == {"display": "the referral", "type": "ServiceRequest",
                               "identifier": {"system": "urn:hub:referral", "value": "R-1"}}
    assert polled["for"] == {"type": "Patient", "identifier": {"system": "urn:hub:mrn", "value": "M1"}}
    assert polled["owner"] == {"type": "Organization", "identifier": {"system": "urn:therapy-hub:id", "value": "o1"}}
    assert polled["requester"] == {"type": "Practitioner",
                                   "identifier": {"system": f"{emr.url}/Practitioner", "value": "not-there"}}
    assert polled["input"][0]["valueReference"] == {
        "type": "Device", "identifier": {"system": f"{emr.url}/Device", "value": "emr-d"}}
    assert polled["basedOn"] == [{"reference": "#x"}]
    reads = [r.path for r in emr.requests if r.method == "GET" and r.path.count("/") == 3]
    assert sorted(reads) == ["/fhir/Device/emr-d", "/fhir/Organization/emr-o", "/fhir/Patient/emr-p",
                             "/fhir/Practitioner/not-there", "/fhir/ServiceRequest/emr-sr"]

    # the hub turns them into its own ids (hub.sync.polling), here with the hub's resources faked
    hub = {("ServiceRequest", "urn:hub:referral", "R-1"): ["sr1"], ("Patient", "urn:hub:mrn", "M1"): ["p1"]}
    resolved = resolve_references(polled, find=lambda t, s, v: hub.get((t, s, v), []),
                                  exists=lambda t, i: (t, i) == ("Organization", "o1"))
    assert resolved["focus"]["reference"] == "ServiceRequest/sr1" and resolved["for"]["reference"] == "Patient/p1"
    assert resolved["owner"]["reference"] == "Organization/o1"
    assert "reference" not in resolved["requester"] and "reference" not in resolved["input"][0]["valueReference"]

    with make_connector(resource_types=["Task"], reference_mode="keep") as keeping:
        [kept] = keeping.poll(None, 10).items
    assert json.loads(kept.payload)["focus"] == {"reference": "ServiceRequest/emr-sr", "display": "the referral"}


def test_poll_reads_each_referenced_resource_once(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    emr.seed({"resourceType": "Patient", "id": "emr-p", "identifier": [{"system": "urn:emr:mrn", "value": "M1"}]})
    for n in range(3):
        emr.seed({"resourceType": "Task", "id": f"t{n}", "status": "requested", "intent": "order",
                  "for": {"reference": "Patient/emr-p"}, "owner": {"reference": "Patient/emr-p"}})
    items = make_connector(resource_types=["Task"]).poll(None, 10).items
    assert len(items) == 3
    assert all(json.loads(i.payload)["for"]["identifier"] == {"system": "urn:hub:mrn", "value": "M1"} for i in items)
    assert [r.path for r in emr.requests if r.path == "/fhir/Patient/emr-p"] == ["/fhir/Patient/emr-p"]
