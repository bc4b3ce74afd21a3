"""The receiving identity of a Direct listener, read from the store per message.

A listener decrypts with the clinic's certificate and key and verifies senders against the trust
anchors: from its connector's config, completed with the tenant's stored Direct certificates
(:mod:`hub.sync.direct_certs`), and checks their revocation against the tenant's CRLs
(:mod:`hub.sync.direct_crls`). Both change while the listener runs (``hub direct certs add|remove``,
the admin API, a connector config update), so :class:`IdentitySource` checks, for each message, the
version of what the identity is built from (the connector's ``updated_at`` and
:meth:`hub.sync.direct_certs.DirectCerts.changed_at`, as the sync engine does for the connectors it
builds) and rebuilds the identity when it moved: no restart. One small read-only query per message;
the certificates and the key are parsed again only after a change."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.direct import DirectConfig
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync.config import SyncConfig
from hub.sync.direct_certs import DirectCerts
from hub.sync.direct_crls import DirectCrls
from hub.unit_of_work import unit_of_work

__all__ = ["DirectIdentity", "IdentitySource", "identity_version", "load_identity"]


@dataclass(frozen=True)
class DirectIdentity:
    """The clinic's receiving side: its address, decryption certificate and key, trust anchors."""

    address: str
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    trust_roots: tuple[x509.Certificate, ...]
    #: the tenant's CRLs in use (:mod:`hub.sync.direct_crls`), for the senders' revocation status
    crls: tuple[x509.CertificateRevocationList, ...] = ()


def load_identity(settings: Settings, *, tenant: str, connector: str) -> DirectIdentity:
    """The identity of the tenant's enabled ``direct`` connector named ``connector``."""
    with unit_of_work(settings, readonly=True) as session:
        instance = repo.connector_by_name(session, tenant=tenant, name=connector)
        if instance is None or instance.kind != "direct" or not instance.enabled:
            raise LookupError("no enabled direct connector of that name")
        raw = SyncConfig(session, tenant=tenant, settings=settings).connector_config(instance)
        crls = tuple(DirectCrls(session, tenant=tenant).in_use())
    config = DirectConfig.model_validate(raw)  # with the stored certificates where the config has none
    if not config.sender_cert_pem or not config.sender_key_pem.get_secret_value():
        raise ValueError("the Direct connector has no certificate and key for its address")
    key = serialization.load_pem_private_key(config.sender_key_pem.get_secret_value().encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the Direct connector's key must be an RSA key to decrypt")
    return DirectIdentity(
        address=config.sender_address,
        certificate=x509.load_pem_x509_certificate(config.sender_cert_pem.encode()),
        key=key,
        trust_roots=tuple(x509.load_pem_x509_certificate(p.encode()) for p in config.trust_anchor_pems),
        crls=crls,
    )


def identity_version(settings: Settings, *, tenant: str, connector: str) -> str | None:
    """What the identity of ``connector`` is built from, as a stamp (None: no such enabled connector)."""
    with unit_of_work(settings, readonly=True) as session:
        instance = repo.connector_by_name(session, tenant=tenant, name=connector)
        if instance is None or instance.kind != "direct" or not instance.enabled:
            return None
        changed = DirectCerts(session, tenant=tenant, settings=settings).changed_at()
        return f"{instance.updated_at.isoformat()}|{changed.isoformat() if changed else ''}"


class IdentitySource:
    """The current identity of one connector, rebuilt when its version moves (thread-safe)."""

    def __init__(self, settings: Settings, *, tenant: str, connector: str) -> None:
        self.settings = settings
        self.tenant = tenant
        self.connector = connector
        self._lock = threading.Lock()
        self._cached: tuple[str, DirectIdentity] | None = None

    def current(self) -> DirectIdentity:
        """The identity for the next message (LookupError / ValueError: none can be built now)."""
        version = identity_version(self.settings, tenant=self.tenant, connector=self.connector)
        if version is None:
            raise LookupError("no enabled direct connector of that name")
        with self._lock:
            if self._cached is not None and self._cached[0] == version:
                return self._cached[1]
        identity = load_identity(self.settings, tenant=self.tenant, connector=self.connector)
        with self._lock:
            self._cached = (version, identity)
        return identity
