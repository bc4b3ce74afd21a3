"""The ``documents`` context (hub.sync.context.with_documents): a Task's delivery also carries the
DocumentReferences of the CarePlan it is about; anything else is left as it is."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub.app import ensure_default_tenant
from hub.fhir.service import FhirService
from hub.settings import Settings
from hub.sync.context import with_documents, with_references
from hub.unit_of_work import unit_of_work
from tests.connectors.fax.support import PLAN_ID, TASK_ID, plan_pdf, resources

TENANT = "default"
BASE = "http://testserver/fhir"


@pytest.fixture(autouse=True)
def store(settings: Settings) -> Settings:
    ensure_default_tenant(settings)
    return settings


def _put(settings: Settings, items: list[dict[str, Any]]) -> None:
    with unit_of_work(settings) as session:
        fhir = FhirService(session, tenant=TENANT, base_url=BASE, listeners=[])
        for resource in items:
            fhir.update(resource["resourceType"], resource["id"], resource)


def _types(payload: bytes) -> list[str]:
    return [e["resource"]["resourceType"] for e in json.loads(payload)["entry"]]


def test_a_task_carries_the_documents_of_its_plan(settings: Settings) -> None:
    items = resources(plan_pdf())
    other = {**items[-1], "id": "other-doc", "context": {"related": [{"reference": "CarePlan/another"}]},
             "identifier": [{"system": "urn:x", "value": "1"}]}
    _put(settings, [*items, other])
    task = json.dumps(items[0]).encode()
    with unit_of_work(settings) as session:
        alone = with_documents(session, tenant=TENANT, base=BASE, payload=task)
        referenced = with_references(session, tenant=TENANT, base=BASE, payload=task)
        both = with_documents(session, tenant=TENANT, base=BASE, payload=referenced)
        again = with_documents(session, tenant=TENANT, base=BASE, payload=both)
        plan = json.dumps(items[1]).encode()
        untouched = with_documents(session, tenant=TENANT, base=BASE, payload=plan)
    assert _types(alone) == ["Task", "DocumentReference"]
    assert json.loads(alone)["entry"][0]["resource"]["id"] == TASK_ID
    assert _types(both)[:-1] == _types(referenced) and _types(both)[-1] == "DocumentReference"
    documents = [e["resource"] for e in json.loads(both)["entry"]
                 if e["resource"]["resourceType"] == "DocumentReference"]
    assert [d["context"]["related"][0]["reference"] for d in documents] == [f"CarePlan/{PLAN_ID}"]
    assert again == both  # nothing added twice
    assert untouched == plan  # not a Task: left as it is
