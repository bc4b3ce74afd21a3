"""Revocation from locally supplied CRLs (nothing is fetched): a signer whose issuer's current CRL
lists it is refused ``revoked_certificate``; one the CRL does not list is accepted; a CRL that does
not verify leaves the status unknown (refused); a lapsed CRL still revokes what it lists but no
longer vouches for the rest; an issuer without a CRL is checked soft-fail, as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from connectors.direct.smime import SmimeError, verify
from sandboxes.direct_ca import Issued, TestCA

from .conftest import CLINIC

ENTITY = b"Content-Type: text/plain\r\n\r\nSigned.\r\n"


def signed(signer: Issued) -> bytes:
    return (pkcs7.PKCS7SignatureBuilder().set_data(ENTITY)
            .add_signer(signer.certificate, signer.key, hashes.SHA256())
            .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature]))


def code_of(ca: TestCA, signer: Issued, **kwargs: object) -> str | None:
    try:
        verify(signed(signer), [ca.certificate], moment=datetime.now(UTC), from_address=CLINIC, **kwargs)  # type: ignore[arg-type]
    except SmimeError as exc:
        return exc.code
    return None


@pytest.fixture(scope="module")
def revoking_ca() -> TestCA:
    return TestCA("Revoking CA")


def test_a_signer_on_its_issuers_crl_is_refused_and_one_not_on_it_accepted(revoking_ca: TestCA) -> None:
    revoked, kept = revoking_ca.issue(CLINIC), revoking_ca.issue(CLINIC)
    crl = revoking_ca.crl(revoked.certificate)
    assert code_of(revoking_ca, revoked) is None  # without the CRL nothing says so (soft-fail, nothing fetched)
    assert code_of(revoking_ca, revoked, crls=[crl]) == "revoked_certificate"
    assert code_of(revoking_ca, kept, crls=[crl]) is None
    # another CA's CRL says nothing about this issuer's certificates
    assert code_of(revoking_ca, revoked, crls=[TestCA("Another").crl()]) is None


def test_a_crl_that_does_not_verify_leaves_the_status_unknown(revoking_ca: TestCA) -> None:
    signer = revoking_ca.issue(CLINIC)
    impostor = TestCA("Revoking CA")  # the same name, another key: its CRL is not the issuer's
    with pytest.raises(SmimeError) as refused:
        verify(signed(signer), [revoking_ca.certificate], moment=datetime.now(UTC), from_address=CLINIC,
               crls=[impostor.crl()])
    assert refused.value.code == "untrusted_signer" and "revocation status" in refused.value.message


def test_a_lapsed_crl_still_revokes_what_it_lists(revoking_ca: TestCA) -> None:
    revoked, kept = revoking_ca.issue(CLINIC), revoking_ca.issue(CLINIC)
    past = datetime.now(UTC) - timedelta(days=10)
    lapsed = revoking_ca.crl(revoked.certificate, this_update=past, next_update=past + timedelta(days=1))
    assert code_of(revoking_ca, revoked, crls=[lapsed]) == "revoked_certificate"
    assert code_of(revoking_ca, kept, crls=[lapsed]) is None
    # a lapsed CRL forged under the issuer's name revokes nothing
    forged = TestCA("Revoking CA").crl(kept.certificate, this_update=past, next_update=past + timedelta(days=1))
    assert code_of(revoking_ca, kept, crls=[forged]) is None
