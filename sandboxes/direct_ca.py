"""A throw-away certificate authority for the Direct sandbox and its tests (keys made at start, never stored).

:class:`TestCA` makes a self-signed root and issues address-bound Direct certificates (subjectAltName
rfc822Name, key usage digitalSignature + keyEncipherment), TLS server certificates for 127.0.0.1 and
certificate revocation lists (:meth:`TestCA.crl`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Issued", "TestCA"]


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class TestCA:
    """A root CA; :meth:`issue` makes end-entity certificates signed by it."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "Sandbox Direct CA", *, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)
        self.key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(days=1))
            .not_valid_after(self.now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def _builder(self, subject: x509.Name, key: rsa.RSAPrivateKey, *, not_before: datetime,
                 not_after: datetime) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
        )

    def issue(self, address: str, *, days: int = 365, expired: bool = False) -> Issued:
        """A Direct certificate bound to ``address`` (``expired``: valid only in the past)."""
        key = _key()
        if expired:
            not_before, not_after = self.now - timedelta(days=30), self.now - timedelta(days=1)
        else:
            not_before, not_after = self.now - timedelta(hours=1), self.now + timedelta(days=days)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
        certificate = (
            self._builder(subject, key, not_before=not_before, not_after=not_after)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(certificate, key)

    def issue_tls(self, host: str = "127.0.0.1") -> Issued:
        """A TLS server certificate for ``host`` (an IP address or a DNS name)."""
        key = _key()
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = x509.DNSName(host)
        certificate = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]), key,
                          not_before=self.now - timedelta(hours=1), not_after=self.now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([name]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(certificate, key)

    def crl(self, *revoked: x509.Certificate, this_update: datetime | None = None,
            next_update: datetime | None = None) -> x509.CertificateRevocationList:
        """A CRL of this CA listing ``revoked`` (default: issued now, next update in 7 days)."""
        issued = this_update or self.now - timedelta(minutes=5)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(issued)
            .next_update(next_update or issued + timedelta(days=7))
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
        )
        for certificate in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(certificate.serial_number)
                .revocation_date(issued - timedelta(minutes=1)).build())
        return builder.sign(self.key, hashes.SHA256())
