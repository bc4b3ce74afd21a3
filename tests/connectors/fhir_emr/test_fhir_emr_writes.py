"""Conditional writes, identifier keys and mapping, and the poll cursor."""

from __future__ import annotations

import json

import pytest

from connectors.base import (
    AuthError,
    PermanentError,
)
from connectors.fhir_emr import (
    map_identifier_systems,
)
from sandboxes.emr import SandboxEmr
from tests.connectors.conftest import make_delivery
from tests.connectors.fhir_emr.conftest import MakeConnector, body, fhir_requests, patient

# -------------------------------------------------------------------------------------- writes


def test_conditional_update_creates_then_updates(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector()

    created = connector.send(make_delivery("job-1", body(patient(gender="female"))))
    again = connector.send(make_delivery("job-1", body(patient(gender="female"))))  # a worker retry
    replayed = connector.send(make_delivery("job-1-replay", body(patient(gender="female"))))
    updated = connector.send(make_delivery("job-2", body(patient(gender="other"))))

    assert (created.status, created.remote_id) == (201, "s000001")
    assert "FHIR conditional update" in created.detail and "Patient/p1 by urn:emr:mrn" in created.detail
    assert "-> 201 created as Patient/s000001 (version 1)" in created.detail
    assert again.status == 201 and emr.duplicates == 1
    assert (replayed.status, replayed.remote_id) == (200, "s000001")
    assert (updated.status, updated.remote_id) == (200, "s000001") and "version 3" in updated.detail
    assert "M1" not in created.detail + updated.detail  # identifier values may be PHI

    [stored] = emr.resources("Patient")  # no duplicates
    assert stored["id"] == "s000001" and stored["gender"] == "other"
    assert stored["identifier"] == [{"system": "urn:emr:mrn", "value": "M1"}]
    assert stored["meta"]["profile"] == ["urn:profile"] and stored["meta"]["versionId"] == "3"
    put = fhir_requests(emr, "PUT")[0]
    assert put.path == "/fhir/Patient" and put.query == "identifier=urn%3Aemr%3Amrn%7CM1"
    sent = json.loads(put.body)
    assert "id" not in sent and sent["meta"] == {"profile": ["urn:profile"]}
    assert put.idempotency_key == "job-1" and put.correlation_id == "corr-123"


def test_the_key_identifier_prefers_a_mapped_system(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    resource = patient(
        identifier=[{"system": "urn:other", "value": "X"}, {"system": "urn:hub:mrn", "value": "M1"}]
    )
    make_connector().send(make_delivery(payload=body(resource)))
    assert fhir_requests(emr, "PUT")[0].query == "identifier=urn%3Aemr%3Amrn%7CM1"


def test_a_resource_without_identifier_is_keyed_by_the_hub_id(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    task = {"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order"}
    connector.send(make_delivery("job-1", body(task)))
    connector.send(make_delivery("job-2", body(task | {"status": "accepted"})))

    [stored] = emr.resources("Task")
    assert stored["identifier"] == [{"system": "urn:therapy-hub:id", "value": "t1"}]
    assert stored["status"] == "accepted" and stored["meta"]["versionId"] == "2"


def test_identifier_values_are_escaped(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector()
    odd = patient(mrn="A|B,C$D\\E")
    connector.send(make_delivery("job-1", body(odd)))
    connector.send(make_delivery("job-2", body(odd | {"gender": "male"})))
    [stored] = emr.resources("Patient")
    assert stored["identifier"][0]["value"] == "A|B,C$D\\E" and stored["meta"]["versionId"] == "2"


def test_create_only_types_use_if_none_exist(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector(create_only_types=["ServiceRequest"])
    referral = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "requisition": {"system": "urn:hub:referral", "value": "R-1"},
        "identifier": [{"system": "urn:hub:referral", "value": "R-1"}],
    }
    created = connector.send(make_delivery("job-1", body(referral)))
    kept = connector.send(make_delivery("job-2", body(referral | {"status": "revoked"})))

    assert (created.status, kept.status) == (201, 200) and created.remote_id == kept.remote_id
    assert "already there, unchanged" in kept.detail
    [stored] = emr.resources("ServiceRequest")
    assert stored["status"] == "active" and stored["requisition"]["system"] == "urn:emr:referral"
    posts = fhir_requests(emr, "POST")
    assert [p.path for p in posts] == ["/fhir/ServiceRequest"] * 2
    assert posts[0].headers["if-none-exist"] == "identifier=urn%3Aemr%3Areferral%7CR-1"


def test_several_matches_are_permanent(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    for emr_id in ("e1", "e2"):
        emr.seed(
            {
                "resourceType": "Patient",
                "id": emr_id,
                "identifier": [{"system": "urn:emr:mrn", "value": "M1"}],
            }
        )
    with pytest.raises(PermanentError) as caught:
        make_connector().send(make_delivery(payload=body(patient())))
    assert caught.value.status == 412 and not isinstance(caught.value, AuthError)
    assert str(caught.value).endswith("-> 412 Precondition Failed: multiple-matches")


def test_a_payload_that_is_not_a_resource_is_refused_without_a_request(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    with pytest.raises(PermanentError, match="payload is not a FHIR resource with an id"):
        make_connector().send(make_delivery(payload=b'{"resourceType": "Patient"}'))
    assert emr.requests == [] and emr.token_requests == []


# ----------------------------------------------------------------------- identifier mapping, poll


def test_identifier_systems_are_mapped_both_ways(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector(resource_types=["ServiceRequest"])
    referral = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "identifier": [{"system": "urn:hub:referral", "value": "R-1"}, {"system": "urn:x", "value": "1"}],
        "subject": {"reference": "Patient/p1", "identifier": {"system": "urn:hub:mrn", "value": "M1"}},
        "code": {"coding": [{"system": "urn:hub:mrn", "code": "not-an-identifier"}]},
        "contained": [
            {"resourceType": "Patient", "id": "c", "identifier": [{"system": "urn:hub:mrn", "value": "M2"}]}
        ],
    }
    connector.send(make_delivery(payload=body(referral)))

    [stored] = emr.resources("ServiceRequest")
    assert [i["system"] for i in stored["identifier"]] == ["urn:emr:referral", "urn:x"]
    assert stored["subject"]["identifier"]["system"] == "urn:emr:mrn"
    assert stored["contained"][0]["identifier"][0]["system"] == "urn:emr:mrn"
    assert stored["code"]["coding"][0]["system"] == "urn:hub:mrn"  # codings are not identifiers

    emr.seed(
        {
            "resourceType": "ServiceRequest",
            "id": "emr-made",
            "status": "active",
            "intent": "order",
            "identifier": [{"system": "urn:emr:referral", "value": "R-2"}],
        }
    )
    items = [json.loads(item.payload) for item in connector.poll(None, 10).items]
    assert [i["identifier"][0]["system"] for i in items] == ["urn:hub:referral", "urn:hub:referral"]
    assert items[0]["subject"]["identifier"]["system"] == "urn:hub:mrn"
    assert items[0]["identifier"][1] == {"system": "urn:x", "value": "1"}

    assert map_identifier_systems({"valueIdentifier": {"system": "a"}}, {"a": "b"}) == {
        "valueIdentifier": {"system": "b"}
    }


def test_poll_resumes_from_the_cursor_after_a_crash(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    for n in range(7):
        emr.seed(
            {
                "resourceType": "Patient",
                "id": f"e{n}",
                "identifier": [{"system": "urn:emr:mrn", "value": f"M{n}"}],
            }
        )
    first = make_connector(resource_types=["Patient"], page_size=2)
    batch = first.poll(None, 3)
    first.close()  # the worker dies; only the stored cursor survives

    second = make_connector(resource_types=["Patient"], page_size=2)
    rest = second.poll(batch.next_cursor, 100)
    seen = [i.external_id for i in batch.items + rest.items]

    assert seen == [f"Patient/e{n}/_history/1" for n in range(7)]
    assert all(json.loads(i.payload)["identifier"][0]["system"] == "urn:hub:mrn" for i in rest.items)
    assert second.poll(rest.next_cursor, 100).items == []
    assert emr.tokens_issued == 2  # each instance got its own token
    with pytest.raises(PermanentError, match="invalid fhir_emr poll cursor"):
        second.poll("garbage", 10)
