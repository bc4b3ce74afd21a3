"""A sandbox HISP pair for Direct: the clinic's HISP (SMTP with STARTTLS + AUTH on 127.0.0.1) delivering
to a physician's Direct address, and that physician's answers.

At start it makes a throw-away CA (:mod:`sandboxes.direct_ca`), a certificate for each of the two
Direct addresses (clinic and physician) and a TLS certificate for 127.0.0.1 issued by the same CA
(``tls_ca_pem`` trusts it). :meth:`SandboxHisp.connector_config` is a config for
:class:`connectors.direct.DirectConnector` that sends through it.

Each message received is decrypted with the physician's key and verified against the CA (signer
bound to the From address); :attr:`SandboxHisp.received` records what came (or the refusal code).
:meth:`SandboxHisp.send_mdn` and :meth:`SandboxHisp.send_signed_plan` answer, signed as the physician
and encrypted to the clinic, over plain SMTP to a given host and port (the hub's Direct listener).

Controls: ``refuse_all`` (answer 451 to every DATA: a HISP in trouble).
"""

from __future__ import annotations

import argparse
import smtplib
import ssl
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any, ClassVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from connectors.direct import message, smime, xdm
from sandboxes.base import HOST, Controls, Sandbox, serve_until_signalled
from sandboxes.direct_ca import Issued, TestCA

__all__ = ["EphemeralController", "HispControls", "Received", "SandboxHisp"]

CLINIC_ADDRESS = "clinic@direct.clinic.test"
PHYSICIAN_ADDRESS = "drsmith@direct.physician.test"


@dataclass(frozen=True)
class HispControls(Controls):
    refuse_all: bool = False


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message_id: str
    from_address: str
    refusal: str | None  # a smime.SmimeError code, or None when decrypted and verified
    content: bytes = field(repr=False, default=b"")
    documents: tuple[xdm.ReadDocument, ...] = ()


class EphemeralController(Controller):
    """aiosmtpd's controller, on an ephemeral port (it reads the port the listener got)."""

    def _trigger_server(self) -> None:
        if self.server is not None and self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SandboxHisp(Sandbox[HispControls]):
    controls_class: ClassVar[type[Controls]] = HispControls

    def __init__(self, port: int = 0, *, username: str = "clinic", password: str = "sandbox-password",
                 **controls: Any) -> None:
        self.port = port
        self.username = username
        self.password = password
        self.ca = TestCA("Sandbox HISP CA")
        self.clinic: Issued = self.ca.issue(CLINIC_ADDRESS)
        self.physician: Issued = self.ca.issue(PHYSICIAN_ADDRESS)
        self.tls: Issued = self.ca.issue_tls(HOST)
        self._controller: EphemeralController | None = None
        super().__init__(**controls)

    def _clear(self) -> None:
        self._received: list[Received] = []
        self.auth_failures = 0

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> SandboxHisp:
        if self._controller is not None:
            raise RuntimeError("sandbox already started")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*self._tls_files())
        controller = EphemeralController(
            _Handler(self), hostname=HOST, port=self.port, tls_context=context, require_starttls=True,
            auth_required=True, auth_require_tls=True, authenticator=self._authenticate,
            server_hostname="hisp.sandbox.test",
        )
        controller.start()
        self._controller = controller
        self.port = controller.port
        return self

    def _tls_files(self) -> tuple[str, str]:
        # ssl loads a certificate chain from files only: a private temporary directory, removed at stop
        self._tmp = tempfile.TemporaryDirectory(prefix="hisp-tls-")
        cert, key = Path(self._tmp.name, "cert.pem"), Path(self._tmp.name, "key.pem")
        cert.write_text(self.tls.cert_pem)
        key.touch(mode=0o600)
        key.write_text(self.tls.key_pem)
        return str(cert), str(key)

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SandboxHisp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"

    # ----------------------------------------------------------------------------- config

    def connector_config(self, **overrides: Any) -> dict[str, Any]:
        """A DirectConnector config sending as the clinic through this HISP to the physician."""
        config: dict[str, Any] = {
            "smtp_host": HOST, "smtp_port": self.port, "starttls": True,
            "username": self.username, "password": self.password, "tls_ca_pem": self.ca.cert_pem,
            "sender_address": CLINIC_ADDRESS, "sender_cert_pem": self.clinic.cert_pem,
            "sender_key_pem": self.clinic.key_pem,
            "recipient_certs": {PHYSICIAN_ADDRESS: self.physician.cert_pem},
            "trust_anchor_pems": [self.ca.cert_pem], "timeout_seconds": 10,
        }
        config.update(overrides)
        return config

    # ---------------------------------------------------------------------------- records

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        self._wait_until(lambda: len(self._received) >= count, timeout)
        return self.received

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
                      ) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username
              and auth_data.password.decode() == self.password)
        if not ok:
            with self._lock:
                self.auth_failures += 1
        return AuthResult(success=ok, handled=False)

    def _receive(self, mail_from: str, rcpt_tos: list[str], wire: bytes) -> Received:
        headers, entity = message.split_headers(wire)
        from_address = parseaddr(str(headers.get("From", "")))[1]
        common = {"mail_from": mail_from, "rcpt_tos": tuple(rcpt_tos),
                  "message_id": str(headers.get("Message-ID", "")), "from_address": from_address}
        try:
            signed = smime.decrypt(entity, self.physician.certificate, self.physician.key)
            verified = smime.verify(signed, [self.ca.certificate], moment=datetime.now(UTC),
                                    from_address=from_address)
        except smime.SmimeError as exc:
            return Received(refusal=exc.code, **common)
        documents: list[xdm.ReadDocument] = []
        for attachment in message.attachments_of(verified.content):
            documents.extend(xdm.unpack(attachment.data) or [
                xdm.ReadDocument(attachment.filename, attachment.data, attachment.content_type)])
        return Received(refusal=None, content=verified.content, documents=tuple(documents), **common)

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)
            self._lock.notify_all()

    # ---------------------------------------------------------------------------- answers

    def _answer(self, inner: bytes, *, subject: str, message_id: str, host: str, port: int,
                request_mdn: bool, extra: tuple[tuple[str, str], ...] = ()) -> str:
        signed = smime.sign(inner, self.physician.certificate, self.physician.key,
                            boundary=message.boundary_for(message_id, "signed"))
        envelope = smime.encrypt(signed, [self.clinic.certificate]).removeprefix(b"MIME-Version: 1.0\r\n")
        head = message.headers(sender=PHYSICIAN_ADDRESS, recipients=[CLINIC_ADDRESS], subject=subject,
                               message_id=message_id, date=datetime.now(UTC), request_mdn=request_mdn,
                               extra=extra)
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.sendmail(PHYSICIAN_ADDRESS, [CLINIC_ADDRESS], head + envelope)
        return message_id

    def send_mdn(self, received: Received, *, host: str, port: int, disposition: str = "processed") -> str:
        """Answer ``received`` with a signed, encrypted MDN; returns the MDN's Message-ID."""
        message_id = message.message_id_for(f"mdn|{disposition}|{received.message_id}", "direct.physician.test")
        inner = message.mdn_content(
            original_message_id=received.message_id, final_recipient=PHYSICIAN_ADDRESS,
            reporting_ua="sandbox-hisp; therapy-hub", disposition=disposition,
            boundary=message.boundary_for(message_id, "report"),
            final_destination=disposition.startswith("dispatched"))
        return self._answer(inner, subject=f"Processed: {received.message_id}", message_id=message_id,
                            host=host, port=port, request_mdn=False)

    def send_dsn(self, received: Received, *, host: str, port: int) -> str:
        """Answer ``received`` with a signed, encrypted failure DSN (it could not be delivered)."""
        message_id = message.message_id_for(f"dsn|{received.message_id}", "direct.physician.test")
        inner = message.dsn_content(original_message_id=received.message_id, final_recipient=PHYSICIAN_ADDRESS,
                                    reporting_mta="hisp.physician.test",
                                    boundary=message.boundary_for(message_id, "report"))
        return self._answer(inner, subject=f"Undeliverable: {received.message_id}", message_id=message_id,
                            host=host, port=port, request_mdn=False)

    def send_signed_plan(self, received: Received, pdf: bytes, *, host: str, port: int) -> str:
        """Reply to ``received`` with a signed plan (``pdf``) as a plain attachment; returns its Message-ID."""
        return self.send_reply(received, [message.Attachment("signed-plan.pdf", "application/pdf", pdf)],
                               host=host, port=port)

    def send_reply(self, received: Received, attachments: list[message.Attachment], *, host: str,
                   port: int) -> str:
        """Reply to ``received`` with ``attachments``, signed and encrypted; returns its Message-ID."""
        names = "|".join(a.filename for a in attachments)
        message_id = message.message_id_for(f"reply|{names}|{received.message_id}", "direct.physician.test")
        inner = message.content(text="Signed plan of care attached.", boundary=message.boundary_for(
            message_id, "mixed"), attachments=attachments)
        return self._answer(inner, subject="Signed plan of care", message_id=message_id, host=host,
                            port=port, request_mdn=True, extra=(("In-Reply-To", received.message_id),))


class _Handler:
    def __init__(self, hisp: SandboxHisp) -> None:
        self.hisp = hisp

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hisp.controls.refuse_all:
            return "451 4.3.0 Temporary failure"
        received = self.hisp._receive(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        self.hisp._record(received)
        return "250 2.0.0 Message accepted for delivery"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.hisp", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    hisp = SandboxHisp(port=args.port)
    return serve_until_signalled(hisp, farewell=lambda: f"received {len(hisp.received)} message(s)")


if __name__ == "__main__":
    sys.exit(main())
