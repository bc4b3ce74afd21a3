"""The SFTP transport (asyncssh, driven from a private event loop thread behind a sync facade).

One SSH connection per operation: nothing stays open between polls, so a clearinghouse that drops
idle sessions costs nothing. The server's host key must match the pinned one
(:attr:`SftpSettings.fingerprint`); the user's ``~/.ssh`` (config, keys, agent, known_hosts) is
never read.

Submit: write ``<upload_dir>/.<name>.part``, then rename it to ``<upload_dir>/<name>`` (POSIX rename,
replacing a file left by an earlier attempt; without that extension: remove, then rename). The
clearinghouse never sees a half file under a real name. Poll: list ``download_dir`` (plain files,
no hidden or partial ones), read each whole. Acknowledge: delete, or move to ``archive_dir``; a file
already gone is acknowledged.

Errors: authentication refused -> ``AuthError``; a host key that is not the pinned one -> ``ConfigError``;
refused, reset or lost connections, timeouts, SFTP "failure" -> ``TransientError``; a missing
directory or no permission -> ``ConfigError``; other SFTP refusals -> ``PermanentError``. Messages name
the host, the port and the operation, never file names' content, credentials or server text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

import asyncssh

from connectors.base import AuthError, ConfigError, ConnectorError, PermanentError, TransientError
from connectors.httputil import ms_since
from connectors.x12_billing.config import SftpSettings
from connectors.x12_billing.model import RemoteFile, SubmitReceipt, is_temporary, remote_name, temporary_name

__all__ = ["SftpTransport"]

T = TypeVar("T")


class _LoopThread:
    """An asyncio loop in a daemon thread; ``run`` submits a coroutine and waits for it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="x12-sftp", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None

    def close(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()


class _PinnedClient(asyncssh.SSHClient):
    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return bool(key.get_fingerprint("sha256") == self._fingerprint)


class SftpTransport:
    def __init__(self, settings: SftpSettings, *, timeout: float, connect_timeout: float, max_bytes: int) -> None:
        self.settings = settings
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_bytes = max_bytes
        self._fingerprint = settings.fingerprint
        self._loop = _LoopThread()
        self._client_keys: list[asyncssh.SSHKey] | None = None
        if settings.private_key is not None:
            passphrase = settings.private_key_passphrase.get_secret_value() if settings.private_key_passphrase else None
            try:
                self._client_keys = [asyncssh.import_private_key(settings.private_key.get_secret_value(), passphrase)]
            except (asyncssh.KeyImportError, ValueError, TypeError):
                raise ConfigError("invalid x12_billing config: sftp.private_key is not a usable private key",
                                  fields=["sftp.private_key"]) from None
        self.what = f"x12_billing SFTP {settings.host}:{settings.port}"

    # ------------------------------------------------------------------------- plumbing

    def _run(self, operation: str, work: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> tuple[T, float]:
        started = time.perf_counter()
        budget = self._connect_timeout + self._timeout

        async def session() -> T:
            async with self._connect() as connection, connection.start_sftp_client() as sftp:
                return await asyncio.wait_for(work(sftp), self._timeout)

        try:
            return self._loop.run(session(), budget), ms_since(started)
        except ConnectorError:
            raise
        except Exception as exc:  # asyncssh, socket, timeouts: translated, never chained
            raise self._translate(exc, operation, ms_since(started)) from None

    def _connect(self) -> Any:
        s = self.settings
        return asyncssh.connect(
            s.host, s.port, username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            client_keys=self._client_keys, known_hosts=([], [], []),
            client_factory=lambda: _PinnedClient(self._fingerprint),
            agent_path=None, config=None, connect_timeout=self._connect_timeout,
            login_timeout=self._connect_timeout, keepalive_interval=0, preferred_auth=_auth_order(s),
        )

    def _translate(self, exc: BaseException, operation: str, duration_ms: float) -> ConnectorError:
        what = f"{self.what} {operation}"
        if isinstance(exc, asyncssh.PermissionDenied):
            return AuthError(f"{what}: authentication refused", duration_ms=duration_ms)
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return ConfigError(f"{what}: the server's host key is not the pinned one (sftp.known_host_key)",
                               fields=["sftp.known_host_key"], duration_ms=duration_ms)
        if isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
            return ConfigError(f"{what}: no such file or directory (check sftp.upload_dir/download_dir)",
                               fields=["sftp.upload_dir", "sftp.download_dir"], duration_ms=duration_ms)
        if isinstance(exc, asyncssh.SFTPPermissionDenied):
            return ConfigError(f"{what}: permission denied by the server", duration_ms=duration_ms)
        if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection | asyncssh.SFTPFailure):
            return TransientError(f"{what}: {type(exc).__name__}", duration_ms=duration_ms)
        if isinstance(exc, asyncssh.SFTPError):
            return PermanentError(f"{what}: refused by the server (SFTP code {exc.code})", duration_ms=duration_ms)
        if isinstance(exc, asyncssh.DisconnectError):
            # lost connection, protocol errors, "too many connections" ...: worth another try
            return TransientError(f"{what}: disconnected ({type(exc).__name__})", duration_ms=duration_ms)
        if isinstance(exc, TimeoutError | asyncio.TimeoutError | socket.timeout):
            return TransientError(f"{what}: timed out", duration_ms=duration_ms)
        if isinstance(exc, socket.gaierror):
            return TransientError(f"{what}: the host name does not resolve", duration_ms=duration_ms)
        if isinstance(exc, OSError):
            return TransientError(f"{what}: {type(exc).__name__}", duration_ms=duration_ms)
        return TransientError(f"{what}: unexpected {type(exc).__name__}", duration_ms=duration_ms)

    # ------------------------------------------------------------------------ operations

    def submit(self, filename: str, content: bytes, idempotency_key: str) -> SubmitReceipt:
        name = remote_name(filename, idempotency_key)
        folder = self.settings.upload_dir
        final, partial = _join(folder, name), _join(folder, temporary_name(name))

        async def upload(sftp: asyncssh.SFTPClient) -> None:
            async with sftp.open(partial, "wb") as handle:
                await handle.write(content)
            try:
                await sftp.posix_rename(partial, final)
            except asyncssh.SFTPOpUnsupported:
                try:
                    await sftp.remove(final)
                except asyncssh.SFTPNoSuchFile:
                    pass
                await sftp.rename(partial, final)

        _, duration_ms = self._run("upload", upload)
        return SubmitReceipt(transport="sftp", remote_name=name, size=len(content),
                             sha256=hashlib.sha256(content).hexdigest(), duration_ms=duration_ms)

    def poll_responses(self) -> list[RemoteFile]:
        folder = self.settings.download_dir
        limit = self._max_bytes

        async def fetch(sftp: asyncssh.SFTPClient) -> list[RemoteFile]:
            found: list[RemoteFile] = []
            for entry in sorted(await sftp.readdir(folder), key=lambda e: str(e.filename)):
                name = str(entry.filename)
                if is_temporary(name) or entry.attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
                    continue
                if entry.attrs.size is not None and entry.attrs.size > limit:
                    raise PermanentError(f"{self.what} poll: a response file is larger than max_response_bytes")
                try:
                    async with sftp.open(_join(folder, name), "rb") as handle:
                        data = cast(bytes, await handle.read(limit + 1))
                except asyncssh.SFTPNoSuchFile:
                    continue  # taken away since the listing (another poller acknowledged it)
                if len(data) > limit:
                    raise PermanentError(f"{self.what} poll: a response file is larger than max_response_bytes")
                found.append(RemoteFile(name=name, size=len(data), content=data))
            return found

        files, _ = self._run("poll", fetch)
        return files

    def acknowledge(self, remote_file: RemoteFile) -> None:
        source = _join(self.settings.download_dir, remote_file.name)
        archive = _join(self.settings.archive_dir, remote_file.name)
        move = self.settings.after_download == "archive"

        async def done(sftp: asyncssh.SFTPClient) -> None:
            try:
                if move:
                    try:
                        await sftp.posix_rename(source, archive)
                    except asyncssh.SFTPOpUnsupported:
                        await sftp.rename(source, archive)
                else:
                    await sftp.remove(source)
            except asyncssh.SFTPNoSuchFile:
                pass  # acknowledged before (a retry after a lost answer)

        self._run("acknowledge", done)

    def probe(self) -> str:
        async def check(sftp: asyncssh.SFTPClient) -> None:
            await sftp.stat(self.settings.upload_dir)
            await sftp.stat(self.settings.download_dir)

        _, duration_ms = self._run("probe", check)
        return f"{self.what} -> upload and download directories reachable"

    def close(self) -> None:
        self._loop.close()


def _join(folder: str, name: str) -> str:
    if "/" in name or name in (".", ".."):
        raise PermanentError("x12_billing SFTP: a remote file name may not contain '/'")
    return f"{folder.rstrip('/')}/{name}"


def _auth_order(settings: SftpSettings) -> list[str]:
    order = []
    if settings.private_key is not None:
        order.append("publickey")
    if settings.password is not None:
        order += ["password", "keyboard-interactive"]
    return order
