"""The HEP vendor's webhook signatures: ``t=..,v1=..`` HMAC-SHA256 over ``f"{t}." + body``, 300 s window."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

import pytest

from connectors.hep import HepConnector
from connectors.hep.signature import (
    BadSignature,
    MalformedSignature,
    StaleSignature,
    signature_header,
    verify_webhook,
)

NOW = 1_780_000_000
BODY = json.dumps({"id": "evt_1", "type": "session.completed", "data": {}}).encode()


@pytest.fixture
def secret() -> str:
    return secrets.token_hex(16)


def headers(secret: str, body: bytes = BODY, t: int = NOW, **extra: str) -> dict[str, str]:
    return {"x-hep-signature": signature_header(secret, t, body), "X-HEP-Event-Id": "evt_1", **extra}


def test_good_signature_gives_the_signed_event_id(secret: str) -> None:
    expected = hmac.new(secret.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature_header(secret, NOW, BODY) == f"t={NOW},v1={expected}"
    assert verify_webhook(secret, headers(secret), BODY, now=NOW + 299) == "evt_1"
    # secret rotation: any one matching v1 value is enough
    rotated = {"X-HEP-Signature": f"t={NOW},v1={'0' * 64},v1={expected}"}
    assert verify_webhook(secret, rotated, BODY, now=NOW) == "evt_1"


@pytest.mark.parametrize("body", [BODY.replace(b"evt_1", b"evt_2"), BODY + b" ", b""])
def test_tampered_body_is_a_bad_signature(secret: str, body: bytes) -> None:
    with pytest.raises(BadSignature, match="does not match"):
        verify_webhook(secret, headers(secret), body, now=NOW)


def test_wrong_secret_or_shifted_timestamp_is_a_bad_signature(secret: str) -> None:
    with pytest.raises(BadSignature):
        verify_webhook(secret, headers(secrets.token_hex(16)), BODY, now=NOW)
    forged = headers(secret)["x-hep-signature"].replace(f"t={NOW}", f"t={NOW + 100}")
    with pytest.raises(BadSignature):
        verify_webhook(secret, {"X-HEP-Signature": forged}, BODY, now=NOW)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_stale_or_future_timestamp_is_refused(secret: str, offset: int) -> None:
    with pytest.raises(StaleSignature, match="at most 300 s") as caught:
        verify_webhook(secret, headers(secret), BODY, now=NOW + offset)
    assert caught.value.reason == "stale"


@pytest.mark.parametrize("value", [None, "", "v1=abc", f"t={NOW}", f"t=soon,v1={'a' * 64}", f"t={NOW},v1=xyz",
                                   f"t={NOW},t={NOW},v1={'a' * 64}", "garbage"])
def test_malformed_header_is_refused(secret: str, value: str | None) -> None:
    given = {} if value is None else {"X-HEP-Signature": value}
    with pytest.raises(MalformedSignature) as caught:
        verify_webhook(secret, given, BODY, now=NOW)
    assert caught.value.reason == "malformed"


def test_event_id_must_be_signed_and_agree_with_the_header(secret: str) -> None:
    with pytest.raises(MalformedSignature, match="X-HEP-Event-Id"):
        verify_webhook(secret, headers(secret, **{"X-HEP-Event-Id": "evt_other"}), BODY, now=NOW)
    no_id = b'{"type": "session.completed"}'
    with pytest.raises(MalformedSignature, match="body.id"):
        verify_webhook(secret, headers(secret, no_id), no_id, now=NOW)
    with pytest.raises(MalformedSignature, match="not JSON"):
        verify_webhook(secret, headers(secret, b"[1"), b"[1", now=NOW)


def test_the_connector_verifies_with_its_configured_secret(secret: str) -> None:
    with HepConnector({"base_url": "http://127.0.0.1:9", "api_key": "k" * 12, "webhook_secret": secret}) as hep:
        assert hep.verify_webhook(headers(secret), BODY, now=NOW) == "evt_1"
        with pytest.raises(BadSignature):
            hep.verify_webhook(headers("another-secret-0123456789"), BODY, now=NOW)
