"""Sign, encrypt, decrypt and verify round trips, and every refusal the verifier makes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.direct.smime import SmimeError, decrypt, encrypt, sign, verify
from sandboxes.direct_ca import Issued, TestCA

from .conftest import CLINIC

ENTITY = b"Content-Type: text/plain; charset=utf-8\r\n\r\nThe plan of care is attached.\r\n"


def _now() -> datetime:
    return datetime.now(UTC)


def test_sign_encrypt_decrypt_verify_round_trip(ca: TestCA, clinic: Issued, physician: Issued) -> None:
    wire = encrypt(sign(ENTITY, clinic.certificate, clinic.key, boundary="b1"), [physician.certificate])
    assert b"smime-type=enveloped-data" in wire and b"The plan" not in wire
    signed = decrypt(wire, physician.certificate, physician.key)
    verified = verify(signed, [ca.certificate], moment=_now(), from_address=CLINIC.upper())
    assert verified.content == ENTITY
    assert verified.signer == clinic.certificate


def test_aes128_round_trip(ca: TestCA, clinic: Issued, physician: Issued) -> None:
    wire = encrypt(sign(ENTITY, clinic.certificate, clinic.key, boundary="b2"), [physician.certificate],
                   aes256=False)
    signed = decrypt(wire, physician.certificate, physician.key)
    assert verify(signed, [ca.certificate], moment=_now(), from_address=CLINIC).content == ENTITY


def test_lf_line_endings_still_verify(ca: TestCA, clinic: Issued) -> None:
    signed = sign(ENTITY, clinic.certificate, clinic.key, boundary="b3").replace(b"\r\n", b"\n")
    assert verify(signed, [ca.certificate], moment=_now(), from_address=CLINIC).content == ENTITY


def _refusal(signed: bytes, roots: list, *, moment: datetime | None = None,
             from_address: str | None = CLINIC) -> str:
    with pytest.raises(SmimeError) as caught:
        verify(signed, roots, moment=moment or _now(), from_address=from_address)
    assert "plan of care" not in str(caught.value)
    return caught.value.code


def test_tampered_content_is_refused(ca: TestCA, clinic: Issued) -> None:
    signed = sign(ENTITY, clinic.certificate, clinic.key, boundary="b4")
    assert _refusal(signed.replace(b"plan of care", b"plan of cure"), [ca.certificate]) == "tampered"


def test_signer_from_another_ca_is_untrusted(ca: TestCA, other_ca: TestCA) -> None:
    stranger = other_ca.issue(CLINIC)
    signed = sign(ENTITY, stranger.certificate, stranger.key, boundary="b5")
    assert _refusal(signed, [ca.certificate]) == "untrusted_signer"


def test_expired_certificate_is_refused(ca: TestCA) -> None:
    old = ca.issue(CLINIC, expired=True)
    signed = sign(ENTITY, old.certificate, old.key, boundary="b6")
    assert _refusal(signed, [ca.certificate]) == "expired_certificate"


def test_unsigned_message_is_refused(ca: TestCA) -> None:
    assert _refusal(ENTITY, [ca.certificate]) == "unsigned"


def test_signer_not_bound_to_from_address(ca: TestCA, clinic: Issued) -> None:
    signed = sign(ENTITY, clinic.certificate, clinic.key, boundary="b7")
    assert _refusal(signed, [ca.certificate], from_address="mallory@direct.clinic.test") == "address_mismatch"


def test_message_for_another_recipient_is_undecryptable(clinic: Issued, physician: Issued, ca: TestCA) -> None:
    wire = encrypt(sign(ENTITY, clinic.certificate, clinic.key, boundary="b8"), [physician.certificate])
    someone = ca.issue("someone@direct.else.test")
    with pytest.raises(SmimeError) as caught:
        decrypt(wire, someone.certificate, someone.key)
    assert caught.value.code == "undecryptable"
    with pytest.raises(SmimeError) as caught:
        decrypt(ENTITY, physician.certificate, physician.key)
    assert caught.value.code == "undecryptable"

