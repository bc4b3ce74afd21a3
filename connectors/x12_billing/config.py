"""The typed configuration of the clearinghouse connector: one transport, SFTP or HTTPS.

``transport`` picks the section that must be present (``sftp`` or ``https``); the other stays empty.
Every secret is a ``SecretStr``; the SFTP host key is pinned (``known_host_key``: a ``SHA256:``
fingerprint as ``ssh-keygen -lf`` prints it, or the server's OpenSSH public key line, with or
without a leading known_hosts host pattern): a server presenting any other key is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from connectors.base import ConnectorConfig
from connectors.x12_billing.profile import BillingProfile

__all__ = ["BillingProfile", "HttpsSettings", "SftpSettings", "X12BillingConfig", "host_key_fingerprint"]

_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}=?")
_KEY_TYPE = re.compile(r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+)")
_REMOTE_DIR = re.compile(r"/?[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?|/")


def host_key_fingerprint(value: str) -> str:
    """The ``SHA256:`` fingerprint of a pinned host key (a fingerprint, or an OpenSSH key line).

    Raises ``ValueError`` (without quoting the value) when it is neither."""
    text = value.strip()
    if _FINGERPRINT.fullmatch(text):
        return text.rstrip("=")
    words = text.split()
    while words and not _KEY_TYPE.fullmatch(words[0]):
        words = words[1:]  # a known_hosts line starts with host patterns (and maybe a marker)
    if len(words) < 2:
        raise ValueError("not a SHA256 fingerprint or an OpenSSH public key line")
    try:
        blob = base64.b64decode(words[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the public key is not valid base64") from None
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _remote_dir(value: str) -> str:
    if not _REMOTE_DIR.fullmatch(value) or ".." in value.split("/"):
        raise PydanticCustomError("remote_dir", "a directory path of letters, digits, '.', '_', '-' and '/'")
    return value.rstrip("/") or "/"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SftpSettings(_Section):
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: int = Field(default=22, ge=1, le=65535)
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: SecretStr | None = None
    #: an OpenSSH or PEM private key (unencrypted, or with ``private_key_passphrase``)
    private_key: SecretStr | None = None
    private_key_passphrase: SecretStr | None = None
    #: required: the server's key is pinned, an unknown key is refused (fingerprint or key line)
    known_host_key: Annotated[str, Field(min_length=8, max_length=16384)]
    upload_dir: str = "/inbound"
    download_dir: str = "/outbound"
    #: what to do with a response file once the hub stored it: delete it, or move it to ``archive_dir``
    after_download: Literal["delete", "archive"] = "delete"
    archive_dir: str = "/archive"

    @field_validator("known_host_key")
    @classmethod
    def _host_key(cls, value: str) -> str:
        try:
            host_key_fingerprint(value)
        except ValueError as exc:
            raise PydanticCustomError("host_key", str(exc)) from None
        return value.strip()

    @field_validator("upload_dir", "download_dir", "archive_dir")
    @classmethod
    def _dirs(cls, value: str) -> str:
        return _remote_dir(value)

    @model_validator(mode="after")
    def _credentials(self) -> SftpSettings:
        if self.password is None and self.private_key is None:
            raise PydanticCustomError("credentials_required", "a password or a private key is required")
        return self

    @property
    def fingerprint(self) -> str:
        return host_key_fingerprint(self.known_host_key)


class HttpsSettings(_Section):
    base_url: AnyHttpUrl
    #: ``Authorization: Bearer``; or HTTP Basic with ``username`` and ``password``
    bearer_token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    verify_tls: bool = True
    #: a PEM file of the CA(s) that signed the clearinghouse's certificate; None: the usual trust store
    ca_bundle_path: str | None = None
    claims_path: str = "/claims"
    responses_path: str = "/responses"

    @model_validator(mode="after")
    def _auth(self) -> HttpsSettings:
        if self.bearer_token is None and (self.username is None or self.password is None):
            raise PydanticCustomError("credentials_required", "a bearer_token, or a username and password, is required")
        return self


class X12BillingConfig(ConnectorConfig):
    transport: Literal["sftp", "https"]
    sftp: SftpSettings | None = None
    https: HttpsSettings | None = None
    #: seconds for one operation (a read, a write, an HTTP request); connecting has its own bound
    timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    connect_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    #: response files larger than this are refused (a sane bound for one 835)
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: what the hub bills through this clearinghouse (:mod:`connectors.x12_billing.profile`); None: no claims
    billing: BillingProfile | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> X12BillingConfig:
        if self.transport == "sftp" and self.sftp is None:
            raise PydanticCustomError("sftp_section_required", "transport sftp needs the sftp section")
        if self.transport == "https" and self.https is None:
            raise PydanticCustomError("https_section_required", "transport https needs the https section")
        return self
