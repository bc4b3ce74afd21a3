"""A signed plan sent to a Direct listener the way the physician's HISP does, over a plain smtplib
connection the test controls (STARTTLS, AUTH): each call a new Message-ID."""

from __future__ import annotations

import itertools
import smtplib
import ssl
from datetime import UTC, datetime

from connectors.direct import message, smime
from sandboxes.hisp import CLINIC_ADDRESS, PHYSICIAN_ADDRESS, SandboxHisp

SIGNED = b"%PDF-1.4\n% signed certification\n%%EOF\n"
_numbers = itertools.count(1)


def signed_plan(hisp: SandboxHisp) -> bytes:
    """A new message from the physician to the clinic: a PDF, signed by the physician, encrypted."""
    message_id = f"<plan-{next(_numbers)}-{datetime.now(UTC).timestamp()}@direct.physician.test>"
    inner = message.content(text="Signed plan of care attached.", boundary=message.boundary_for(message_id, "m"),
                            attachments=[message.Attachment("signed-plan.pdf", "application/pdf", SIGNED)])
    signed = smime.sign(inner, hisp.physician.certificate, hisp.physician.key,
                        boundary=message.boundary_for(message_id, "s"))
    envelope = smime.encrypt(signed, [hisp.clinic.certificate]).removeprefix(b"MIME-Version: 1.0\r\n")
    head = message.headers(sender=PHYSICIAN_ADDRESS, recipients=[CLINIC_ADDRESS], subject="Signed plan",
                           message_id=message_id, date=datetime.now(UTC), request_mdn=False)
    return head + envelope


def send(port: int, wire: bytes, *, tls: ssl.SSLContext | None = None,
         login: tuple[str, str] | None = None) -> None:
    """Send ``wire`` to the listener on 127.0.0.1:``port`` (smtplib's exceptions tell a refusal)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("hisp.test")
        if tls is not None:
            client.starttls(context=tls)
            client.ehlo("hisp.test")
        if login is not None:
            client.login(*login)
        client.sendmail(PHYSICIAN_ADDRESS, [CLINIC_ADDRESS], wire)
