"""Direct certificates changed while the listener runs: a trust anchor added through the CLI or the
API is used from the next message on, a removed one is not (no restart); removal (CLI, API: admin
only, audited) and replacement (``--replace``; without it both stay in use)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub.app import create_app
from hub.cli import app
from hub.inbound.direct import DirectListener
from hub.settings import Settings
from hub.sync.config import SyncConfig
from hub.sync.direct_certs import DirectCerts
from hub.unit_of_work import unit_of_work
from sandboxes.direct_ca import TestCA
from sandboxes.hisp import CLINIC_ADDRESS, SandboxHisp
from tests.cli_env import cli_environment
from tests.inbound.direct_wire import send, signed_plan
from tests.security.conftest import add_client, bearer, get_token, secured

API = "/admin/api/direct/certs"


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


@pytest.fixture
def hub(settings: Settings, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with cli_environment(settings, monkeypatch):
        yield client


@pytest.fixture
def listener(settings: Settings, hub: TestClient, hisp: SandboxHisp) -> Iterator[DirectListener]:
    """The clinic's listener; its connector has its own certificate and key, the anchors only in the store."""
    config = {k: v for k, v in hisp.connector_config().items() if k != "trust_anchor_pems"}
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=settings.default_tenant, settings=settings).add_connector(
            name="clinic-direct", kind="direct", config=config)
    with DirectListener(settings, tenant=settings.default_tenant, source="clinic-direct") as running:
        yield running


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["direct", "certs", *args], catch_exceptions=False)


def refused_as(port: int, hisp: SandboxHisp) -> str | None:
    """None when the next message is accepted, else the refusal's text."""
    try:
        send(port, signed_plan(hisp))
    except smtplib.SMTPDataError as exc:
        assert exc.smtp_code == 554
        return exc.smtp_error.decode()
    return None


def test_anchors_added_and_removed_while_the_listener_runs(hub: TestClient, hisp: SandboxHisp,
                                                           listener: DirectListener, tmp_path: Path) -> None:
    assert "untrusted_signer" in (refused_as(listener.port, hisp) or "")  # no anchor yet
    ca = tmp_path / "ca.pem"
    ca.write_text(hisp.ca.cert_pem)
    assert cli("add", "--address", CLINIC_ADDRESS, "--cert", str(ca), "--trust-anchor").exit_code == 0
    assert refused_as(listener.port, hisp) is None  # the same listener, the new anchor
    assert hub.get("/fhir/DocumentReference").json()["total"] == 1
    [entry] = hub.get(API).json()
    deleted = hub.delete(f"{API}/{entry['id']}")
    assert deleted.status_code == 200 and deleted.json()["fingerprint"] == entry["fingerprint"]
    assert hub.get(API).json() == []
    assert "untrusted_signer" in (refused_as(listener.port, hisp) or "")
    assert hub.delete(f"{API}/{entry['id']}").status_code == 404
    # back through the API, gone again through the CLI
    assert hub.post(API, json={"address": CLINIC_ADDRESS, "cert": hisp.ca.cert_pem,
                               "trust_anchor": True}).status_code == 201
    assert refused_as(listener.port, hisp) is None
    removed = cli("remove", CLINIC_ADDRESS, "--kind", "anchor", "--fingerprint", entry["fingerprint"][:12])
    assert removed.exit_code == 0 and "removed trust anchor" in removed.output
    assert "untrusted_signer" in (refused_as(listener.port, hisp) or "")
    assert cli("remove", CLINIC_ADDRESS).exit_code == 1  # nothing left to remove
    assert hub.get("/fhir/DocumentReference").json()["total"] == 2
    audits = [e["resource"] for e in hub.get("/fhir/AuditEvent", params={"_count": "200"}).json()["entry"]]
    deletes = [a for a in audits if (a.get("outcomeDesc") or "").startswith(f"DELETE {API}/")]
    assert sorted(a["outcome"] for a in deletes) == ["0", "4"]  # removed; the second time not found


def test_replace_or_keep_both(settings: Settings, hub: TestClient, hisp: SandboxHisp, tmp_path: Path) -> None:
    old, new = TestCA("Old anchor"), TestCA("New anchor")
    for name, ca in (("old.pem", old), ("new.pem", new), ("hisp.pem", hisp.ca)):
        (tmp_path / name).write_text(ca.cert_pem)
    anchor = ["--address", CLINIC_ADDRESS, "--trust-anchor"]
    assert cli("add", *anchor, "--cert", str(tmp_path / "old.pem")).exit_code == 0
    assert cli("add", *anchor, "--cert", str(tmp_path / "new.pem")).exit_code == 0
    assert len(hub.get(API).json()) == 2  # a newer anchor alone keeps the old one in use
    with unit_of_work(settings, readonly=True) as session:
        before = DirectCerts(session, tenant=settings.default_tenant, settings=settings).changed_at()
    assert cli("add", *anchor, "--cert", str(tmp_path / "hisp.pem"), "--replace").exit_code == 0
    assert [v["subject"] for v in hub.get(API).json()] == [hisp.ca.certificate.subject.rfc4514_string()]
    # a certificate of ours is another kind: --replace of an anchor leaves it
    assert hub.post(API, json={"address": CLINIC_ADDRESS, "cert": hisp.clinic.cert_pem,
                               "key": hisp.clinic.key_pem}).status_code == 201
    assert hub.post(API, json={"address": CLINIC_ADDRESS, "cert": new.cert_pem, "trust_anchor": True,
                               "replace": True}).status_code == 201
    assert sorted((v["trust_anchor"], v["subject"]) for v in hub.get(API).json()) == [
        (False, hisp.clinic.certificate.subject.rfc4514_string()), (True, new.certificate.subject.rfc4514_string())]
    with unit_of_work(settings, readonly=True) as session:
        certs = DirectCerts(session, tenant=settings.default_tenant, settings=settings)
        after = certs.changed_at()
        assert before is not None and after is not None and after > before
    # a removal alone moves the stamp too (what the sync engine and the listener rebuild on)
    assert cli("remove", CLINIC_ADDRESS, "--kind", "cert").exit_code == 0
    with unit_of_work(settings, readonly=True) as session:
        assert DirectCerts(session, tenant=settings.default_tenant, settings=settings).changed_at() > after
    assert cli("remove", CLINIC_ADDRESS, "--fingerprint", "xyz").exit_code == 2


def test_only_an_admin_removes(settings: Settings, hisp: SandboxHisp) -> None:
    secure = secured(settings)
    admin, clinic = (add_client(secure, secure.default_tenant, role) for role in ("admin", "clinic"))
    with TestClient(create_app(secure), base_url="http://testserver") as api:
        as_admin, as_clinic = bearer(get_token(api, admin)), bearer(get_token(api, clinic))
        created = api.post(API, json={"address": CLINIC_ADDRESS, "cert": hisp.ca.cert_pem, "trust_anchor": True},
                           headers=as_admin)
        assert created.status_code == 201, created.text
        where = f"{API}/{created.json()['id']}"
        assert api.delete(where).status_code == 401
        assert api.delete(where, headers=as_clinic).status_code == 403
        assert len(api.get(API, headers=as_admin).json()) == 1
        assert api.delete(where, headers=as_admin).status_code == 200
        assert api.get(API, headers=as_admin).json() == []
