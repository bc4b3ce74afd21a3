"""A message with several signers (SignerInfos): accepted when one of them is valid, trusted and
bound to the From address, whichever position it has; the others are reported, and a message whose
signers all fail is refused with the first one's reason."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from connectors.direct.smime import SmimeError, verify
from sandboxes.direct_ca import Issued, TestCA

from .conftest import CLINIC

ENTITY = b"Content-Type: text/plain\r\n\r\nSigned twice.\r\n"
OPENSSL = shutil.which("openssl")


def signed_by(*signers: Issued) -> bytes:
    builder = pkcs7.PKCS7SignatureBuilder().set_data(ENTITY)
    for signer in signers:
        builder = builder.add_signer(signer.certificate, signer.key, hashes.SHA256())
    return builder.sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])


def test_an_untrusted_first_signer_does_not_hide_a_trusted_second(ca: TestCA, other_ca: TestCA,
                                                                  clinic: Issued) -> None:
    stranger = other_ca.issue(CLINIC)
    verified = verify(signed_by(stranger, clinic), [ca.certificate], moment=datetime.now(UTC), from_address=CLINIC)
    assert verified.signer == clinic.certificate
    # the signers looked at before the accepted one are reported (DER sorts SignerInfos: maybe none)
    assert [(o.code, o.subject) for o in verified.others] in ([], [
        ("untrusted_signer", stranger.certificate.subject.rfc4514_string())])
    # DER sorts the SET OF SignerInfos: whichever order they were added in, the trusted one is found
    assert verify(signed_by(clinic, stranger), [ca.certificate], moment=datetime.now(UTC),
                  from_address=CLINIC).signer == clinic.certificate


def test_a_trusted_signer_bound_to_another_address_is_not_enough(ca: TestCA, other_ca: TestCA, clinic: Issued,
                                                                 physician: Issued) -> None:
    stranger = other_ca.issue(CLINIC)
    with pytest.raises(SmimeError) as refused:
        verify(signed_by(stranger, physician), [ca.certificate], moment=datetime.now(UTC), from_address=CLINIC)
    assert refused.value.code in ("untrusted_signer", "address_mismatch")  # the first signer's reason
    verified = verify(signed_by(physician, clinic), [ca.certificate], moment=datetime.now(UTC), from_address=CLINIC)
    assert verified.signer == clinic.certificate and [o.code for o in verified.others] in ([], ["address_mismatch"])


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
def test_a_message_signed_twice_by_openssl(tmp_path: Path, ca: TestCA, other_ca: TestCA, clinic: Issued) -> None:
    stranger = other_ca.issue(CLINIC)
    files = {"content.eml": ENTITY, "stranger.pem": stranger.cert_pem.encode(),
             "stranger.key": stranger.key_pem.encode(), "clinic.pem": clinic.cert_pem.encode(),
             "clinic.key": clinic.key_pem.encode()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert OPENSSL is not None
    subprocess.run([OPENSSL, "cms", "-sign", "-md", "sha256", "-in", str(tmp_path / "content.eml"),
                    "-signer", str(tmp_path / "stranger.pem"), "-inkey", str(tmp_path / "stranger.key"),
                    "-signer", str(tmp_path / "clinic.pem"), "-inkey", str(tmp_path / "clinic.key"),
                    "-out", str(tmp_path / "signed.eml")], check=True, capture_output=True, timeout=30)
    verified = verify((tmp_path / "signed.eml").read_bytes(), [ca.certificate], moment=datetime.now(UTC),
                      from_address=CLINIC)
    assert verified.signer == clinic.certificate and [o.code for o in verified.others] in ([], ["untrusted_signer"])
    with pytest.raises(SmimeError) as refused:
        verify((tmp_path / "signed.eml").read_bytes(), [other_ca.certificate, ca.certificate],
               moment=datetime.now(UTC), from_address="someone@else.test")
    assert refused.value.code == "address_mismatch"


def test_with_two_signers_one_is_always_found_and_the_other_reported_when_looked_at(
        ca: TestCA, other_ca: TestCA, clinic: Issued) -> None:
    strangers = [other_ca.issue(CLINIC) for _ in range(3)]  # three untrusted, whichever DER order
    verified = verify(signed_by(*strangers, clinic), [ca.certificate], moment=datetime.now(UTC),
                      from_address=CLINIC)
    assert verified.signer == clinic.certificate
    assert all(o.code == "untrusted_signer" for o in verified.others) and len(verified.others) <= 3
    with pytest.raises(SmimeError) as refused:
        verify(signed_by(*strangers), [ca.certificate], moment=datetime.now(UTC), from_address=CLINIC)
    assert refused.value.code == "untrusted_signer"
