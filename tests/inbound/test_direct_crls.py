"""CRLs supplied to the hub (nothing is fetched, ADR 0010) while the Direct listener runs: a signer
its issuer's CRL lists is refused ``revoked_certificate`` (kept rejected, like untrusted mail), a
newer CRL that no longer lists it lets its mail in, from the next message on; a CRL is accepted
only from a stored trust anchor or intermediate, and an expired one is kept but reported."""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub.cli import app
from hub.inbound.direct import DirectListener
from hub.settings import Settings
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work
from sandboxes.direct_ca import TestCA
from sandboxes.hisp import CLINIC_ADDRESS, SandboxHisp
from tests.cli_env import cli_environment
from tests.inbound.direct_wire import send, signed_plan

API = "/admin/api/direct/crls"


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
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=settings.default_tenant, settings=settings).add_connector(
            name="clinic-direct", kind="direct", config=hisp.connector_config())
    with DirectListener(settings, tenant=settings.default_tenant, source="clinic-direct") as running:
        yield running


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["direct", "certs", *args], catch_exceptions=False)


def refused_as(port: int, hisp: SandboxHisp) -> str | None:
    try:
        send(port, signed_plan(hisp))
    except smtplib.SMTPDataError as exc:
        assert exc.smtp_code == 554
        return exc.smtp_error.decode()
    return None


def _file(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_a_revoked_signer_is_refused_until_a_newer_crl_lifts_it(hub: TestClient, hisp: SandboxHisp,
                                                                listener: DirectListener, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    anchor = _file(tmp_path, "ca.pem", hisp.ca.cert_pem.encode())
    assert cli("add", "--address", CLINIC_ADDRESS, "--cert", anchor, "--trust-anchor").exit_code == 0
    assert refused_as(listener.port, hisp) is None  # no CRL: soft-fail, as before

    revoking = hisp.ca.crl(hisp.physician.certificate, this_update=now - timedelta(hours=2))
    added = cli("add", "--crl", _file(tmp_path, "revoking.pem", revoking.public_bytes(serialization.Encoding.PEM)))
    assert added.exit_code == 0 and "1 revoked" in added.output and "warning" not in added.output
    refusal = refused_as(listener.port, hisp)  # the same listener, the new CRL
    assert refusal is not None and "revoked_certificate" in refusal
    [rejected] = hub.get("/admin/api/messages", params={"status": "rejected"}).json()["items"]
    assert "revoked_certificate" in rejected["error"]
    assert hub.get("/fhir/DocumentReference").json()["total"] == 1  # only the first message's

    # the issuer's next CRL no longer lists it (through the API, as base64 of DER)
    lifted = hisp.ca.crl(this_update=now - timedelta(hours=1))
    answer = hub.post(API, json={"crl": base64.b64encode(lifted.public_bytes(serialization.Encoding.DER)).decode()})
    assert answer.status_code == 201, answer.text
    first = [c for c in hub.get(API).json()]
    assert [c["revoked"] for c in first] == [0] and answer.json()["superseded"] != []
    assert refused_as(listener.port, hisp) is None
    assert hub.get("/fhir/DocumentReference").json()["total"] == 2
    # the older one again is refused: the newer is in use
    again = cli("add", "--crl", _file(tmp_path, "again.pem", revoking.public_bytes(serialization.Encoding.PEM)))
    assert again.exit_code == 2 and "as recent or newer" in again.output
    listed = cli("list")
    assert listed.exit_code == 0 and "revocation lists" in listed.output
    # removed: the issuer is checked soft-fail again
    assert hub.delete(f"{API}/{first[0]['id']}").status_code == 200
    assert hub.get(API).json() == [] and hub.delete(f"{API}/{first[0]['id']}").status_code == 404


def test_only_a_stored_issuers_crl_is_taken_and_an_expired_one_is_reported(hub: TestClient, hisp: SandboxHisp,
                                                                           tmp_path: Path) -> None:
    now = datetime.now(UTC)
    stranger = TestCA("Sandbox HISP CA")  # the issuer's name, another key
    forged = _file(tmp_path, "forged.pem", stranger.crl().public_bytes(serialization.Encoding.PEM))
    refused = cli("add", "--crl", forged)
    assert refused.exit_code == 2 and "not signed by a stored trust anchor or intermediate" in refused.output
    assert cli("add", "--crl", _file(tmp_path, "junk.crl", b"not a crl")).exit_code == 2
    unknown = hisp.ca.crl().public_bytes(serialization.Encoding.PEM).decode()  # its issuer is not stored yet
    assert hub.post(API, json={"crl": unknown}).status_code == 400
    assert cli("add", "--crl", forged, "--address", CLINIC_ADDRESS).exit_code == 2  # a CRL is not an address's

    assert hub.post("/admin/api/direct/certs", json={"address": CLINIC_ADDRESS, "cert": hisp.ca.cert_pem,
                                                     "trust_anchor": True}).status_code == 201
    expired = hisp.ca.crl(this_update=now - timedelta(days=10), next_update=now - timedelta(days=3))
    added = cli("add", "--crl", _file(tmp_path, "expired.der", expired.public_bytes(serialization.Encoding.DER)))
    assert added.exit_code == 0 and "warning: the CRL expired" in added.output
    [view] = hub.get(API).json()
    assert view["expired"] is True and view["issuer"] == hisp.ca.certificate.subject.rfc4514_string()
    removed = cli("remove-crl", str(view["id"]))
    assert removed.exit_code == 0 and f"removed CRL {view['id']}" in removed.output
    assert cli("remove-crl", str(view["id"])).exit_code == 1 and hub.get(API).json() == []
