"""Read-only transactions of the store, and FHIR reads served from them.

A read-only transaction must not write (a write raises, it is never silently upgraded), must not
wait for the SQLite write lock, and must leave its pooled connection writable. Through the API,
every read is still audited: exactly one AuditEvent each, and no response without it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from hub.app import create_app
from hub.fhir.service import FhirService
from hub.settings import Settings
from hub.store.db import READONLY_OPTION, build_engine, engine_for, readonly_engine, transaction
from hub.store.models import Resource, Tenant
from hub.store.repository import ensure_tenant

FHIR = {"Content-Type": "application/fhir+json"}
NOW = datetime(2026, 1, 5, 9, 30)
PATIENT = {"resourceType": "Patient", "name": [{"family": "Okonkwo", "given": ["Chidi"]}]}


def _seed_patient(url: str, tenant: str = "t1") -> str:
    with transaction(url) as session:
        ensure_tenant(session, tenant_id=tenant, name=tenant, now=NOW)
        svc = FhirService(session, tenant=tenant, base_url="http://hub/fhir")
        return svc.create("Patient", dict(PATIENT)).stored.id


def _dbapi(session: Session) -> Any:
    return session.connection().connection.dbapi_connection


# ------------------------------------------------------------------ the store


def test_a_read_only_transaction_reads_but_cannot_write(settings: Settings) -> None:
    url = settings.database_url
    patient_id = _seed_patient(url)
    with transaction(url, readonly=True) as session:
        svc = FhirService(session, tenant="t1", base_url="http://hub/fhir")
        assert json.loads(svc.read("Patient", patient_id).content or "")["name"][0]["family"] == "Okonkwo"
        assert session.connection().get_execution_options()[READONLY_OPTION] is True
        if session.get_bind().dialect.name == "postgresql":
            assert session.execute(text("SHOW transaction_read_only")).scalar() == "on"
        else:
            assert session.execute(text("PRAGMA query_only")).scalar() == 1
        with pytest.raises(DBAPIError, match="(?i)read-?only"):
            session.execute(insert(Tenant).values(id="t2", name="t2", created_at=NOW))
        session.rollback()
    # nor through the ORM, at commit
    with pytest.raises(DBAPIError, match="(?i)read-?only"):
        with transaction(url, readonly=True) as session:
            session.add(Tenant(id="t3", name="t3", created_at=NOW))
    with transaction(url) as session:
        assert set(session.scalars(select(Tenant.id))) == {"t1"}


@pytest.mark.parametrize("fails", [False, True], ids=["committed", "raised"])
def test_the_pooled_connection_is_writable_again_after_a_read_only_transaction(
    settings: Settings, fails: bool
) -> None:
    url = settings.database_url
    _seed_patient(url)
    raw = None
    with pytest.raises(RuntimeError) if fails else nullcontext():
        with transaction(url, readonly=True) as session:
            session.execute(select(Tenant.id)).all()
            raw = _dbapi(session)
            if fails:
                raise RuntimeError("the work failed")
    assert raw is not None
    # back in the pool (not discarded), and reset to read-write on its way there
    if engine_for(url).dialect.name == "postgresql":
        assert not raw.read_only
    else:
        assert raw.execute("PRAGMA query_only").fetchone()[0] == 0
    # and every pooled connection takes writes again (the same one among them)
    engine = engine_for(url)
    held, found = [], False
    try:
        for _ in range(engine.pool.size() + 2):
            conn = engine.connect()
            held.append(conn)
            if conn.connection.dbapi_connection is raw:
                found = True
                conn.execute(insert(Tenant).values(id="t9", name="t9", created_at=NOW))
                conn.commit()
                break
    finally:
        for conn in held:
            conn.close()
    assert found, "the connection of the read-only transaction was not returned to the pool"
    with transaction(url) as session:
        assert "t9" in set(session.scalars(select(Tenant.id)))


@pytest.fixture
def impatient_engine(settings: Settings) -> Iterator[Engine]:
    """A second engine on the SQLite store, built like the hub's, that never waits for a lock
    (busy_timeout 0): anything that would wait fails at once with "database is locked"."""
    if make_url(settings.database_url).get_backend_name() != "sqlite":
        pytest.skip("the single write lock is SQLite's")
    engine = build_engine(settings.database_url)

    @event.listens_for(engine, "connect")
    def _no_waiting(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    yield engine
    engine.dispose()


def test_a_read_only_transaction_does_not_wait_for_the_sqlite_write_lock(
    settings: Settings, impatient_engine: Engine
) -> None:
    patient_id = _seed_patient(settings.database_url)
    holder = sqlite3.connect(make_url(settings.database_url).database or "", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process writing: it holds the write lock
        holder.execute("UPDATE tenants SET name = 'renamed' WHERE id = 't1'")
        # a read-write transaction would have to wait for the lock (here: it fails at once)
        with pytest.raises(OperationalError, match="database is locked"):
            with Session(impatient_engine) as session, session.begin():
                session.execute(select(Tenant.id)).all()
        # a read-only one reads at once, the last committed state
        with Session(readonly_engine(impatient_engine)) as session, session.begin():
            svc = FhirService(session, tenant="t1", base_url="http://hub/fhir")
            assert svc.read("Patient", patient_id).id == patient_id
            assert session.scalar(select(Tenant.name).where(Tenant.id == "t1")) == "t1"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# ------------------------------------------------------------------ through the API


def _audit_events(url: str) -> dict[str, dict[str, Any]]:
    with transaction(url, readonly=True) as session:
        rows = session.scalars(select(Resource.content).where(Resource.resource_type == "AuditEvent"))
        return {event["id"]: event for event in (json.loads(row or "{}") for row in rows)}


def test_every_read_is_audited_once_with_outcome_0(client: TestClient, settings: Settings) -> None:
    created = client.post("/fhir/Patient", content=json.dumps(PATIENT), headers=FHIR)
    assert created.status_code == 201
    pid = created.json()["id"]
    reads = [
        ("read", lambda: client.get(f"/fhir/Patient/{pid}")),
        ("vread", lambda: client.get(f"/fhir/Patient/{pid}/_history/1")),
        ("search-type", lambda: client.get("/fhir/Patient", params={"_id": pid})),
        ("search-type", lambda: client.post("/fhir/Patient/_search", data={"_id": pid})),
        ("history-instance", lambda: client.get(f"/fhir/Patient/{pid}/_history")),
        ("history-type", lambda: client.get("/fhir/Patient/_history")),
        ("history-system", lambda: client.get("/fhir/_history")),
    ]
    for interaction, call in reads:
        before = _audit_events(settings.database_url)
        response = call()
        assert response.status_code == 200, (interaction, response.text)
        new = [e for i, e in _audit_events(settings.database_url).items() if i not in before]
        assert len(new) == 1, (interaction, new)
        assert new[0]["subtype"][0]["code"] == interaction
        assert new[0]["outcome"] == "0"
    # a failed read: one event, outcome 4
    before = _audit_events(settings.database_url)
    assert client.get("/fhir/Patient/not-there").status_code == 404
    new = [e for i, e in _audit_events(settings.database_url).items() if i not in before]
    assert [(e["subtype"][0]["code"], e["outcome"]) for e in new] == [("read", "4")]


def test_reads_run_read_only_and_writes_read_write(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, bool]] = []

    def spy(name: str) -> None:
        original = getattr(FhirService, name)

        def wrapper(self: FhirService, *args: Any, **kwargs: Any) -> Any:
            seen.append((name, bool(self.session.connection().get_execution_options().get(READONLY_OPTION))))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(FhirService, name, wrapper)

    for name in ("read", "vread", "search", "history", "create", "update", "delete"):
        spy(name)
    pid = client.post("/fhir/Patient", content=json.dumps(PATIENT), headers=FHIR).json()["id"]
    client.get(f"/fhir/Patient/{pid}")
    client.get(f"/fhir/Patient/{pid}/_history/1")
    client.get("/fhir/Patient", params={"_id": pid})
    client.get(f"/fhir/Patient/{pid}/_history")
    client.put(f"/fhir/Patient/{pid}", content=json.dumps({**PATIENT, "id": pid}), headers=FHIR)
    client.delete(f"/fhir/Patient/{pid}")
    assert seen == [
        ("create", False), ("read", True), ("vread", True), ("search", True), ("history", True),
        ("update", False), ("delete", False),
    ]


def test_a_read_whose_audit_cannot_be_stored_is_not_served(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(settings), base_url="http://testserver", raise_server_exceptions=False) as api:
        pid = api.post("/fhir/Patient", content=json.dumps(PATIENT), headers=FHIR).json()["id"]
        original = FhirService.record_audit

        def failing(self: FhirService, event: dict[str, Any]) -> None:
            if event["outcome"] == "0":
                raise RuntimeError("the audit store is unavailable")
            original(self, event)

        monkeypatch.setattr(FhirService, "record_audit", failing)
        before = _audit_events(settings.database_url)
        response = api.get(f"/fhir/Patient/{pid}")
        assert response.status_code == 500
        assert "Okonkwo" not in response.text
        new = [e for i, e in _audit_events(settings.database_url).items() if i not in before]
        assert [(e["subtype"][0]["code"], e["outcome"]) for e in new] == [("read", "8")]
