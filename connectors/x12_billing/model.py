"""What the clearinghouse transports exchange: receipts of submitted files, response files, names.

* :class:`SubmitReceipt` - a claim file the clearinghouse accepted (its remote name, size, digest);
* :class:`RemoteFile` - one response file (999, 277CA, 835) waiting at the clearinghouse;
* :func:`remote_name` - the file name a submission gets on the clearinghouse: derived from the
  caller's name and the idempotency key, so a retry of the same submission writes the same name
  (and overwrites a file that may have been half-written) instead of adding a second claim file;
* :class:`ClaimTransport` - the narrow protocol both transports (SFTP, HTTPS) implement.

File content never appears in ``repr``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["ClaimTransport", "RemoteFile", "SubmitReceipt", "TEMP_PREFIX", "remote_name", "is_temporary"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: uploads are written under a name starting with this and renamed when complete: a clearinghouse
#: (and the project's sandbox) ignores names that start with a dot
TEMP_PREFIX = "."
_TEMP_SUFFIX = ".part"


def remote_name(filename: str, idempotency_key: str) -> str:
    """``<stem>-<20 hex of sha256(key)><suffix>``: safe characters only, at most 100 characters."""
    if not idempotency_key:
        raise ValueError("an idempotency key is required")
    base = filename.rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, "x12"
    stem = _SAFE.sub("_", stem).strip("._-")[:60] or "claims"
    suffix = _SAFE.sub("", suffix)[:10] or "x12"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]
    return f"{stem}-{digest}.{suffix}"


def temporary_name(name: str) -> str:
    return f"{TEMP_PREFIX}{name}{_TEMP_SUFFIX}"


def is_temporary(name: str) -> bool:
    """A name that is not (yet) a complete file: hidden, or an upload in progress."""
    return name.startswith(TEMP_PREFIX) or name.endswith(_TEMP_SUFFIX)


@dataclass(frozen=True)
class SubmitReceipt:
    """The clearinghouse took a claim file. ``remote_id``: its id for the file when it gives one."""

    transport: Literal["sftp", "https"]
    remote_name: str
    size: int
    sha256: str
    duration_ms: float
    status: int | None = None  # the HTTP status (HTTPS); None over SFTP
    remote_id: str | None = None
    duplicate: bool = False  # the clearinghouse said it had this submission already (HTTPS)


@dataclass(frozen=True)
class RemoteFile:
    """One response file at the clearinghouse, with its content (read whole)."""

    name: str
    size: int
    content: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class ClaimTransport(Protocol):
    def submit(self, filename: str, content: bytes, idempotency_key: str) -> SubmitReceipt:
        """Upload a claim file atomically under :func:`remote_name`. Raises ConnectorError."""
        ...

    def poll_responses(self) -> list[RemoteFile]:
        """Every response file waiting, oldest name first. Raises ConnectorError."""
        ...

    def acknowledge(self, remote_file: RemoteFile) -> None:
        """The hub stored ``remote_file``: delete or archive it (already gone: fine). Raises ConnectorError."""
        ...

    def probe(self) -> str:
        """A cheap call that needs working credentials; a short detail. Raises ConnectorError."""
        ...

    def close(self) -> None: ...
