"""A stored document's intake is published after its channel's commit, through the unit of work's
enqueuer: never for a rolled-back transaction or savepoint, and a broker that fails loses nothing
(the document stays ``received`` for the intake sweep)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from hub.documents.inbound import accept_document
from hub.documents.intake import sweep_received
from hub.security.inbound import InboundPolicy
from hub.services import fhir_service
from hub.settings import Settings
from hub.sync.inbox import Inbox
from hub.unit_of_work import savepoint, unit_of_work
from mappings.documents import INTAKE_SYSTEM, InboundDocument

PDF = b"%PDF-1.4\n% a received fax\n%%EOF\n"


class Recording:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.delivered: list[int] = []
        self.taken_in: list[tuple[str, str]] = []

    def deliver(self, job_ids: Iterable[int], *, countdown: float | None = None) -> int:
        self.delivered.extend(job_ids)
        return 0

    def intake(self, documents: Iterable[tuple[str, str]]) -> int:
        if self.fail:
            raise ConnectionError("broker down")
        asked = list(documents)
        self.taken_in.extend(asked)
        return len(asked)


def _accept(session: object, settings: Settings, external_id: str) -> str:
    tenant = settings.default_tenant
    inbox = Inbox(session, tenant=tenant, settings=settings)  # type: ignore[arg-type]
    message = inbox.record_inbound(source="fax-vendor", external_id=external_id, raw=b"raw webhook body")
    policy = InboundPolicy(tenant=tenant, source="fax-vendor", channel="fax")
    fhir = fhir_service(session, settings, tenant, "/fhir", policy=policy)  # type: ignore[arg-type]
    document = InboundDocument(channel="fax", source="fax-vendor", external_id=external_id, content=PDF,
                               content_type="application/pdf", sender="+15551230000")
    return str(accept_document(fhir, inbox, message, document, policy=policy)["id"])


def test_the_intake_is_published_after_the_commit_only(client: TestClient, settings: Settings) -> None:
    recording = Recording()
    with unit_of_work(settings, enqueuer=recording) as session:
        first = _accept(session, settings, "fax-1")
        assert recording.taken_in == []  # not before the commit
    assert recording.taken_in == [(settings.default_tenant, first)]

    recording = Recording()
    with pytest.raises(RuntimeError), unit_of_work(settings, enqueuer=recording) as session:
        _accept(session, settings, "fax-2")
        raise RuntimeError("the channel failed after storing the document")
    assert recording.taken_in == []

    recording = Recording()
    with unit_of_work(settings, enqueuer=recording) as session:
        part = savepoint(session)
        _accept(session, settings, "fax-3")
        part.rollback()  # a refused part of the transaction: its document is gone, so is its intake
        kept = _accept(session, settings, "fax-4")
    assert recording.taken_in == [(settings.default_tenant, kept)]


def test_a_failed_publish_leaves_the_document_to_the_sweep(client: TestClient, settings: Settings) -> None:
    failing = Recording(fail=True)
    with unit_of_work(settings, enqueuer=failing) as session:  # the commit stands; nothing raised
        document_id = _accept(session, settings, "fax-5")
    assert failing.taken_in == []
    assert sweep_received(settings, grace=timedelta(seconds=-5)) == 1
    with unit_of_work(settings, readonly=True) as session:
        fhir = fhir_service(session, settings, settings.default_tenant, "/fhir")
        stored = fhir.read("DocumentReference", document_id).content or ""
    # looked at by the sweep: a PDF with no return code waits in triage
    assert INTAKE_SYSTEM in stored and '"triage"' in stored
