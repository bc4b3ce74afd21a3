"""Direct certificates kept in the hub's store: ``hub direct certs add/list`` (PEM or DER; a key
that is not the certificate's or an expired certificate is refused), the admin API (never a key),
and a direct connector and its listener configured without certificates, using the store's."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from hub.cli import app
from hub.inbound.direct import DirectListener, load_identity
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.store.models import DirectCertificate
from hub.sync.config import SyncConfig
from hub.sync.delivery import deliver
from hub.sync.outbox import Outbox
from hub.unit_of_work import unit_of_work
from sandboxes.hisp import CLINIC_ADDRESS, PHYSICIAN_ADDRESS, SandboxHisp
from tests.cli_env import cli_environment
from tests.connectors.direct.test_connector import bundle

API = "/admin/api/direct/certs"


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


@pytest.fixture
def hub(settings: Settings, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The store behind the API ``client`` is also the CLI's, through the HUB_* environment."""
    with cli_environment(settings, monkeypatch):
        yield client


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["direct", "certs", *args], catch_exceptions=False)


def _files(tmp_path: Path, hisp: SandboxHisp) -> dict[str, Path]:
    der = serialization.Encoding.DER
    files = {
        "clinic.der": hisp.clinic.certificate.public_bytes(der),
        "clinic-key.der": hisp.clinic.key.private_bytes(der, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()),
        "clinic.pem": hisp.clinic.cert_pem.encode(), "clinic-key.pem": hisp.clinic.key_pem.encode(),
        "physician.pem": hisp.physician.cert_pem.encode(), "physician-key.pem": hisp.physician.key_pem.encode(),
        "ca.pem": hisp.ca.cert_pem.encode(),
        "expired.pem": hisp.ca.issue(CLINIC_ADDRESS, expired=True).cert_pem.encode(),
        "garbage.pem": b"not a certificate",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


def test_cli_adds_der_and_pem_and_lists_them_without_keys(hub: TestClient, settings: Settings,
                                                           hisp: SandboxHisp, tmp_path: Path) -> None:
    files = _files(tmp_path, hisp)
    added = cli("add", "--address", CLINIC_ADDRESS.upper(), "--cert", str(files["clinic.der"]),
                "--key", str(files["clinic-key.der"]))
    assert added.exit_code == 0, added.output
    assert f"certificate and key for {CLINIC_ADDRESS}" in added.output
    assert cli("add", "--address", CLINIC_ADDRESS, "--cert", str(files["ca.pem"]), "--trust-anchor").exit_code == 0
    assert cli("add", "--address", PHYSICIAN_ADDRESS, "--cert", str(files["physician.pem"])).exit_code == 0
    # the same certificate again replaces its entry
    assert cli("add", "--address", PHYSICIAN_ADDRESS, "--cert", str(files["physician.pem"])).exit_code == 0
    listed = cli("list")
    assert listed.exit_code == 0 and "ours (key)" in listed.output and "trust anchor" in listed.output
    assert "PRIVATE" not in listed.output
    body = hub.get(API).json()
    assert [(v["address"], v["trust_anchor"], v["has_key"]) for v in body] == [
        (CLINIC_ADDRESS, False, True), (CLINIC_ADDRESS, True, False), (PHYSICIAN_ADDRESS, False, False)]
    assert all("key" not in v for v in body)
    assert [v["address"] for v in hub.get(API, params={"address": PHYSICIAN_ADDRESS}).json()] == [PHYSICIAN_ADDRESS]
    with unit_of_work(settings, readonly=True) as session:
        [row] = session.scalars(select(DirectCertificate).where(DirectCertificate.key_encrypted.is_not(None))).all()
        assert row.key_encrypted and b"PRIVATE" not in row.key_encrypted.encode()  # encrypted at rest


@pytest.mark.parametrize(("cert", "key", "error"), [
    ("clinic.pem", "physician-key.pem", "the key does not match the certificate"),
    ("expired.pem", None, "the certificate has expired"),
    ("garbage.pem", None, "not a PEM or DER X.509 certificate"),
    ("clinic.pem", "garbage.pem", "not an unencrypted PEM or DER private key"),
])
def test_cli_refuses_what_cannot_be_used(hub: TestClient, hisp: SandboxHisp, tmp_path: Path,
                                         cert: str, key: str | None, error: str) -> None:
    files = _files(tmp_path, hisp)
    args = ["add", "--address", CLINIC_ADDRESS, "--cert", str(files[cert])]
    if key:
        args += ["--key", str(files[key])]
    result = CliRunner().invoke(app, ["direct", "certs", *args], catch_exceptions=False)
    assert result.exit_code == 2 and error in result.output
    assert hub.get(API).json() == []


def test_api_adds_pem_and_base64_der_and_never_returns_the_key(hub: TestClient, hisp: SandboxHisp) -> None:
    der = base64.b64encode(hisp.clinic.certificate.public_bytes(serialization.Encoding.DER)).decode()
    created = hub.post(API, json={"address": CLINIC_ADDRESS, "cert": der, "key": hisp.clinic.key_pem})
    assert created.status_code == 201, created.text
    assert created.json()["has_key"] is True and "PRIVATE" not in created.text
    wrong = hub.post(API, json={"address": CLINIC_ADDRESS, "cert": hisp.clinic.cert_pem,
                                "key": hisp.physician.key_pem})
    assert wrong.status_code == 400 and "does not match" in wrong.text and "PRIVATE" not in wrong.text
    expired = hub.post(API, json={"address": CLINIC_ADDRESS,
                                  "cert": hisp.ca.issue(CLINIC_ADDRESS, expired=True).cert_pem})
    assert expired.status_code == 400 and "expired" in expired.text
    assert len(hub.get(API).json()) == 1


def test_connector_and_listener_use_the_stored_certificates(hub: TestClient, settings: Settings,
                                                            hisp: SandboxHisp) -> None:
    for body in ({"address": CLINIC_ADDRESS, "cert": hisp.clinic.cert_pem, "key": hisp.clinic.key_pem},
                 {"address": CLINIC_ADDRESS, "cert": hisp.ca.cert_pem, "trust_anchor": True},
                 {"address": PHYSICIAN_ADDRESS, "cert": hisp.physician.cert_pem}):
        assert hub.post(API, json=body).status_code == 201
    config = {k: v for k, v in hisp.connector_config().items()
              if k not in ("sender_cert_pem", "sender_key_pem", "recipient_certs", "trust_anchor_pems")}
    tenant = settings.default_tenant
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=tenant, settings=settings).add_connector(name="d", kind="direct", config=config)
        message = Outbox(session, tenant=tenant, settings=settings).send_raw(
            connector="d", raw=bundle().decode(), event="Task.create")
        message_id = message.id
        [job] = repo.jobs_of(session, message_id=message_id)
        job_id = job.id
    assert deliver(settings, job_id) is None  # signed with the stored key, encrypted to the stored certificate
    [received] = hisp.wait_for(1)
    identity = load_identity(settings, tenant=tenant, connector="d")
    with DirectListener(settings, tenant=tenant, source="d", identity=identity) as listener:
        hisp.send_mdn(received, host="127.0.0.1", port=listener.port)  # decrypted, verified with the stored anchor
    events = hub.get(f"/admin/api/messages/{message_id}").json()["events"]
    assert any(e["detail"] == "MDN processed" and e["job_id"] == job_id for e in events)
