"""A sandbox clearinghouse on 127.0.0.1: an SFTP drop and an HTTP API for 837P claim files, answering
with a 999, a 277CA per transaction set and (now, later, or when released) an 835; and a 270
eligibility inquiry with a 271 (``<stem>.271``, :mod:`sandboxes.clearinghouse_271`).

At start it makes, in a private temporary directory (gone at stop): an Ed25519 host key (pin it with
:attr:`SandboxClearinghouse.host_key_line` or ``.host_key_fingerprint``), one user ``clinic`` with a
generated password, a generated client key pair and an HTTP bearer token (all in
``credentials.json`` there, mode 0600), and the user's directories ``/inbound``, ``/outbound``, ``/archive``.

SFTP (:mod:`sandboxes.clearinghouse_sftp`): a complete file under ``/inbound`` (dot-files and ``*.part``
are uploads in progress, never read) is taken away and answered in ``/outbound`` as ``<stem>.999``,
``<stem>.277`` and ``<stem>.835``. HTTP (``url``; HTTPS with ``tls=True``, its CA in ``ca_path``)::

    POST   /claims             the file (Idempotency-Key, X-Filename) -> 202 {"id", "name", "duplicate"}
    GET    /responses          -> {"responses": [{"name", "size"}]}
    GET    /responses/{name}   -> the file      DELETE /responses/{name} -> 204 (404 when gone)
    GET    /_summary           what arrived (no auth); POST /_control, POST /_reset (see sandboxes.base)

The same claim file again (same name and bytes over SFTP, the same Idempotency-Key over HTTP) is
counted as a duplicate and answered with nothing new. What the answers say:
:mod:`sandboxes.clearinghouse_x12`. Claims are rejected in the 277CA (``A3:21``) when CLM01 starts
with ``reject_prefix`` and (``A3:116``) when ``known_payers`` is set and lacks the claim's payer id.

Controls: ``refuse_auth``, ``drop_after_bytes``, ``slow_seconds`` (both sides), the HTTP faults of
:class:`~sandboxes.base.MisbehaviourControls` (``status_override=503``, ``fail_rate``...), ``remit``
(``immediate`` | ``manual``: held until :meth:`~SandboxClearinghouse.release_remittance`),
``remit_delay_seconds``, ``payment_method`` (``ACH`` | ``CHK``), ``reject_prefix``, ``known_payers``,
``denied_codes``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import ssl
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import asyncssh

from sandboxes import clearinghouse_271 as eligibility
from sandboxes import clearinghouse_x12 as x12
from sandboxes.base import HOST, MisbehaviourControls, ThreadedHttpSandbox, is_number, serve_until_signalled
from sandboxes.clearinghouse_http import ClearinghouseHandler
from sandboxes.clearinghouse_sftp import SftpServerThread
from sandboxes.direct_ca import TestCA

__all__ = ["ClearinghouseControls", "ReceivedClaimFile", "SandboxClearinghouse", "main"]

USER = "clinic"


@dataclass(frozen=True)
class ClearinghouseControls(MisbehaviourControls):
    refuse_auth: bool = False
    drop_after_bytes: int | None = None
    slow_seconds: float = 0.0
    remit: Literal["immediate", "manual"] = "immediate"
    remit_delay_seconds: float = 0.0
    payment_method: Literal["ACH", "CHK"] = "ACH"
    reject_prefix: str = "REJ"
    known_payers: Sequence[str] | None = None
    denied_codes: Sequence[str] = ("97750",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.drop_after_bytes is not None and (not isinstance(self.drop_after_bytes, int)
                                                  or self.drop_after_bytes < 0):
            raise ValueError("drop_after_bytes must be null or a non-negative integer")
        for name in ("slow_seconds", "remit_delay_seconds"):
            if not is_number(getattr(self, name)) or not 0 <= getattr(self, name) <= 60:
                raise ValueError(f"{name} must be between 0 and 60 seconds")
        if self.remit not in ("immediate", "manual") or self.payment_method not in ("ACH", "CHK"):
            raise ValueError("remit must be immediate or manual; payment_method ACH or CHK")
        if self.known_payers is not None:
            object.__setattr__(self, "known_payers", tuple(str(p) for p in self.known_payers))
        object.__setattr__(self, "denied_codes", tuple(str(c) for c in self.denied_codes))


@dataclass(frozen=True)
class ReceivedClaimFile:
    user: str
    name: str
    channel: Literal["sftp", "http"]
    sha256: str
    size: int
    readable: bool
    accepted_sets: int
    rejected_sets: int
    claims: tuple[str, ...] = field(repr=False)  # CLM01 of each claim in accepted sets
    responses: tuple[str, ...] = ()


class SandboxClearinghouse(ThreadedHttpSandbox[ClearinghouseControls]):
    controls_class: ClassVar[type[MisbehaviourControls]] = ClearinghouseControls
    thread_name = "sandbox-clearinghouse"

    def __init__(self, port: int = 0, *, sftp_port: int = 0, tls: bool = False, now: Any = None,
                 **controls: Any) -> None:
        self.tls = tls
        self.tls_context: ssl.SSLContext | None = None
        self.ca_path: Path | None = None  # with tls: the PEM of the CA that signed the HTTPS certificate
        self._root_dir: tempfile.TemporaryDirectory[str] | None = None
        self.base_dir: Path | None = None
        self.sftp_port = sftp_port
        self._now = now or (lambda: datetime.now(UTC))
        self.password = secrets.token_urlsafe(18)
        self.token = secrets.token_urlsafe(24)
        self.http_user = USER  # the account the HTTP API files claims under
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._sftp: SftpServerThread | None = None
        self._timers: list[threading.Timer] = []
        self.visits_used: dict[str, int] = {}  # member id -> visits used this year (the 271's table)
        super().__init__(port, **controls)

    # ------------------------------------------------------------------------- identity

    @property
    def host_key_line(self) -> str:
        """``ssh-ed25519 AAAA...``: the OpenSSH public key line of the host key."""
        return " ".join(self.host_key.export_public_key("openssh").decode().split()[:2])

    @property
    def host_key_fingerprint(self) -> str:
        return str(self.host_key.get_fingerprint("sha256"))

    @property
    def client_key_pem(self) -> str:
        return str(self.client_key.export_private_key("openssh").decode())

    @property
    def url(self) -> str:
        return self.root_url

    @property
    def root_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    def check_password(self, user: str, password: str) -> bool:
        ok = not self.controls.refuse_auth and user == USER and hmac.compare_digest(password, self.password)
        if not ok:
            with self._lock:
                self.auth_failures += 1
        return ok

    def check_public_key(self, user: str, blob: str) -> bool:
        mine = self.client_key.export_public_key("openssh").decode().split()[1]
        ok = not self.controls.refuse_auth and user == USER and hmac.compare_digest(blob, mine)
        if not ok:
            with self._lock:
                self.auth_failures += 1
        return ok

    def check_http(self, authorization: str) -> bool:
        if self.controls.refuse_auth:
            return False
        if authorization.startswith("Bearer "):
            return hmac.compare_digest(authorization[7:].strip(), self.token)
        if authorization.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return user == USER and hmac.compare_digest(password, self.password)
        return False

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> SandboxClearinghouse:
        self._root_dir = tempfile.TemporaryDirectory(prefix="clearinghouse-")
        self.base_dir = Path(self._root_dir.name)
        for folder in ("inbound", "outbound", "archive"):
            (self.user_root(USER) / folder).mkdir(parents=True)
        (self.base_dir / "received").mkdir()
        credentials = self.base_dir / "credentials.json"
        credentials.touch(mode=0o600)
        if self.tls:
            self._tls_setup(self.base_dir)
        super().start()
        self._sftp = SftpServerThread(self, self.host_key, HOST, self.sftp_port)
        self.sftp_port = self._sftp.start()
        credentials.write_text(json.dumps(self.credentials(), indent=2))
        return self

    def _tls_setup(self, folder: Path) -> None:
        """A throw-away CA and a certificate for 127.0.0.1 (``ca_path`` trusts it); ssl loads files only."""
        ca = TestCA("Sandbox Clearinghouse CA")
        issued = ca.issue_tls(HOST)
        cert, key = folder / "tls-cert.pem", folder / "tls-key.pem"
        cert.write_text(issued.cert_pem)
        key.touch(mode=0o600)
        key.write_text(issued.key_pem)
        self.ca_path = folder / "ca.pem"
        self.ca_path.write_text(ca.cert_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        self.tls_context = context

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        sftp, self._sftp = self._sftp, None
        if sftp is not None:
            sftp.stop()
        super().stop()
        if self._root_dir is not None:
            self._root_dir.cleanup()
            self._root_dir = None

    def __enter__(self) -> SandboxClearinghouse:
        return self.start()

    def user_root(self, user: str) -> Path:
        if self.base_dir is None:
            raise RuntimeError("sandbox not started")
        return self.base_dir / "users" / user

    @property
    def credentials_path(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("sandbox not started")
        return self.base_dir / "credentials.json"

    def credentials(self) -> dict[str, Any]:
        return {"sftp": {"host": HOST, "port": self.sftp_port, "username": USER, "password": self.password,
                         "private_key": self.client_key_pem, "known_host_key": self.host_key_line,
                         "fingerprint": self.host_key_fingerprint},
                "http": {"url": self.root_url, "bearer_token": self.token, "username": USER,
                         "password": self.password, "ca_bundle_path": str(self.ca_path) if self.tls else None}}

    def connector_config(self, transport: Literal["sftp", "https"] = "sftp", *, key: bool = False,
                         **overrides: Any) -> dict[str, Any]:
        """An ``x12_billing`` connector config for this clearinghouse (``key``: SFTP with the client key)."""
        config: dict[str, Any] = {"transport": transport, "timeout_seconds": 10, "connect_timeout_seconds": 5}
        if transport == "sftp":
            section: dict[str, Any] = {"host": HOST, "port": self.sftp_port, "username": USER,
                                       "known_host_key": self.host_key_line}
            section.update({"private_key": self.client_key_pem} if key else {"password": self.password})
            config["sftp"] = section
        else:
            config["https"] = {"base_url": self.root_url, "bearer_token": self.token}
            if self.tls:
                config["https"]["ca_bundle_path"] = str(self.ca_path)
        for name, value in overrides.items():
            if name in ("sftp", "https"):
                config[name] = {**config.get(name, {}), **value}
            else:
                config[name] = value
        return config

    # -------------------------------------------------------------------------- records

    def _clear(self) -> None:
        self._files: list[ReceivedClaimFile] = []
        self._seen: dict[tuple[str, str], str] = {}  # (user, name or key) -> sha256
        self._pending: list[tuple[str, str, str]] = []  # (user, name, 835 text)
        self.duplicates = 0
        self.auth_failures = 0
        self._control = 0
        root = getattr(self, "base_dir", None)
        if root is not None and root.exists():
            for folder in (root / "users" / USER / "inbound", root / "users" / USER / "outbound"):
                for entry in folder.iterdir():
                    entry.unlink()

    @property
    def claim_files(self) -> list[ReceivedClaimFile]:
        with self._lock:
            return list(self._files)

    def responses(self, user: str = USER) -> list[str]:
        return sorted(p.name for p in (self.user_root(user) / "outbound").iterdir() if p.is_file())

    def response(self, name: str, user: str = USER) -> bytes:
        return (self.user_root(user) / "outbound" / name).read_bytes()

    def inbound(self, user: str = USER) -> list[str]:
        """What lies in the user's ``/inbound`` (partial uploads included)."""
        return sorted(p.name for p in (self.user_root(user) / "inbound").iterdir())

    def wait_for_responses(self, count: int, timeout: float = 10.0, user: str = USER) -> list[str]:
        self._wait_until(lambda: len(self.responses(user)) >= count, timeout)
        return self.responses(user)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"claim_files": [{"name": f.name, "channel": f.channel, "size": f.size, "sha256": f.sha256,
                                     "accepted_sets": f.accepted_sets, "rejected_sets": f.rejected_sets,
                                     "claims": len(f.claims), "responses": list(f.responses)} for f in self._files],
                    "duplicates": self.duplicates, "auth_failures": self.auth_failures,
                    "pending_remittances": len(self._pending), "controls": self._controls.to_json()}

    # ------------------------------------------------------------------------ answering

    def _next_control(self) -> int:
        self._control += 1
        return self._control

    def receive(self, user: str, name: str, content: bytes, *, channel: Literal["sftp", "http"],
                path: Path | None = None, key: str | None = None) -> tuple[ReceivedClaimFile | None, bool]:
        """Take one claim file: (its record, duplicate?). ``path``: the file to take away from inbound."""
        digest = hashlib.sha256(content).hexdigest()
        seen_key = (user, key or name)
        with self._lock:
            if path is not None:
                taken = self.user_root(user).parent.parent / "received" / f"{self._next_control():06d}-{name}"
                shutil.move(str(path), str(taken))
            if self._seen.get(seen_key) == digest or (key is not None and seen_key in self._seen):
                self.duplicates += 1
                self._lock.notify_all()
                return next((f for f in self._files if f.user == user and f.sha256 == digest), None), True
            self._seen[seen_key] = digest
            record = self._answer(user, name, content, channel, digest)
            self._files.append(record)
            self._lock.notify_all()
            return record, False

    def _answer(self, user: str, name: str, content: bytes, channel: Literal["sftp", "http"],
                digest: str) -> ReceivedClaimFile:
        controls, now = self._controls, self._now()
        stem = name.rsplit(".", 1)[0] if "." in name else name
        read = x12.read_837(content)
        written: list[str] = []
        if not read.readable:
            return ReceivedClaimFile(user, name, channel, digest, len(content), False, 0, 0, ())

        def writer(kind: str, version: str) -> x12.Writer:
            return x12.Writer(sender=read.receiver or "SANDBOXCH", receiver=read.sender or "SUBMITTER",
                              functional_id=kind, version=version, control=self._next_control(), now=now)

        if eligibility.is_270(content):  # an eligibility inquiry: answered with a 271 at once
            answer = eligibility.answer_270(content, writer("HB", eligibility.VERSION), visits_used=self.visits_used)
            self._write(user, f"{stem}.271", answer)
            return ReceivedClaimFile(user, name, channel, digest, len(content), True, 0, 0, (), (f"{stem}.271",))
        self._write(user, f"{stem}.999", x12.acknowledgment(read, writer("FA", "005010X231A1")))
        written.append(f"{stem}.999")
        accepted = [r for r in read.sets if r.accepted]
        paid: list[tuple[x12.ReadClaimFile, x12.Claim]] = []
        if accepted:
            status = writer("HN", "005010X214")
            for result in accepted:
                for claim, ok in x12.claim_status(result, read, status, rejected=self._rule(controls)):
                    if ok:
                        paid.append((read, claim))
            self._write(user, f"{stem}.277", status.text())
            written.append(f"{stem}.277")
        if paid:
            text = self._remittance(paid, controls, writer("HP", "005010X221A1"))
            if controls.remit == "manual":
                self._pending.append((user, f"{stem}.835", text))
            elif controls.remit_delay_seconds:
                timer = threading.Timer(controls.remit_delay_seconds, self._write_later, (user, f"{stem}.835", text))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
            else:
                self._write(user, f"{stem}.835", text)
                written.append(f"{stem}.835")
        return ReceivedClaimFile(user, name, channel, digest, len(content), True, len(accepted),
                                 len(read.sets) - len(accepted), tuple(c.control for _, c in paid), tuple(written))

    @staticmethod
    def _rule(controls: ClearinghouseControls) -> Any:
        def rejected(claim: x12.Claim) -> str | None:
            if controls.reject_prefix and claim.control.startswith(controls.reject_prefix):
                return "A3:21"
            if controls.known_payers is not None and claim.payer_id not in controls.known_payers:
                return "A3:116"
            return None
        return rejected

    def _remittance(self, paid: list[tuple[x12.ReadClaimFile, x12.Claim]], controls: ClearinghouseControls,
                    writer: x12.Writer) -> str:
        rules = x12.Adjudication(denied_codes=frozenset(controls.denied_codes))
        by_payer: dict[str, list[tuple[x12.ReadClaimFile, x12.Claim]]] = {}
        for item in paid:
            by_payer.setdefault(item[1].payer_id, []).append(item)
        for n, claims in enumerate(by_payer.values(), start=1):
            trace = f"{controls.payment_method[0]}{writer.control:06d}{n:03d}"
            x12.remittance(claims, writer, rules, method=controls.payment_method, trace=trace)
        return writer.text()

    def _write(self, user: str, name: str, text: str) -> None:
        folder = self.user_root(user) / "outbound"
        partial = folder / f".{name}.part"
        partial.write_text(text, encoding="latin-1")
        os.replace(partial, folder / name)  # never a half response under its real name

    def _write_later(self, user: str, name: str, text: str) -> None:
        with self._lock:
            if self.base_dir is not None and self.user_root(user).exists():
                self._write(user, name, text)
                self._lock.notify_all()

    def release_remittance(self) -> list[str]:
        """Write the 835s held back (``remit="manual"``); their names."""
        with self._lock:
            pending, self._pending = self._pending, []
            for user, name, text in pending:
                self._write(user, name, text)
            self._lock.notify_all()
        return [name for _, name, _ in pending]


SandboxClearinghouse.handler_class = ClearinghouseHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.clearinghouse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="HTTP API port (0: any free port)")
    parser.add_argument("--sftp-port", type=int, default=0, help="SFTP port (0: any free port)")
    parser.add_argument("--tls", action="store_true", help="HTTPS with a certificate made at start (CA in ca.pem)")
    parser.add_argument("--remit", choices=("immediate", "manual"), default="immediate")
    parser.add_argument("--payment-method", choices=("ACH", "CHK"), default="ACH")
    parser.add_argument("--known-payer", action="append", default=None, help="payer id accepted (repeatable)")
    args = parser.parse_args(argv)
    house = SandboxClearinghouse(args.port, sftp_port=args.sftp_port, tls=args.tls, remit=args.remit,
                                 payment_method=args.payment_method, known_payers=args.known_payer)
    return serve_until_signalled(
        house,
        banner=lambda: (f"http {house.url}\nsftp {HOST}:{house.sftp_port}\n"
                        f"host key {house.host_key_fingerprint}\ncredentials {house.credentials_path}"),
        farewell=lambda: f"received {len(house.claim_files)} claim file(s)",
    )


if __name__ == "__main__":
    sys.exit(main())
