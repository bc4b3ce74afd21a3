"""Two completions of one certification at once (the portal and a signed page that came back, two
copies of the same scan): the Task is written only over the version each read, so the second is
refused and the first's signature stays."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from hub.documents.intake import IntakeOutcome, run_intake
from hub.errors import Conflict
from hub.referrals.plans import PlanService, SignIn
from hub.services import fhir_service
from hub.settings import Settings
from hub.store.db import engine_for
from hub.unit_of_work import unit_of_work
from mappings.documents import INTAKE_SYSTEM
from sandboxes.scans import scanned_pdf
from tests.documents.plans import certification_page, receive


def plans(settings: Settings, session: Session) -> PlanService:
    return PlanService(fhir_service(session, settings, settings.default_tenant, "/fhir"))


def mark(name: str) -> SignIn:
    return SignIn(signature=base64.b64encode(name.encode()).decode(), signature_type="text/plain")


def test_a_second_completion_of_the_same_version_is_refused(client: TestClient, settings: Settings) -> None:
    _, task_id = certification_page(client)
    read = client.get(f"/fhir/Task/{task_id}")
    version = read.headers["ETag"]
    with unit_of_work(settings) as session:
        plans(settings, session).sign(task_id, mark("first"), if_match=version)
    with unit_of_work(settings) as session, pytest.raises(Conflict):
        plans(settings, session).sign(task_id, mark("second"), if_match=version)
    task = client.get(f"/fhir/Task/{task_id}").json()
    assert task["status"] == "completed"
    [output] = task["output"]
    assert base64.b64decode(output["valueAttachment"]["data"]) == b"first"



def race(settings: Settings, task_id: str, second: Callable[[], object]) -> dict[str, object]:
    """The portal completes ``task_id`` and, before it commits, ``second`` runs (in a thread of its
    own) until PostgreSQL shows it waiting for a lock the portal's transaction holds (it has read the
    Task as it was and its write waits for the portal's row lock); then the portal commits. What each
    ended with (None, or the error)."""
    signed, commit = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}
    backend: list[int] = []

    def first() -> None:
        try:
            with unit_of_work(settings) as session:
                plans(settings, session).sign(task_id, mark("first"))
                backend.append(int(session.execute(text("SELECT pg_backend_pid()")).scalar_one()))
                signed.set()
                commit.wait(30)
            outcomes["first"] = None
        except BaseException as error:  # noqa: BLE001 - what the thread ended with, for the assertions
            outcomes["first"] = error
            signed.set()

    def other() -> None:
        try:
            outcomes["second"] = second()
        except BaseException as error:  # noqa: BLE001
            outcomes["second"] = error

    threads = [threading.Thread(target=first), threading.Thread(target=other)]
    threads[0].start()
    blocked = False
    try:
        assert signed.wait(30) and backend, outcomes.get("first")
        threads[1].start()
        blocked = _blocked_behind(settings, backend[0], give_up=threads[1])
    finally:
        commit.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join(30)
    assert blocked, f"the second never waited for the first's lock: {outcomes.get('second')!r}"
    assert not any(t.is_alive() for t in threads)
    return outcomes


def _blocked_behind(settings: Settings, pid: int, *, give_up: threading.Thread) -> bool:
    """Whether a backend comes to wait for a lock held by backend ``pid`` (polled on a connection of
    its own) before ``give_up`` ends: an observed state, not a guess at how long reading takes."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")
    deadline = time.monotonic() + 30
    engine = engine_for(settings.database_url)
    try:
        with engine.connect() as connection:
            while time.monotonic() < deadline and give_up.is_alive():
                if connection.execute(query, {"pid": pid}).scalar_one():
                    return True
                connection.rollback()
                time.sleep(0.01)
    finally:
        engine.dispose()
    return False


def only_postgresql(settings: Settings) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers: the second never reads a version the first is replacing")


def assert_first_signature_kept(client: TestClient, task_id: str) -> None:
    [output] = client.get(f"/fhir/Task/{task_id}").json()["output"]
    assert base64.b64decode(output["valueAttachment"]["data"]) == b"first"


def test_of_two_completions_at_once_the_second_is_refused(client: TestClient, settings: Settings) -> None:
    """Really at once (PostgreSQL, read committed): the second reads the Task while the first has
    written it but not committed; its write then waits for the first's row lock."""
    only_postgresql(settings)
    _, task_id = certification_page(client)

    def portal() -> None:
        with unit_of_work(settings) as session:
            plans(settings, session).sign(task_id, mark("second"))

    outcomes = race(settings, task_id, portal)
    assert outcomes["first"] is None
    assert isinstance(outcomes["second"], Conflict), outcomes["second"]
    assert_first_signature_kept(client, task_id)


def test_a_page_that_comes_back_while_the_portal_signs_is_a_duplicate(client: TestClient,
                                                                      settings: Settings) -> None:
    only_postgresql(settings)
    plan, task_id = certification_page(client)
    page = base64.b64decode(client.get(f"/fhir/{plan['document']}").json()["content"][0]["attachment"]["data"])
    document_id = receive(settings, scanned_pdf(page), "fax-1")
    outcomes = race(settings, task_id, lambda: run_intake(settings, settings.default_tenant, document_id))
    assert outcomes["first"] is None
    outcome = outcomes["second"]
    assert isinstance(outcome, IntakeOutcome), outcome
    assert (outcome.outcome, outcome.task, outcome.reason) == (
        "duplicate", task_id, "the certification was signed already")
    assert_first_signature_kept(client, task_id)
    document = client.get(f"/fhir/DocumentReference/{document_id}").json()
    assert any(c["coding"][0]["code"] == "duplicate" for c in document["category"]
               if c["coding"][0]["system"] == INTAKE_SYSTEM)
