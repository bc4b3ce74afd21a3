"""The SFTP side of the sandbox clearinghouse: an asyncssh server on 127.0.0.1 in its own loop thread.

Each user is confined to its own directory (``inbound``, ``outbound``, ``archive``). A file that
becomes complete under ``/inbound`` - renamed there, or closed after writing under a name that is not
hidden (``.``) or partial (``.part``) - is handed to the clearinghouse
(:meth:`SandboxClearinghouse.receive`), which takes it away from ``/inbound`` and answers in ``/outbound``.

Faults (the clearinghouse's controls): ``refuse_auth`` refuses every login; ``drop_after_bytes``
aborts the connection when an upload passes that many bytes (what was written stays as the partial
file); ``slow_seconds`` delays every open, read and listing.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

if TYPE_CHECKING:
    from sandboxes.clearinghouse import SandboxClearinghouse

__all__ = ["SftpServerThread"]


class _Ssh(asyncssh.SSHServer):
    def __init__(self, house: SandboxClearinghouse) -> None:
        self.house = house

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return self.house.check_password(username, password)

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return self.house.check_public_key(username, key.export_public_key("openssh").decode().split()[1])


class _Sftp(asyncssh.SFTPServer):
    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], house: SandboxClearinghouse) -> None:
        self.house = house
        self.user = str(chan.get_extra_info("username"))
        self.root = house.user_root(self.user)
        super().__init__(chan, chroot=str(self.root).encode())
        self._writing: dict[int, tuple[bytes, int]] = {}

    async def _slow(self) -> None:
        seconds = self.house.controls.slow_seconds
        if seconds:
            await asyncio.sleep(seconds)

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        await self._slow()
        file_obj = super().open(path, pflags, attrs)
        if pflags & asyncssh.FXF_WRITE:
            self._writing[id(file_obj)] = (path, 0)
        return file_obj

    def write(self, file_obj: object, offset: int, data: bytes) -> Any:
        limit = self.house.controls.drop_after_bytes
        path, written = self._writing.get(id(file_obj), (b"", 0))
        if limit is not None and offset + len(data) > limit:
            keep = max(0, limit - offset)
            if keep:
                super().write(file_obj, offset, data[:keep])
            self.channel.get_connection().abort()  # the line goes dead mid-upload
            raise asyncssh.SFTPConnectionLost("connection dropped")
        self._writing[id(file_obj)] = (path, written + len(data))
        return super().write(file_obj, offset, data)

    def close(self, file_obj: object) -> Any:
        result = super().close(file_obj)
        entry = self._writing.pop(id(file_obj), None)
        if entry is not None:
            self._arrived(entry[0])
        return result

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        await self._slow()
        async for entry in super().scandir(path):
            yield entry

    def rename(self, oldpath: bytes, newpath: bytes) -> Any:
        result = super().rename(oldpath, newpath)
        self._arrived(newpath)
        return result

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> Any:
        result = super().posix_rename(oldpath, newpath)
        self._arrived(newpath)
        return result

    def _arrived(self, client_path: bytes) -> None:
        local = Path(os.fsdecode(self.map_path(client_path)))
        hidden = local.name.startswith(".") or local.name.endswith(".part")  # an upload in progress
        if not hidden and local.parent == self.root / "inbound" and local.is_file():
            self.house.receive(self.user, local.name, local.read_bytes(), channel="sftp", path=local)


class SftpServerThread:
    """The SSH/SFTP listener and the event loop it runs on."""

    def __init__(self, house: SandboxClearinghouse, host_key: asyncssh.SSHKey, host: str, port: int) -> None:
        self.house, self.host_key, self.host, self.port = house, host_key, host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox-sftp", daemon=True)
        self._server: asyncssh.SSHAcceptor | None = None

    def start(self) -> int:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._server = future.result(10)
        self.port = self._server.get_port()
        return self.port

    async def _listen(self) -> asyncssh.SSHAcceptor:
        house = self.house
        return await asyncssh.listen(
            self.host, self.port, server_host_keys=[self.host_key], server_factory=lambda: _Ssh(house),
            sftp_factory=lambda chan: _Sftp(chan, house), allow_scp=False, login_timeout=10,
            keepalive_interval=0, agent_forwarding=False, x11_forwarding=False, allow_pty=False)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            async def close() -> None:
                server.close()
                await server.wait_closed()

            try:
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
            except Exception:  # noqa: BLE001 - stopping: nothing more to do
                pass
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()
