"""S/MIME for Direct (RFC 5751): sign then encrypt, decrypt then verify. Pure: no I/O, ``moment`` passed in.

Outbound: :func:`sign` wraps a MIME entity (headers + body, CRLF) in a ``multipart/signed``
(``protocol="application/pkcs7-signature"``, ``micalg=sha-256``, a detached CMS SignedData made by
``cryptography``); :func:`encrypt` wraps an entity in ``application/pkcs7-mime;
smime-type=enveloped-data`` (AES-256-CBC or AES-128-CBC, RSA key transport).

Inbound: :func:`decrypt` (``cryptography``) and :func:`verify`. ``cryptography`` does not verify
signatures (ADR 0010), so :func:`verify` parses the SignedData with ``asn1crypto``, checks the
``message-digest`` attribute against the signed content, checks the signature over the DER of the
signed attributes with the signer certificate's key, validates the signer's chain against the
trust anchors with ``pyhanko-certvalidator`` (key usage digitalSignature, at ``moment``; revocation
against the CRLs the caller supplies, see :func:`verify`), and binds the certificate to the sender:
its rfc822Name (or subject email) equals the From address, or, for a domain-bound certificate, its
dNSName equals the address's domain.

Every refusal is a :class:`SmimeError` whose ``code`` is one of :data:`REFUSALS`; its message
names the reason, never content.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from typing import Any, Final, Literal, TypeVar

from asn1crypto import cms
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
)
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule

__all__ = [
    "REFUSALS",
    "SignerReport",
    "SmimeError",
    "Verified",
    "canonical",
    "decrypt",
    "encrypt",
    "sign",
    "verify",
]

RefusalCode = Literal[
    "unsigned", "untrusted_signer", "expired_certificate", "tampered", "undecryptable",
    "address_mismatch", "malformed", "revoked_certificate",
]
REFUSALS: Final = frozenset({
    "unsigned", "untrusted_signer", "expired_certificate", "tampered", "undecryptable",
    "address_mismatch", "malformed", "revoked_certificate",
})

_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}
_SIGNED_TYPES: Final = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_MIME_TYPES: Final = ("application/pkcs7-mime", "application/x-pkcs7-mime")


class SmimeError(Exception):
    """A message we refuse; ``code`` in :data:`REFUSALS`, message safe to log."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: RefusalCode = code
        self.message = message


@dataclass(frozen=True)
class SignerReport:
    """A signer of a multi-signer message that was not the one accepted, and why (safe to log)."""

    subject: str  # the signer certificate's subject (RFC 4514), or "unknown" when it is not in the message
    code: RefusalCode
    message: str


@dataclass(frozen=True)
class Verified:
    """A verified signed entity: ``content`` (the signed MIME entity as signed) and its signer (the
    first SignerInfo that is valid, trusted and bound to the From address); ``others``: what was
    wrong with each of the other signers that were looked at (empty for a message with one signer)."""

    content: bytes
    signer: x509.Certificate
    others: tuple[SignerReport, ...] = ()


def canonical(data: bytes) -> bytes:
    """Line endings as CRLF (the canonical form S/MIME signs)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _b64_lines(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"\r\n".join(text[i:i + 76] for i in range(0, len(text), 76)) + b"\r\n"


# -------------------------------------------------------------------------------------- outbound


def sign(entity: bytes, certificate: x509.Certificate, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
         *, boundary: str) -> bytes:
    """``entity`` (a MIME entity) in a detached SHA-256 ``multipart/signed``; ``boundary`` given by the caller."""
    content = canonical(entity)
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(certificate, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    )
    head = (
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; '
        f'boundary="{boundary}"\r\n\r\n'
    ).encode()
    signature = (
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n' + _b64_lines(der)
    )
    marker = f"--{boundary}".encode()
    return (head + marker + b"\r\n" + content + b"\r\n" + marker + b"\r\n" + signature
            + b"\r\n" + marker + b"--\r\n")


def encrypt(entity: bytes, recipients: Sequence[x509.Certificate], *, aes256: bool = True) -> bytes:
    """``entity`` enveloped for ``recipients`` as an ``application/pkcs7-mime`` entity (headers + base64)."""
    if not recipients:
        raise ValueError("at least one recipient certificate is needed")
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(canonical(entity)).set_content_encryption_algorithm(
        algorithms.AES256 if aes256 else algorithms.AES128
    )
    for certificate in recipients:
        builder = builder.add_recipient(certificate)
    der = builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    return (
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7m"\r\n\r\n' + _b64_lines(der)
    )


# --------------------------------------------------------------------------------------- inbound


def _content_type(message: Message) -> str:
    return message.get_content_type().lower()


def decrypt(entity: bytes, certificate: x509.Certificate, key: rsa.RSAPrivateKey) -> bytes:
    """The MIME entity inside an enveloped ``application/pkcs7-mime`` message (headers may precede it)."""
    message = message_from_bytes(entity)
    if _content_type(message) not in _MIME_TYPES:
        raise SmimeError("undecryptable", "the message is not encrypted (no application/pkcs7-mime)")
    der = message.get_payload(decode=True)
    if not isinstance(der, bytes) or not der:
        raise SmimeError("malformed", "the encrypted part is empty")
    try:
        return pkcs7_decrypt(der, certificate, key)
    except ValueError:
        raise SmimeError("undecryptable", "the message is not encrypted for our certificate") from None


def pkcs7_decrypt(der: bytes, certificate: x509.Certificate, key: rsa.RSAPrivateKey) -> bytes:
    return pkcs7.pkcs7_decrypt_der(der, certificate, key, [])


def _split_signed(entity: bytes) -> tuple[bytes, bytes]:
    """(signed content exactly as sent, CMS DER) of a ``multipart/signed`` entity."""
    data = canonical(entity)
    message = message_from_bytes(data)
    boundary = message.get_boundary()
    if not boundary:
        raise SmimeError("malformed", "multipart/signed without a boundary")
    marker = b"--" + boundary.encode()
    end_of_headers = data.find(b"\r\n\r\n")
    body = data[end_of_headers + 4:] if end_of_headers >= 0 else b""
    start = body.find(marker + b"\r\n")
    if start < 0:
        raise SmimeError("malformed", "multipart/signed without a first part")
    start += len(marker) + 2
    stop = body.find(b"\r\n" + marker, start)
    if stop < 0:
        raise SmimeError("malformed", "multipart/signed without a second part")
    content = body[start:stop]
    parts = message.get_payload()
    if not isinstance(parts, list) or len(parts) != 2:
        raise SmimeError("malformed", "multipart/signed must have two parts")
    signature_part = parts[1]
    if not isinstance(signature_part, Message) or _content_type(signature_part) not in _SIGNED_TYPES:
        raise SmimeError("unsigned", "the second part is not a PKCS #7 signature")
    der = signature_part.get_payload(decode=True)
    if not isinstance(der, bytes) or not der:
        raise SmimeError("malformed", "empty signature part")
    return content, der


def verify(entity: bytes, trust_roots: Iterable[x509.Certificate], *, moment: datetime,
           from_address: str | None, crls: Iterable[x509.CertificateRevocationList] = ()) -> Verified:
    """Verify a signed entity (``multipart/signed``, or opaque ``pkcs7-mime; smime-type=signed-data``).

    ``crls``: revocation lists the caller has (nothing is fetched). A certificate of the signer's
    chain whose issuer has a current CRL here (``thisUpdate <= moment <= nextUpdate``) must be
    covered by it (pyhanko-certvalidator, CRL required: listed -> ``revoked_certificate``, a CRL that
    does not verify -> ``untrusted_signer``); an issuer without one is checked soft-fail (only what
    the certificate declares, nothing fetched: in effect unchecked). A CRL past its ``nextUpdate``
    no longer vouches for a certificate, but what it lists stays revoked: a chain certificate it
    lists, signed by that certificate's issuer, is ``revoked_certificate`` too."""
    message = message_from_bytes(entity)
    kind = _content_type(message)
    content: bytes | None
    if kind == "multipart/signed":
        content, der = _split_signed(entity)
    elif kind in _MIME_TYPES and "signed" in str(message.get_param("smime-type") or "signed-data"):
        payload = message.get_payload(decode=True)
        if not isinstance(payload, bytes):
            raise SmimeError("malformed", "empty signed-data part")
        content, der = None, payload
    else:
        raise SmimeError("unsigned", "the message is not signed")
    signed_data = _signed_data(der)
    if content is None:
        encapsulated = signed_data["encap_content_info"]["content"]
        if encapsulated.native is None:
            raise SmimeError("malformed", "signed-data without content")
        content = bytes(encapsulated.native)
    certificates = [c.chosen for c in signed_data["certificates"] if c.name == "certificate"] \
        if signed_data["certificates"].native is not None else []
    signer_infos = list(signed_data["signer_infos"])
    if not signer_infos:
        raise SmimeError("unsigned", "the signature has no signer")
    roots = list(trust_roots)
    revocations = list(crls)
    refused: list[tuple[SignerReport, SmimeError]] = []
    for signer_info in signer_infos:  # every SignerInfo: one that is valid, trusted and bound suffices
        try:
            signer_x509 = _verify_signer(signer_info, certificates, content, roots, moment, from_address,
                                         revocations)
        except SmimeError as exc:
            refused.append((SignerReport(_subject_of(signer_info, certificates), exc.code, exc.message), exc))
            continue
        return Verified(content=content, signer=signer_x509, others=tuple(report for report, _ in refused))
    raise refused[0][1]  # none is acceptable: the first signer's reason, as for a message with one signer


def _verify_signer(signer_info: cms.SignerInfo, certificates: list[asn1_x509.Certificate], content: bytes,
                   trust_roots: list[x509.Certificate], moment: datetime, from_address: str | None,
                   crls: list[x509.CertificateRevocationList]) -> x509.Certificate:
    signer = _signer_certificate(signer_info, certificates)
    _check_signature(signer_info, signer, content)
    _check_chain(signer, certificates, trust_roots, moment, crls)
    signer_x509 = x509.load_der_x509_certificate(signer.dump())
    if from_address is not None:
        _check_address(signer_x509, from_address)
    return signer_x509


def _subject_of(signer_info: cms.SignerInfo, certificates: list[asn1_x509.Certificate]) -> str:
    try:
        signer = _signer_certificate(signer_info, certificates)
    except SmimeError:
        return "unknown"
    return x509.load_der_x509_certificate(signer.dump()).subject.rfc4514_string()


def _signed_data(der: bytes) -> cms.SignedData:
    try:
        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            raise SmimeError("unsigned", "the signature part holds no SignedData")
        signed = info["content"]
        signed.native  # noqa: B018 - parses everything now: a malformed structure fails here
    except SmimeError:
        raise
    except (ValueError, TypeError, KeyError):
        raise SmimeError("malformed", "the signature is not valid CMS") from None
    assert isinstance(signed, cms.SignedData)
    return signed


def _signer_certificate(signer_info: cms.SignerInfo, certificates: list[asn1_x509.Certificate]
                        ) -> asn1_x509.Certificate:
    sid = signer_info["sid"]
    for certificate in certificates:
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (certificate.serial_number == wanted["serial_number"].native
                    and certificate.issuer == wanted["issuer"]):
                return certificate
        elif certificate.key_identifier == sid.chosen.native:
            return certificate
    raise SmimeError("untrusted_signer", "the signer's certificate is not in the message")


def _hash(name: str) -> hashes.HashAlgorithm:
    try:
        return _HASHES[name]()
    except KeyError:
        raise SmimeError("malformed", f"unsupported digest algorithm {name}") from None


def _check_signature(signer_info: cms.SignerInfo, signer: asn1_x509.Certificate, content: bytes) -> None:
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    algorithm = _hash(digest_name)
    signed_attrs = signer_info["signed_attrs"]
    if signed_attrs.native is None or len(signed_attrs) == 0:
        to_verify = content
    else:
        digests = [a["values"][0].native for a in signed_attrs if a["type"].native == "message_digest"]
        if len(digests) != 1:
            raise SmimeError("malformed", "the signed attributes lack one message-digest")
        actual = hashlib.new(digest_name, content).digest()
        if digests[0] != actual:
            raise SmimeError("tampered", "the content does not match the signed digest")
        # the signature is over the attributes' DER with the SET OF tag, not the [0] IMPLICIT one
        to_verify = b"\x31" + signed_attrs.dump()[1:]
    signature = bytes(signer_info["signature"].native)
    scheme = signer_info["signature_algorithm"].signature_algo
    public_key = x509.load_der_x509_certificate(signer.dump()).public_key()
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and scheme == "rsassa_pkcs1v15":
            public_key.verify(signature, to_verify, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, rsa.RSAPublicKey) and scheme == "rsassa_pss":
            params = signer_info["signature_algorithm"]["parameters"]
            pss_hash = _hash(params["hash_algorithm"]["algorithm"].native)
            pss = padding.PSS(mgf=padding.MGF1(pss_hash), salt_length=params["salt_length"].native)
            public_key.verify(signature, to_verify, pss, pss_hash)
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and scheme == "ecdsa":
            public_key.verify(signature, to_verify, ec.ECDSA(algorithm))
        else:
            raise SmimeError("malformed", f"unsupported signature algorithm {scheme}")
    except InvalidSignature:
        raise SmimeError("tampered", "the signature does not match the signed attributes") from None


T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end, also from a thread whose event loop is running (an SMTP handler)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def _target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=_target, name="smime-verify")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _current(revocation_list: x509.CertificateRevocationList, moment: datetime) -> bool:
    next_update = revocation_list.next_update_utc
    return revocation_list.last_update_utc <= moment and (next_update is None or moment <= next_update)


def _revocation_policy(signer: asn1_x509.Certificate, others: list[asn1_x509.Certificate],
                       issuers: set[bytes]) -> CertRevTrustPolicy:
    """CRL required for the signer when a current CRL of its issuer is at hand, for the CA
    certificates above it when every one of the message's intermediates has one; soft-fail otherwise."""
    soft, required = RevocationCheckingRule.CHECK_IF_DECLARED_SOFT, RevocationCheckingRule.CRL_REQUIRED
    intermediates = [c for c in others if c.ca and not c.self_issued]
    return CertRevTrustPolicy(RevocationCheckingPolicy(
        ee_certificate_rule=required if signer.issuer.dump() in issuers else soft,
        intermediate_ca_cert_rule=required if intermediates and all(
            c.issuer.dump() in issuers for c in intermediates) else soft))


def _check_chain(signer: asn1_x509.Certificate, certificates: list[asn1_x509.Certificate],
                 trust_roots: list[x509.Certificate], moment: datetime,
                 crls: list[x509.CertificateRevocationList]) -> None:
    if not trust_roots:
        raise SmimeError("untrusted_signer", "no trust anchors are configured")
    if moment.tzinfo is None:  # a naive moment is UTC
        moment = moment.replace(tzinfo=UTC)
    if not signer.not_valid_before <= moment <= signer.not_valid_after:
        raise SmimeError("expired_certificate", "the signer's certificate is not valid now")
    roots = [asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER)) for root in trust_roots]
    current = [c for c in crls if _current(c, moment)]
    others = [c for c in certificates if c.dump() != signer.dump()]
    lists = [asn1_crl.CertificateList.load(c.public_bytes(serialization.Encoding.DER)) for c in current]
    policy = _revocation_policy(signer, others, {c.issuer.dump() for c in lists})
    context = ValidationContext(trust_roots=roots, moment=moment, allow_fetching=False, crls=lists,
                                revinfo_policy=policy)
    validator = CertificateValidator(signer, intermediate_certs=others, validation_context=context)
    try:
        path = _run(validator.async_validate_usage({"digital_signature"}))  # type: ignore[no-untyped-call]
    except RevokedError:
        raise SmimeError("revoked_certificate", "a certificate of the signer's chain is revoked (its "
                         "issuer's CRL lists it)") from None
    except (ExpiredError, NotYetValidError):
        raise SmimeError("expired_certificate", "a certificate of the signer's chain is not valid now") from None
    except InsufficientRevinfoError:
        raise SmimeError("untrusted_signer", "the revocation status of the signer's chain cannot be "
                         "established from its issuer's CRL") from None
    except (PathBuildingError, PathValidationError, InvalidCertificateError):
        raise SmimeError("untrusted_signer", "the signer's certificate does not chain to a trust anchor") from None
    _check_lapsed([c for c in crls if not _current(c, moment)], list(path))


def _check_lapsed(lapsed: list[x509.CertificateRevocationList], path: list[Any]) -> None:
    """What a CRL past its ``nextUpdate`` lists stays revoked: each certificate of the validated
    ``path`` (root first) against the lapsed CRLs of its issuer that its issuer signed."""
    if not lapsed:
        return
    chain = [x509.load_der_x509_certificate(c.dump()) for c in path]
    for issuer, certificate in zip(chain, chain[1:], strict=False):
        for revocation_list in lapsed:
            if (revocation_list.issuer == certificate.issuer
                    and revocation_list.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
                    and revocation_list.get_revoked_certificate_by_serial_number(
                        certificate.serial_number) is not None):
                raise SmimeError("revoked_certificate", "a certificate of the signer's chain is revoked "
                                 "(a lapsed CRL of its issuer lists it)")


def certificate_addresses(certificate: x509.Certificate) -> tuple[set[str], set[str]]:
    """(email addresses, DNS names) a certificate is bound to, lower-cased."""
    emails: set[str] = set()
    domains: set[str] = set()
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails.update(e.lower() for e in san.get_values_for_type(x509.RFC822Name))
        domains.update(d.lower() for d in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    for attribute in certificate.subject.get_attributes_for_oid(x509.NameOID.EMAIL_ADDRESS):
        emails.add(str(attribute.value).lower())
    return emails, domains


def _check_address(certificate: x509.Certificate, from_address: str) -> None:
    address = from_address.strip().lower()
    emails, domains = certificate_addresses(certificate)
    if address in emails:
        return
    if not emails and address.rpartition("@")[2] in domains:
        return  # a domain-bound certificate
    raise SmimeError("address_mismatch", "the signer's certificate is not bound to the From address")
