"""The Direct connector: the plan of care for certification, as an XDM package, signed then encrypted
to the referring physician's Direct address, through the clinic's HISP over SMTP (STARTTLS + AUTH).

A delivery's payload is the ``collection`` Bundle of the certification Task (context
``references`` and ``documents``, :mod:`connectors.direct.plan`). The message::

    From: <config.sender_address>      To: <the owner PractitionerRole's email telecom>
    Message-ID: <sha256(idempotency key)@sender domain>   (the same on a retry)
    Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true
    Disposition-Notification-To: <config.sender_address>
    application/pkcs7-mime (enveloped, AES-256-CBC) of
      multipart/signed (SHA-256) of
        multipart/mixed: a text part, the XDM zip (the PDF, and a C-CDA when the Bundle has one)

``SendResult.remote_id`` is the Message-ID (MDNs name it in Original-Message-ID); a plan's result
asks for the recipient's processed MDN within ``mdn_timeout_minutes`` (``confirm_within_seconds``).

A delivery of content type ``message/disposition-notification`` (:data:`message.MDN_CONTENT_TYPE`, queued
by the hub's Direct listener) is an MDN the clinic answers a received message with
(:meth:`DirectConnector.build_mdn`): signed as the clinic, encrypted to the certificate that signed the
message it answers, and it asks for no MDN itself.

Outcome: accepted by the HISP -> ``SendResult``; the Bundle lacks the recipient, the PDF or the
patient's identifier, or the recipient has no certificate -> ``PermanentError``/``ConfigError``;
authentication refused (535) -> ``AuthError``; 4xx replies, timeouts, connection failures ->
``TransientError``; 5xx replies and TLS failures -> ``PermanentError``.
"""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import BaseModel, Field, SecretStr, field_validator

from connectors.base import (
    AuthError,
    ConfigError,
    ConnectorConfig,
    ConnectorError,
    Delivery,
    HealthResult,
    PermanentError,
    SendResult,
    TransientError,
    validate_config,
)
from connectors.direct import message, smime, xdm
from connectors.direct.plan import PlanParts, PlanProblem, plan_parts, recipient_of
from connectors.httputil import ms_since, shared_ssl_context

__all__ = ["DirectConfig", "DirectConnector"]

LOINC = "2.16.840.1.113883.6.1"
PLAN_CODE = xdm.Code("18776-5", LOINC, "Plan of care note")
PDF_FORMAT = xdm.Code("urn:ihe:iti:xds:2017:mimeTypeSufficient", "1.3.6.1.4.1.19376.1.2.3",
                      "mimeType Sufficient")
CDA_FORMAT = xdm.Code("urn:hl7-org:sdwg:ccda-structuredBody:2.1", "1.3.6.1.4.1.19376.1.2.3",
                      "C-CDA R2.1 Structured Body")
TEXT = ("The plan of care for your patient is attached for your certification (signature). "
        "Open the attached XDM package (INDEX.HTM) to read it.")


def _address(value: str) -> str:
    value = value.strip()
    if value.count("@") != 1 or not value.isascii() or any(c.isspace() for c in value):
        raise ValueError("not a Direct address")
    return value.lower()


def _oid(*parts: str) -> str:
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '|'.join(parts)).int}"


class DirectConfig(ConnectorConfig):
    smtp_host: str = Field(min_length=1, max_length=253)
    smtp_port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    #: PEM of the CA that signed the HISP's TLS certificate; None: the system trust store
    tls_ca_pem: str | None = None
    sender_address: Annotated[str, Field(description="the clinic's Direct address")]
    #: PEM certificate and key of the sender address; empty: the hub's stored ones (hub direct certs)
    sender_cert_pem: str = ""
    sender_key_pem: SecretStr = SecretStr("")
    #: Direct address -> PEM certificate of the recipient (until certificate discovery by DNS/LDAP)
    recipient_certs: dict[str, str] = Field(default_factory=dict)
    #: trust anchors for the MDNs and replies we receive (PEM each)
    trust_anchor_pems: tuple[str, ...] = ()
    mdn_timeout_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    subject: str = Field(default="Plan of care for certification", max_length=200)
    aes256: bool = True

    @field_validator("sender_address")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _address(value)

    @field_validator("recipient_certs")
    @classmethod
    def _recipients(cls, value: dict[str, str]) -> dict[str, str]:
        return {_address(k): v for k, v in value.items()}


def _load_cert(pem: str, name: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise ConfigError(f"invalid direct config: {name} is not a PEM certificate", fields=[name]) from None


class DirectConnector:
    """Direct messages through one HISP. A new SMTP session per send; ``close()`` holds nothing."""

    slug: ClassVar[str] = "direct"
    Config: ClassVar[type[BaseModel]] = DirectConfig
    context: ClassVar[frozenset[str]] = frozenset({"references", "documents"})

    def __init__(self, config: DirectConfig | Mapping[str, Any], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = validate_config(DirectConfig, config, connector=self.slug)
        self._clock = clock
        if not self.config.sender_cert_pem or not self.config.sender_key_pem.get_secret_value():
            raise ConfigError("invalid direct config: no certificate and key for the sender address "
                              "(sender_cert_pem/sender_key_pem, or stored with hub direct certs add)",
                              fields=["sender_cert_pem", "sender_key_pem"])
        self._certificate = _load_cert(self.config.sender_cert_pem, "sender_cert_pem")
        try:
            key = serialization.load_pem_private_key(self.config.sender_key_pem.get_secret_value().encode(),
                                                     password=None)
        except (ValueError, TypeError):
            raise ConfigError("invalid direct config: sender_key_pem is not a PEM private key",
                              fields=["sender_key_pem"]) from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError("invalid direct config: sender_key_pem must be an RSA or EC key",
                              fields=["sender_key_pem"])
        self._key = key
        self._recipients = {a: _load_cert(pem, "recipient_certs") for a, pem in self.config.recipient_certs.items()}
        self._domain = self.config.sender_address.rpartition("@")[2]
        if self.config.tls_ca_pem:
            self._ssl = ssl.create_default_context(cadata=self.config.tls_ca_pem)
        else:
            self._ssl = shared_ssl_context()

    def __repr__(self) -> str:
        return f"DirectConnector(hisp={self.config.smtp_host!r}:{self.config.smtp_port})"

    # ---------------------------------------------------------------------------- building

    def can_address(self, delivery: Delivery) -> bool:
        """The Task's owner PractitionerRole has a Direct address with a certificate configured for it."""
        recipient = recipient_of(delivery.payload)
        return recipient is not None and recipient.lower() in self._recipients

    def build(self, delivery: Delivery) -> tuple[str, str, bytes]:
        """(recipient, Message-ID, the message bytes) of ``delivery``; raises ConnectorError."""
        try:
            parts = plan_parts(delivery.payload)
        except PlanProblem as exc:
            raise PermanentError(f"direct: {exc}") from None
        certificate = self._recipients.get(parts.recipient.lower())
        if certificate is None:
            raise ConfigError("direct: no certificate is configured for the recipient's Direct address",
                              fields=["recipient_certs"])
        message_id = message.message_id_for(delivery.idempotency_key, self._domain)
        now = self._clock()
        package = xdm.build(self._submission(parts, delivery.idempotency_key, now))
        inner = message.content(text=TEXT, boundary=message.boundary_for(message_id, "mixed"), attachments=[
            message.Attachment("plan-of-care.zip", "application/zip", package)])
        signed = smime.sign(inner, self._certificate, self._key, boundary=message.boundary_for(message_id, "signed"))
        envelope = smime.encrypt(signed, [certificate], aes256=self.config.aes256)
        envelope = envelope.removeprefix(b"MIME-Version: 1.0\r\n")
        head = message.headers(sender=self.config.sender_address, recipients=[parts.recipient],
                               subject=self.config.subject, message_id=message_id, date=now)
        return parts.recipient, message_id, head + envelope

    def build_mdn(self, delivery: Delivery) -> tuple[str, str, bytes]:
        """(recipient, Message-ID, the message bytes) of an MDN delivery; its payload is JSON with
        ``to``, ``original_message_id``, ``disposition``, ``recipient_cert_pem`` (the certificate that
        signed the message it answers, verified when it arrived), optional ``failure`` and
        ``final_destination``. Raises PermanentError when the payload is not one."""
        try:
            spec = json.loads(delivery.payload)
            recipient = _address(str(spec["to"]))
            certificate = x509.load_pem_x509_certificate(str(spec["recipient_cert_pem"]).encode())
            original = str(spec["original_message_id"])
            disposition = str(spec["disposition"])
            failure = spec.get("failure")
            final_destination = bool(spec.get("final_destination"))
        except (ValueError, KeyError, TypeError):
            raise PermanentError("direct: the MDN delivery's payload is not an MDN description") from None
        message_id = message.message_id_for(delivery.idempotency_key, self._domain)
        try:
            inner = message.mdn_content(
                original_message_id=original, final_recipient=self.config.sender_address,
                reporting_ua=f"{self._domain}; therapy-interop-hub", disposition=disposition,
                boundary=message.boundary_for(message_id, "report"), final_destination=final_destination,
                failure=str(failure) if failure else None)
            head = message.headers(sender=self.config.sender_address, recipients=[recipient],
                                   subject=f"{disposition.split('/')[0].capitalize()}: {original}",
                                   message_id=message_id, date=self._clock(), request_mdn=False)
        except ValueError:
            raise PermanentError("direct: the MDN delivery's fields are not printable ASCII") from None
        signed = smime.sign(inner, self._certificate, self._key, boundary=message.boundary_for(message_id, "signed"))
        envelope = smime.encrypt(signed, [certificate], aes256=self.config.aes256)
        return recipient, message_id, head + envelope.removeprefix(b"MIME-Version: 1.0\r\n")

    def _submission(self, parts: PlanParts, key: str, now: datetime) -> xdm.XdmSubmission:
        stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S")
        documents = [xdm.XdmDocument(
            content=parts.pdf, mime_type="application/pdf", unique_id=_oid("pdf", parts.document_id, key),
            creation_time=stamp, title="Plan of care for certification", class_code=PLAN_CODE,
            type_code=PLAN_CODE, format_code=PDF_FORMAT)]
        if parts.cda is not None:
            documents.append(xdm.XdmDocument(
                content=parts.cda, mime_type="text/xml", unique_id=_oid("cda", parts.document_id, key),
                creation_time=stamp, title="Plan of care (C-CDA)", class_code=PLAN_CODE,
                type_code=PLAN_CODE, format_code=CDA_FORMAT))
        return xdm.XdmSubmission(
            unique_id=_oid("submission", key), source_id=_oid("source", self.config.sender_address),
            submission_time=stamp, patient_id=parts.patient_id, source_patient_id=parts.patient_id,
            author_person="", author_institution=self._domain, content_type=PLAN_CODE,
            documents=documents, intended_recipient=parts.recipient, author_telecom=self.config.sender_address)

    # ------------------------------------------------------------------------------ Sender

    def _session(self) -> smtplib.SMTP:
        client = smtplib.SMTP(self.config.smtp_host, self.config.smtp_port, timeout=self.config.timeout_seconds)
        try:
            client.ehlo(self._domain)
            if self.config.starttls:
                client.starttls(context=self._ssl)
                client.ehlo(self._domain)
            if self.config.username:
                password = self.config.password.get_secret_value() if self.config.password else ""
                client.login(self.config.username, password)
        except BaseException:
            client.close()
            raise
        return client

    def send(self, delivery: Delivery) -> SendResult:
        if delivery.content_type == message.MDN_CONTENT_TYPE:
            recipient, message_id, wire = self.build_mdn(delivery)
        else:
            recipient, message_id, wire = self.build(delivery)
        what = f"direct SMTP {self.config.smtp_host}:{self.config.smtp_port}"
        started = time.perf_counter()
        try:
            client = self._session()
            try:
                client.sendmail(self.config.sender_address, [recipient], wire)
            finally:
                _quit(client)
        except (smtplib.SMTPException, OSError) as exc:
            raise _translate(exc, what, ms_since(started)) from None
        # the HISP only accepted it: the recipient's MDN confirms it later (an MDN itself asks for none)
        confirm = None if delivery.content_type == message.MDN_CONTENT_TYPE else self.config.mdn_timeout_minutes * 60.0
        return SendResult(status=250, remote_id=message_id, detail=f"{what} -> 250",
                          duration_ms=ms_since(started), confirm_within_seconds=confirm)

    # ------------------------------------------------------------------------ HealthChecker

    def health(self) -> HealthResult:
        what = f"direct SMTP {self.config.smtp_host}:{self.config.smtp_port}"
        started = time.perf_counter()
        try:
            client = self._session()
            try:
                status, _ = client.noop()
            finally:
                _quit(client)
        except (smtplib.SMTPException, OSError) as exc:
            error = _translate(exc, what, ms_since(started))
            return HealthResult(ok=False, detail=error.message, duration_ms=ms_since(started))
        return HealthResult(ok=status == 250, detail=f"{what} -> {status}", duration_ms=ms_since(started))

    def close(self) -> None:
        pass

    def __enter__(self) -> DirectConnector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _translate(exc: BaseException, what: str, duration_ms: float) -> ConnectorError:
    """An smtplib/socket/ssl failure as a ConnectorError, without the server's text (it may echo data)."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return AuthError(f"{what}: authentication refused ({exc.smtp_code})", status=exc.smtp_code,
                         duration_ms=duration_ms)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        code = codes[0] if codes else None
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
    else:
        code = None
    if code is not None:
        if 400 <= code < 500:
            return TransientError(f"{what}: temporary refusal ({code})", status=code, duration_ms=duration_ms)
        return PermanentError(f"{what}: refused ({code})", status=code, duration_ms=duration_ms)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(f"{what}: the HISP's TLS certificate is not trusted", duration_ms=duration_ms)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentError(f"{what}: the HISP does not offer STARTTLS or AUTH", duration_ms=duration_ms)
    if isinstance(exc, socket.timeout | TimeoutError):
        return TransientError(f"{what}: timed out", duration_ms=duration_ms)
    return TransientError(f"{what}: {type(exc).__name__}", duration_ms=duration_ms)
