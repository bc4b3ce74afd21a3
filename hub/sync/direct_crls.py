"""Certificate revocation lists for Direct verification, supplied by an administrator.

The hub fetches nothing (ADR 0010): an administrator adds the CRLs of the issuers it trusts
(``hub direct certs add --crl FILE``, ``POST /admin/api/direct/crls``), and the listener passes the
tenant's CRLs in use to :func:`connectors.direct.smime.verify` with each message (it picks up a new
one with its next message: :meth:`hub.sync.direct_certs.DirectCerts.changed_at` moves with them).

A CRL is accepted (PEM or DER) when it is signed by one of the tenant's stored Direct certificates
that may sign it: a trust anchor, or a CA certificate (an intermediate) stored for an address, with
the CRL's issuer as its subject. A CRL past its ``nextUpdate`` (expired) is stored but reported
(:attr:`CrlAdded.expired`, ``expired`` in the view): it still revokes what it lists, but no longer
vouches for the rest (the issuer is checked soft-fail until a current one is added). One CRL per
issuer is in use: a newer one (later ``thisUpdate``) supersedes the older, which is kept with
``removed_at``; an older one than the one in use is refused. Refusals are :class:`CrlRefused` (400).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.errors import BadRequest, NotFound
from hub.kit import utcnow
from hub.store.models import DirectCertificate, DirectCrl

__all__ = ["CrlAdded", "CrlRefused", "DirectCrls", "crl_view", "read_crl"]


class CrlRefused(BadRequest):
    """A CRL that cannot be stored (the message names the reason)."""


def read_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        raise CrlRefused("the file is not a PEM or DER X.509 CRL") from None


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class CrlAdded:
    row: DirectCrl
    #: past its nextUpdate when added: kept, but it vouches for nothing it does not list
    expired: bool
    #: the older CRLs of the same issuer it superseded
    superseded: tuple[int, ...] = ()


def _may_sign_crls(certificate: x509.Certificate, anchor: bool) -> bool:
    if anchor:
        return True
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


class DirectCrls:
    """The CRLs of one tenant."""

    def __init__(self, session: Session, *, tenant: str, clock: Callable[[], datetime] = utcnow) -> None:
        self.session = session
        self.tenant = tenant
        self.clock = clock

    def _issuer_of(self, crl: x509.CertificateRevocationList) -> DirectCertificate:
        now = _naive(self.clock())
        rows = self.session.scalars(select(DirectCertificate).where(
            DirectCertificate.tenant_id == self.tenant, DirectCertificate.removed_at.is_(None))
            .order_by(DirectCertificate.id))
        for row in rows:
            if row.not_after < now:
                continue
            certificate = x509.load_pem_x509_certificate(row.cert_pem.encode())
            if (certificate.subject == crl.issuer and _may_sign_crls(certificate, row.trust_anchor)
                    and crl.is_signature_valid(certificate.public_key())):  # type: ignore[arg-type]
                return row
        raise CrlRefused("the CRL is not signed by a stored trust anchor or intermediate certificate "
                         "(add its issuer first: hub direct certs add --trust-anchor)")

    def add(self, data: bytes) -> CrlAdded:
        """Store a CRL (the same one again is kept once, and is back if it was removed)."""
        crl = read_crl(data)
        issuer_row = self._issuer_of(crl)
        now = _naive(self.clock())
        this_update = _naive(crl.last_update_utc)
        next_update = _naive(crl.next_update_utc) if crl.next_update_utc is not None else None
        if this_update > now:
            raise CrlRefused("the CRL is not valid yet (its thisUpdate is in the future)")
        issuer = crl.issuer.rfc4514_string()[:500]
        der = crl.public_bytes(serialization.Encoding.DER)
        fingerprint = hashlib.sha256(der).hexdigest()
        in_use = [r for r in self.list() if r.issuer == issuer and r.fingerprint != fingerprint]
        newer = [r for r in in_use if r.this_update >= this_update]
        if newer:
            raise CrlRefused(f"a CRL of this issuer as recent or newer is stored (id {newer[0].id})")
        row = self.session.scalars(select(DirectCrl).where(
            DirectCrl.tenant_id == self.tenant, DirectCrl.fingerprint == fingerprint)).one_or_none()
        if row is None:
            row = DirectCrl(tenant_id=self.tenant, fingerprint=fingerprint)
            self.session.add(row)
        row.issuer = issuer
        row.issuer_fingerprint = issuer_row.fingerprint
        row.this_update, row.next_update = this_update, next_update
        row.revoked = len(list(crl))
        row.crl_pem = crl.public_bytes(serialization.Encoding.PEM).decode()
        row.created_at = now
        row.removed_at = None
        for older in in_use:
            older.removed_at = now
        self.session.flush()
        return CrlAdded(row=row, expired=next_update is not None and next_update < now,
                        superseded=tuple(r.id for r in in_use))

    def list(self) -> list[DirectCrl]:
        """The CRLs in use (not removed nor superseded), by issuer."""
        return list(self.session.scalars(select(DirectCrl).where(
            DirectCrl.tenant_id == self.tenant, DirectCrl.removed_at.is_(None))
            .order_by(DirectCrl.issuer, DirectCrl.id)))

    def remove_id(self, entry_id: int) -> DirectCrl:
        """Remove the CRL ``entry_id`` of this tenant (404 when there is none, or it is removed)."""
        row = self.session.scalars(select(DirectCrl).where(
            DirectCrl.tenant_id == self.tenant, DirectCrl.id == entry_id, DirectCrl.removed_at.is_(None))).one_or_none()
        if row is None:
            raise NotFound("There is no Direct CRL with this id")
        row.removed_at = _naive(self.clock())
        self.session.flush()
        return row

    def in_use(self) -> list[x509.CertificateRevocationList]:
        """The CRLs verification is given (lapsed ones too: what they list stays revoked)."""
        return [x509.load_pem_x509_crl(r.crl_pem.encode()) for r in self.list()]

    def changed_at(self) -> datetime | None:
        """When the tenant's CRLs last changed (added, superseded or removed)."""
        added, removed = self.session.execute(
            select(func.max(DirectCrl.created_at), func.max(DirectCrl.removed_at))
            .where(DirectCrl.tenant_id == self.tenant)).one()
        stamps = [s for s in (added, removed) if s is not None]
        return max(stamps) if stamps else None


def crl_view(row: DirectCrl, *, now: datetime | None = None) -> dict[str, Any]:
    """What the admin API and the CLI show of a CRL (``expired``: past its nextUpdate now)."""
    moment = _naive(now or utcnow())
    return {
        "id": row.id, "issuer": row.issuer, "issuer_fingerprint": row.issuer_fingerprint,
        "fingerprint": row.fingerprint, "revoked": row.revoked,
        "this_update": _iso(row.this_update), "next_update": _iso(row.next_update),
        "expired": row.next_update is not None and row.next_update < moment,
        "created_at": _iso(row.created_at),
    }
