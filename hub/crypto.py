"""Encryption at rest for payloads (PHI) and connector secrets: Fernet (AES-128-CBC + HMAC-SHA256).

The key is derived from ``HUB_SECRET_KEY``. ``HUB_SECRET_KEY_PREVIOUS`` (comma-separated) lets
old tokens be read during a key rotation.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr


class Keys(Protocol):
    """What the cipher needs of :class:`hub.settings.Settings` (the kit's modules do not import each other)."""

    @property
    def secret_key(self) -> SecretStr: ...

    @property
    def previous_keys(self) -> tuple[str, ...]: ...


def _fernet(secret: str) -> Fernet:
    digest = hashlib.sha256(b"therapy-hub/at-rest/v1\x00" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


@cache
def cipher(secret: str, previous: tuple[str, ...] = ()) -> MultiFernet:
    return MultiFernet([_fernet(secret), *(_fernet(p) for p in previous)])


def cipher_for(settings: Keys) -> MultiFernet:
    """The payload cipher of these settings: their secret key, then the previous ones (to read old tokens)."""
    return cipher(settings.secret_key.get_secret_value(), settings.previous_keys)


def encrypt(box: MultiFernet, data: str | bytes | None) -> str | None:
    if data is None:
        return None
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return box.encrypt(raw).decode("ascii")


def decrypt(box: MultiFernet, token: str | None) -> bytes | None:
    if token is None:
        return None
    try:
        return box.decrypt(token.encode("ascii"))
    except InvalidToken:
        raise ValueError("payload cannot be decrypted with the configured HUB_SECRET_KEY") from None
