"""Direct certificates per address, outside the connector config: the clinic's own (certificate and
private key, the key encrypted with the hub's payload cipher), a partner's (certificate only) and
trust anchors (``trust_anchor``). ``hub direct certs`` and ``/admin/api/direct/certs`` add, list and
remove them; :func:`fill_direct_config` gives a ``direct`` connector's config the entries of the store for
what the config leaves empty (the sender's certificate and key, recipients' certificates, anchors).

Replacing a certificate: adding a new one for an address keeps the old one too (both are used: the
newest valid certificate with a key signs and decrypts, every valid anchor is trusted) until the old
one expires or is removed; ``replace=True`` (``--replace``) removes the address's other entries of
the same kind (certificates, or anchors) in the same transaction. Removed entries are kept with
``removed_at`` (history, and so that :meth:`DirectCerts.changed_at` moves on a removal too), never
used nor listed; adding the same certificate again brings it back.

Files are PEM or DER. Refused (:class:`CertificateRefused`): what is no certificate or key, a key that
is not the certificate's, a certificate that has expired (or is not yet valid)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.crypto import cipher_for, decrypt, encrypt
from hub.errors import BadRequest, NotFound
from hub.kit import utcnow
from hub.settings import Settings
from hub.store.models import DirectCertificate
from hub.sync.direct_crls import DirectCrls

__all__ = ["CertificateRefused", "DirectCerts", "certificate_view", "fill_direct_config", "read_certificate",
           "read_private_key"]


class CertificateRefused(BadRequest):
    """A certificate or key that cannot be stored (the message names the reason, never the content)."""


def read_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise CertificateRefused("the file is not a PEM or DER X.509 certificate") from None


def read_private_key(data: bytes) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """An unencrypted RSA or EC private key from PEM or DER (PKCS#8 or traditional) bytes."""
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CertificateRefused("the key file is not an unencrypted PEM or DER private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateRefused("the key must be an RSA or EC key")
    return key


def _public_der(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _address(value: str) -> str:
    value = value.strip().lower()
    if value.count("@") != 1 or not value.isascii() or any(c.isspace() for c in value) or len(value) > 254:
        raise CertificateRefused("not a Direct address")
    return value


def certificate_view(row: DirectCertificate) -> dict[str, Any]:
    """What the admin API and the CLI show of an entry: never the key, only whether there is one."""
    return {
        "id": row.id, "address": row.address, "trust_anchor": row.trust_anchor,
        "has_key": row.key_encrypted is not None,
        "fingerprint": row.fingerprint, "subject": row.subject,
        "not_after": row.not_after.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        "created_at": row.created_at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
    }


@dataclass(frozen=True)
class StoredIdentity:
    cert_pem: str
    key_pem: str | None


class DirectCerts:
    """The Direct certificates of one tenant."""

    def __init__(self, session: Session, *, tenant: str, settings: Settings,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.session = session
        self.tenant = tenant
        self.clock = clock
        self.box = cipher_for(settings)

    def add(self, *, address: str, cert: bytes, key: bytes | None = None, trust_anchor: bool = False,
            replace: bool = False) -> DirectCertificate:
        """Store a certificate (and its key) for ``address``; the same certificate again replaces it.
        ``replace``: the address's other entries of the same kind are removed."""
        where = _address(address)
        certificate = read_certificate(cert)
        now = self.clock()
        naive = now.replace(tzinfo=None) if now.tzinfo else now
        if certificate.not_valid_after_utc.replace(tzinfo=None) < naive:
            raise CertificateRefused("the certificate has expired")
        if certificate.not_valid_before_utc.replace(tzinfo=None) > naive:
            raise CertificateRefused("the certificate is not valid yet")
        key_pem = None
        if key is not None:
            if trust_anchor:
                raise CertificateRefused("a trust anchor is stored without a key")
            private = read_private_key(key)
            if _public_der(private.public_key()) != _public_der(certificate.public_key()):
                raise CertificateRefused("the key does not match the certificate")
            key_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        der = certificate.public_bytes(serialization.Encoding.DER)
        fingerprint = hashlib.sha256(der).hexdigest()
        row = self.session.scalars(select(DirectCertificate).where(
            DirectCertificate.tenant_id == self.tenant, DirectCertificate.address == where,
            DirectCertificate.fingerprint == fingerprint)).one_or_none()
        if row is None:
            row = DirectCertificate(tenant_id=self.tenant, address=where, fingerprint=fingerprint)
            self.session.add(row)
        row.trust_anchor = trust_anchor
        row.subject = certificate.subject.rfc4514_string()[:500]
        row.not_after = certificate.not_valid_after_utc.replace(tzinfo=None)
        row.cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        row.key_encrypted = encrypt(self.box, key_pem) if key_pem else None
        row.created_at = naive
        row.removed_at = None
        self.session.flush()
        if replace:
            for other in self.list(address=where):
                if other.id != row.id and other.trust_anchor == trust_anchor:
                    other.removed_at = naive
            self.session.flush()
        return row

    def remove(self, *, address: str, kind: str | None = None, fingerprint: str | None = None
               ) -> list[DirectCertificate]:
        """Remove the entries of ``address`` (``kind``: ``cert`` or ``anchor`` only; ``fingerprint``:
        the SHA-256 or a prefix of at least 8 hex digits, as listed); returns those removed."""
        if kind not in (None, "cert", "anchor"):
            raise CertificateRefused("kind must be cert or anchor")
        wanted = (fingerprint or "").strip().lower().replace(":", "")
        if fingerprint is not None and (len(wanted) < 8 or any(c not in "0123456789abcdef" for c in wanted)):
            raise CertificateRefused("the fingerprint must be at least 8 hex digits of the SHA-256")
        rows = [r for r in self.list(address=_address(address))
                if (kind is None or r.trust_anchor == (kind == "anchor"))
                and (not wanted or r.fingerprint.startswith(wanted))]
        return self._remove(rows)

    def remove_id(self, entry_id: int) -> DirectCertificate:
        """Remove the entry ``entry_id`` of this tenant (404 when there is none, or it is removed)."""
        row = self.session.scalars(select(DirectCertificate).where(
            DirectCertificate.tenant_id == self.tenant, DirectCertificate.id == entry_id,
            DirectCertificate.removed_at.is_(None))).one_or_none()
        if row is None:
            raise NotFound("There is no Direct certificate with this id")
        return self._remove([row])[0]

    def _remove(self, rows: list[DirectCertificate]) -> list[DirectCertificate]:
        now = self.clock()
        naive = now.replace(tzinfo=None) if now.tzinfo else now
        for row in rows:
            row.removed_at = naive
        self.session.flush()
        return rows

    def list(self, *, address: str | None = None) -> list[DirectCertificate]:
        """The entries in use (not removed), by address."""
        query = select(DirectCertificate).where(DirectCertificate.tenant_id == self.tenant,
                                                DirectCertificate.removed_at.is_(None))
        if address is not None:
            query = query.where(DirectCertificate.address == address.strip().lower())
        return list(self.session.scalars(query.order_by(DirectCertificate.address, DirectCertificate.id)))

    def changed_at(self) -> datetime | None:
        """When the tenant's entries or CRLs last changed, added or removed (a connector built from
        them is rebuilt after; the listener reloads its identity)."""
        added, removed = self.session.execute(
            select(func.max(DirectCertificate.created_at), func.max(DirectCertificate.removed_at))
            .where(DirectCertificate.tenant_id == self.tenant)).one()
        crls = DirectCrls(self.session, tenant=self.tenant, clock=self.clock).changed_at()
        stamps = [s for s in (added, removed, crls) if s is not None]
        return max(stamps) if stamps else None

    def _valid(self, rows: list[DirectCertificate]) -> list[DirectCertificate]:
        now = self.clock()
        naive = now.replace(tzinfo=None) if now.tzinfo else now
        return [r for r in rows if r.not_after >= naive]

    def identity(self, address: str) -> StoredIdentity | None:
        """The newest valid certificate of ``address`` that has a key."""
        rows = [r for r in self._valid(self.list(address=address)) if not r.trust_anchor and r.key_encrypted]
        if not rows:
            return None
        row = max(rows, key=lambda r: r.created_at)
        key = decrypt(self.box, row.key_encrypted)
        return StoredIdentity(row.cert_pem, key.decode() if key else None)

    def fill_direct_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` (a direct connector's) with the store's entries where it has none."""
        filled = dict(config)
        address = str(config.get("sender_address") or "").strip().lower()
        rows = self._valid(self.list())
        if address and not (config.get("sender_cert_pem") and config.get("sender_key_pem")):
            own = self.identity(address)
            if own is not None and own.key_pem:
                filled["sender_cert_pem"], filled["sender_key_pem"] = own.cert_pem, own.key_pem
        if not config.get("trust_anchor_pems"):
            anchors = [r.cert_pem for r in rows if r.trust_anchor and r.address == address]
            if anchors:
                filled["trust_anchor_pems"] = anchors
        recipients = {str(k).lower(): v for k, v in (config.get("recipient_certs") or {}).items()}
        for row in sorted(rows, key=lambda r: r.created_at):
            if not row.trust_anchor and row.address != address and row.address not in (config.get(
                    "recipient_certs") or {}):
                recipients[row.address] = row.cert_pem
        if recipients:
            filled["recipient_certs"] = recipients
        return filled


def fill_direct_config(session: Session, *, tenant: str, settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    return DirectCerts(session, tenant=tenant, settings=settings).fill_direct_config(config)
