"""The SMTP side of the Direct listener: who may connect, STARTTLS and AUTH (:class:`ListenerOptions`).

- ``allow``: the client networks (CIDRs) of the clinic's HISP. A connection from elsewhere is answered
  ``554 5.7.1`` instead of the greeting and closed: no command is read, nothing is stored. None: any.
- ``tls_cert`` / ``tls_key``: a PEM certificate (chain) and key, as files or as PEM text: STARTTLS is
  offered; ``require_starttls``: nothing but EHLO/STARTTLS/QUIT before it.
- ``auth``: user name -> password. Off by default (AUTH not offered: a HISP is told apart by its
  network and its S/MIME signature); on, every message needs AUTH, only after STARTTLS when TLS is on.
"""

from __future__ import annotations

import hmac
import ipaddress
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

__all__ = ["ListenerOptions", "ListenerController", "tls_context"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ListenerOptions:
    allow: Sequence[str] | None = None
    tls_cert: str | None = None  # a file path, or PEM text
    tls_key: str | None = field(default=None, repr=False)
    require_starttls: bool = False
    auth: Mapping[str, str] | None = field(default=None, repr=False)

    def networks(self) -> tuple[Network, ...] | None:
        """The allowed networks (ValueError naming the entry that is no CIDR)."""
        if self.allow is None:
            return None
        networks = []
        for entry in self.allow:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(f"allowed client network {entry!r} is not a CIDR (such as 10.1.0.0/16)") from None
        return tuple(networks)


def _pem(value: str, directory: str, name: str) -> str:
    if "-----BEGIN" not in value:
        return value
    path = Path(directory, name)
    path.touch(mode=0o600)
    path.write_text(value)
    return str(path)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 at least) from files or PEM text (ssl reads files only: PEM text
    goes through a private temporary directory, removed before this returns)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="direct-tls-") as directory:
        try:
            context.load_cert_chain(_pem(cert, directory, "cert.pem"), _pem(key, directory, "key.pem"))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"the listener's TLS certificate and key cannot be loaded: {exc.__class__.__name__}"
                             ) from None
    return context


def _allowed(peer: Any, networks: tuple[Network, ...] | None) -> bool:
    if networks is None:
        return True
    try:
        address = ipaddress.ip_address(peer[0] if isinstance(peer, tuple) else peer)
    except (ValueError, TypeError, IndexError):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class _ListenerSMTP(SMTP):
    def __init__(self, handler: Any, *, networks: tuple[Network, ...] | None, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._networks = networks

    async def _handle_client(self) -> None:
        assert self.session is not None
        if not _allowed(self.session.peer, self._networks):
            await self.push("554 5.7.1 connection refused: not an allowed client network")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


class ListenerController(Controller):
    """An aiosmtpd controller with the :class:`ListenerOptions`; port 0 picks a free port."""

    def __init__(self, handler: Any, options: ListenerOptions, *, hostname: str, port: int) -> None:
        self._networks = options.networks()
        kwargs: dict[str, Any] = {}
        if options.tls_cert and options.tls_key:
            kwargs.update(tls_context=tls_context(options.tls_cert, options.tls_key),
                          require_starttls=options.require_starttls)
        elif options.require_starttls:
            raise ValueError("require_starttls needs a TLS certificate and key")
        if options.auth:
            users = dict(options.auth)

            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                if not isinstance(data, LoginPassword):
                    return AuthResult(success=False, handled=False)
                expected = users.get(data.login.decode("utf-8", "replace"))
                ok = expected is not None and hmac.compare_digest(expected.encode(), bytes(data.password))
                return AuthResult(success=ok, handled=False)

            kwargs.update(auth_required=True, auth_require_tls="tls_context" in kwargs, authenticator=authenticate)
        super().__init__(handler, hostname=hostname, port=port, **kwargs)

    def factory(self) -> SMTP:
        return _ListenerSMTP(self.handler, networks=self._networks, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        if self.server is not None and self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()
