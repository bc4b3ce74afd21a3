"""The hub side of polled references (hub.sync.polling.resolve_references): a partner that keeps its
own ids names a target by type and business identifier; the hub points the Reference at its own
resource carrying that identifier, or leaves it logical - never at the partner's id."""

from __future__ import annotations

from typing import Any

import pytest

from hub.app import ensure_default_tenant
from hub.services import fhir_service
from hub.settings import Settings
from hub.sync.polling import HUB_ID_SYSTEM, _store_lookups, resolve_references
from hub.unit_of_work import unit_of_work

TENANT = "default"


class Hub:
    """Fake lookups: what the hub's store holds, and which lookups were made."""

    def __init__(self, by_identifier: dict[tuple[str, str, str], list[str]], held: set[tuple[str, str]]) -> None:
        self.by_identifier = by_identifier
        self.held = held
        self.calls: list[tuple[str, ...]] = []

    def find(self, kind: str, system: str, value: str) -> list[str]:
        self.calls.append(("find", kind, system, value))
        return self.by_identifier.get((kind, system, value), [])

    def exists(self, kind: str, resource_id: str) -> bool:
        self.calls.append(("exists", kind, resource_id))
        return (kind, resource_id) in self.held

    def resolve(self, resource: Any, **options: Any) -> Any:
        return resolve_references(resource, find=self.find, exists=self.exists, **options)


MRN = {"system": "urn:hub:mrn", "value": "M1"}


def test_one_match_becomes_a_literal_reference() -> None:
    hub = Hub({("Patient", "urn:hub:mrn", "M1"): ["p1"]}, set())
    task = {"resourceType": "Task", "id": "emr-t", "identifier": [MRN | {"system": "urn:hub:task"}],
            "for": {"type": "Patient", "identifier": MRN, "display": "the patient"}}

    resolved = hub.resolve(task)

    assert resolved["for"] == {"reference": "Patient/p1", "type": "Patient", "identifier": MRN,
                               "display": "the patient"}
    assert resolved["identifier"] == task["identifier"]  # the resource's own identifiers are not references
    assert task["for"] == {"type": "Patient", "identifier": MRN, "display": "the patient"}  # a copy
    assert hub.calls == [("find", "Patient", "urn:hub:mrn", "M1")]


@pytest.mark.parametrize("matches", [[], ["p1", "p2"]], ids=["none", "several"])
def test_no_single_match_stays_logical(matches: list[str]) -> None:
    hub = Hub({("Patient", "urn:hub:mrn", "M1"): matches}, set())
    resolved = hub.resolve({"subject": {"type": "Patient", "identifier": MRN}})
    assert resolved["subject"] == {"type": "Patient", "identifier": MRN}


def test_the_hub_id_system_names_the_hub_id() -> None:
    hub = Hub({}, {("ServiceRequest", "sr1")})
    reference = {"type": "ServiceRequest", "identifier": {"system": HUB_ID_SYSTEM, "value": "sr1"}}
    assert hub.resolve({"focus": reference})["focus"]["reference"] == "ServiceRequest/sr1"
    assert hub.calls == [("exists", "ServiceRequest", "sr1")]  # no search needed

    gone = {"type": "ServiceRequest", "identifier": {"system": HUB_ID_SYSTEM, "value": "deleted"}}
    assert "reference" not in hub.resolve({"focus": gone})["focus"]

    own = {"type": "ServiceRequest", "identifier": {"system": "urn:clinic:hub-id", "value": "sr1"}}
    assert "reference" not in hub.resolve({"focus": own})["focus"]
    assert hub.resolve({"focus": own}, hub_id_systems={"urn:clinic:hub-id"})["focus"]["reference"] == (
        "ServiceRequest/sr1"
    )


def test_a_partner_id_is_never_kept_as_a_hub_id() -> None:
    hub = Hub({("Patient", "urn:hub:mrn", "M1"): ["p1"]}, {("Patient", "p1"), ("Patient", "hub-known")})

    # the identifier wins over an id the hub does not know
    assert hub.resolve({"subject": {"reference": "Patient/emr-9", "identifier": MRN}})["subject"] == {
        "reference": "Patient/p1", "identifier": MRN}
    # unresolvable, and the id is unknown here: the literal reference goes, the logical one stays
    other = {"system": "urn:hub:mrn", "value": "M2"}
    assert hub.resolve({"subject": {"reference": "Patient/emr-9", "identifier": other}})["subject"] == {
        "type": "Patient", "identifier": other}
    # unresolvable, and the hub happens to hold a resource of that id: still not kept, that id is the
    # partner's (numeric ids collide), and the identifier said it is someone the hub does not know
    assert hub.resolve({"subject": {"reference": "Patient/hub-known", "identifier": other}})["subject"] == {
        "type": "Patient", "identifier": other}


def test_what_is_left_alone() -> None:
    hub = Hub({("Patient", "urn:hub:mrn", "M1"): ["p1"]}, set())
    resource = {
        "resourceType": "QuestionnaireResponse",  # a single identifier of the resource itself
        "identifier": {"system": "urn:hub:mrn", "value": "M1"},
        "subject": {"reference": "Patient/emr-9"},  # no identifier: nothing to look up
        "author": {"identifier": MRN},  # no type, no reference: the type is unknown
        "source": {"type": "patient", "identifier": MRN},  # not a resource type
        "partOf": [{"identifier": {"system": "urn:x"}, "type": "Procedure"}],  # no value
        "contained": [{"resourceType": "Observation", "subject": {"type": "Patient", "identifier": MRN}}],
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
    }
    assert hub.resolve(resource) == resource and hub.calls == []


def test_references_anywhere_in_the_tree() -> None:
    hub = Hub({("ServiceRequest", "urn:hub:referral", "R-1"): ["sr1"], ("Patient", "urn:hub:mrn", "M1"): ["p1"]},
              set())
    referral = {"system": "urn:hub:referral", "value": "R-1"}
    resource = {"basedOn": [{"type": "ServiceRequest", "identifier": referral}],
                "extension": [{"url": "urn:ext", "valueReference": {"type": "Patient", "identifier": MRN}}],
                "input": [{"valueReference": {"reference": "Patient/emr-1/_history/4", "identifier": MRN}}]}
    resolved = hub.resolve(resource)
    assert resolved["basedOn"][0]["reference"] == "ServiceRequest/sr1"
    assert resolved["extension"][0]["valueReference"]["reference"] == "Patient/p1"
    assert resolved["input"][0]["valueReference"] == {"reference": "Patient/p1", "identifier": MRN}


# --------------------------------------------------------------------------- over the store


@pytest.fixture
def store(settings: Settings) -> Settings:
    ensure_default_tenant(settings)
    return settings


def test_lookups_over_the_hubs_store(store: Settings) -> None:
    odd = {"system": "urn:hub:mrn", "value": "A,B$C\\D|E"}
    with unit_of_work(store) as session:
        fhir = fhir_service(session, store, TENANT, "/fhir")
        fhir.update("Patient", "p1", {"resourceType": "Patient", "id": "p1", "identifier": [odd, MRN]})
        fhir.update("Patient", "p2", {"resourceType": "Patient", "id": "p2", "identifier": [MRN]})
        fhir.update("Patient", "p3", {"resourceType": "Patient", "id": "p3"})
        fhir.delete("Patient", "p3")
    with unit_of_work(store) as session:
        find, exists = _store_lookups(fhir_service(session, store, TENANT, "/fhir"))
        assert find("Patient", odd["system"], odd["value"]) == ["p1"]  # escaped for the store's search
        assert sorted(find("Patient", "urn:hub:mrn", "M1")) == ["p1", "p2"]
        assert find("Patient", "urn:hub:mrn", "A") == []
        assert find("NotAType", "urn:hub:mrn", "M1") == []  # the store refuses the type: no target
        assert exists("Patient", "p1") and not exists("Patient", "p3") and not exists("Patient", "nope")
        assert not exists("NotAType", "p1")

        resolved = resolve_references(
            {"subject": {"type": "Patient", "identifier": odd}, "performer": [{"type": "Patient", "identifier": MRN}]},
            find=find, exists=exists,
        )
    assert resolved["subject"]["reference"] == "Patient/p1"
    assert "reference" not in resolved["performer"][0]  # two patients carry it: ambiguous, left logical
