"""Interop with OpenSSL's CMS tool: what it signs and encrypts we open, what we sign it verifies."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.direct.smime import decrypt, sign, verify
from sandboxes.direct_ca import Issued, TestCA

from .conftest import CLINIC

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")

ENTITY = b"Content-Type: text/plain\r\n\r\nSigned by another system.\r\n"


def _openssl(*args: str | Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=30)


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_openssl_signed_and_encrypted_message_opens(tmp_path: Path, ca: TestCA, clinic: Issued,
                                                    physician: Issued) -> None:
    content = _write(tmp_path, "content.eml", ENTITY)
    _write(tmp_path, "clinic.pem", clinic.cert_pem)
    _write(tmp_path, "clinic.key", clinic.key_pem)
    _write(tmp_path, "physician.pem", physician.cert_pem)
    _openssl("cms", "-sign", "-md", "sha256", "-in", content, "-signer", tmp_path / "clinic.pem",
             "-inkey", tmp_path / "clinic.key", "-out", tmp_path / "signed.eml")
    _openssl("cms", "-encrypt", "-aes256", "-in", tmp_path / "signed.eml", "-out", tmp_path / "wire.eml",
             tmp_path / "physician.pem")
    signed = decrypt((tmp_path / "wire.eml").read_bytes(), physician.certificate, physician.key)
    verified = verify(signed, [ca.certificate], moment=datetime.now(UTC), from_address=CLINIC)
    assert verified.content.endswith(b"Signed by another system.\r\n")
    assert verified.signer == clinic.certificate


def test_our_signature_verifies_with_openssl(tmp_path: Path, ca: TestCA, clinic: Issued) -> None:
    signed = _write(tmp_path, "ours.eml", sign(ENTITY, clinic.certificate, clinic.key, boundary="ours"))
    _write(tmp_path, "ca.pem", ca.cert_pem)
    _openssl("cms", "-verify", "-CAfile", tmp_path / "ca.pem", "-in", signed, "-out", tmp_path / "out.eml")
    assert (tmp_path / "out.eml").read_bytes().replace(b"\r\n", b"\n") == ENTITY.replace(b"\r\n", b"\n")
