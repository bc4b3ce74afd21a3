"""The Direct listener's SMTP side with a real listener and smtplib: only the HISP's networks may
connect (554 5.7.1 at connect, nothing stored), STARTTLS with a certificate of a CA made for the
test (and required when configured), AUTH off by default and required when configured."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from connectors.direct import message, smime
from hub.cli import app
from hub.inbound.direct import DirectListener, ListenerOptions
from hub.settings import Settings
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work
from sandboxes.direct_ca import Issued, TestCA
from sandboxes.hisp import CLINIC_ADDRESS, PHYSICIAN_ADDRESS, SandboxHisp
from tests.cli_env import cli_environment
from tests.inbound.direct_wire import SIGNED, send, signed_plan


@pytest.fixture
def hisp() -> Iterator[SandboxHisp]:
    with SandboxHisp() as server:
        yield server


@pytest.fixture
def connector(settings: Settings, hisp: SandboxHisp) -> str:
    with unit_of_work(settings) as session:
        SyncConfig(session, tenant=settings.default_tenant, settings=settings).add_connector(
            name="clinic-direct", kind="direct", config=hisp.connector_config())
    return "clinic-direct"


@pytest.fixture
def tls(hisp: SandboxHisp) -> Issued:
    return hisp.ca.issue_tls("127.0.0.1")


def trusting(hisp: SandboxHisp) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=hisp.ca.cert_pem)
    return context


def listening(settings: Settings, connector: str, **options: object) -> DirectListener:
    return DirectListener(settings, tenant=settings.default_tenant, source=connector,
                          options=ListenerOptions(**options))  # type: ignore[arg-type]


def stored(client: TestClient) -> int:
    return len(client.get("/admin/api/messages", params={"source": "clinic-direct"}).json()["items"])


def test_a_client_outside_the_allowed_networks_is_refused_at_connect(
        client: TestClient, settings: Settings, hisp: SandboxHisp, connector: str) -> None:
    with listening(settings, connector, allow=["10.20.0.0/16", "192.0.2.7/32"]) as listener:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            send(listener.port, signed_plan(hisp))
        assert refused.value.smtp_code == 554 and refused.value.smtp_error.startswith(b"5.7.1")
    assert stored(client) == 0
    with listening(settings, connector, allow=["10.20.0.0/16", "127.0.0.0/8"]) as listener:
        send(listener.port, signed_plan(hisp))
    assert client.get("/fhir/DocumentReference").json()["total"] == 1
    with pytest.raises(ValueError, match="not a CIDR"):
        listening(settings, connector, allow=["clinic-hisp"]).start()


def test_starttls_offered_and_required_with_a_test_ca(client: TestClient, settings: Settings, hisp: SandboxHisp,
                                                      connector: str, tls: Issued) -> None:
    with listening(settings, connector, tls_cert=tls.cert_pem, tls_key=tls.key_pem,
                   require_starttls=True) as listener:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as plain:
            plain.ehlo("hisp.test")
            assert plain.has_extn("starttls") and not plain.has_extn("auth")
            with pytest.raises(smtplib.SMTPException):
                plain.sendmail("a@b.test", ["c@d.test"], b"Subject: x\r\n\r\nx\r\n")
        assert stored(client) == 0
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as wrong_ca, pytest.raises(ssl.SSLError):
            wrong_ca.starttls(context=ssl.create_default_context())  # the system CAs do not know this one
        send(listener.port, signed_plan(hisp), tls=trusting(hisp))
    assert client.get("/fhir/DocumentReference").json()["total"] == 1
    # offered, not required: a HISP without TLS still delivers
    with listening(settings, connector, tls_cert=tls.cert_pem, tls_key=tls.key_pem) as listener:
        send(listener.port, signed_plan(hisp))
    assert client.get("/fhir/DocumentReference").json()["total"] == 2


def test_auth_off_by_default_and_required_when_configured(client: TestClient, settings: Settings,
                                                          hisp: SandboxHisp, connector: str, tls: Issued) -> None:
    with listening(settings, connector, tls_cert=tls.cert_pem, tls_key=tls.key_pem) as listener:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as smtp:
            smtp.starttls(context=trusting(hisp))
            smtp.ehlo("hisp.test")
            assert not smtp.has_extn("auth")
    with listening(settings, connector, tls_cert=tls.cert_pem, tls_key=tls.key_pem,
                   auth={"hisp": "s3cret-pass"}) as listener:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            send(listener.port, signed_plan(hisp), tls=trusting(hisp))
        assert refused.value.smtp_code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            send(listener.port, signed_plan(hisp), tls=trusting(hisp), login=("hisp", "wrong"))
        assert stored(client) == 0
        send(listener.port, signed_plan(hisp), tls=trusting(hisp), login=("hisp", "s3cret-pass"))
    assert client.get("/fhir/DocumentReference").json()["total"] == 1


def test_hub_direct_refuses_options_it_cannot_use(client: TestClient, settings: Settings, connector: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with cli_environment(settings, monkeypatch):
        runner = CliRunner()
        bad_network = runner.invoke(app, ["direct", connector, "--port", "0", "--allow", "hisp-network"])
        assert bad_network.exit_code == 2 and "not a CIDR" in bad_network.output
        half_tls = runner.invoke(app, ["direct", connector, "--port", "0", "--tls-cert", "cert.pem"])
        assert half_tls.exit_code == 2 and "go together" in half_tls.output
        monkeypatch.delenv("HUB_DIRECT_AUTH_PASSWORD", raising=False)
        no_password = runner.invoke(app, ["direct", connector, "--port", "0", "--auth-user", "hisp"])
        assert no_password.exit_code == 2 and "HUB_DIRECT_AUTH_PASSWORD" in no_password.output
        missing = runner.invoke(app, ["direct", connector, "--port", "0", "--tls-cert", "/nonexistent/c.pem",
                                      "--tls-key", "/nonexistent/k.pem"])
        assert missing.exit_code == 2 and "cannot be loaded" in missing.output


def test_a_message_with_two_signers_is_accepted_by_the_trusted_one(client: TestClient, settings: Settings,
                                                                   hisp: SandboxHisp, connector: str) -> None:
    stranger = TestCA("Unknown CA").issue(PHYSICIAN_ADDRESS)
    inner = message.content(text="Signed plan.", boundary="b-two", attachments=[
        message.Attachment("signed-plan.pdf", "application/pdf", SIGNED)])
    builder = pkcs7.PKCS7SignatureBuilder().set_data(smime.canonical(inner))
    for signer in (stranger, hisp.physician):
        builder = builder.add_signer(signer.certificate, signer.key, hashes.SHA256())
    signed = builder.sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    envelope = smime.encrypt(signed, [hisp.clinic.certificate]).removeprefix(b"MIME-Version: 1.0\r\n")
    head = message.headers(sender=PHYSICIAN_ADDRESS, recipients=[CLINIC_ADDRESS], subject="Signed plan",
                           message_id="<two-signers@direct.physician.test>", date=datetime.now(UTC),
                           request_mdn=False)
    with listening(settings, connector) as listener:
        send(listener.port, head + envelope)
    assert client.get("/fhir/DocumentReference").json()["total"] == 1
