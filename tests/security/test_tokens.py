"""``POST /auth/token`` (client secret, SMART Backend Services assertions, scope narrowing) and
the bearer access tokens it issues (expiry, signature, audience, key rotation)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from hub.app import create_app
from hub.deps import get_clock
from hub.kit import utcnow
from hub.security import tokens
from hub.security.tokens import ASSERTION_TYPE
from hub.settings import Settings
from tests.security.conftest import (
    SECRET_KEY,
    add_client,
    bearer,
    get_token,
    revoke_client,
    role_of,
    token_response,
)

TOKEN_URL = "http://testserver/auth/token"


def _private_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> Any:
    return ec.generate_private_key(ec.SECP384R1())


def assertion(key: Any, client_id: str, *, alg: str = "RS384", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(
        payload,
        key if isinstance(key, str | bytes) or key is None else _private_pem(key),
        algorithm=alg,
        headers={"kid": "k1"},
    )


def _hmac_jwt(payload: dict[str, Any], secret: bytes) -> str:
    """HS384 by hand (PyJWT rightly refuses a PEM key as an HMAC secret)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        b64(json.dumps({"alg": "HS384", "typ": "JWT"}).encode()) + "." + b64(json.dumps(payload).encode())
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha384).digest()
    return signing_input + "." + b64(signature)


def post_assertion(api: TestClient, signed: str, **extra: str) -> Any:
    return api.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
            **extra,
        },
    )


def oauth_error(response: Any, status: int, error: str) -> str:
    """An RFC 6749 §5.2 error: JSON with ``error`` (and a description), never cached."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error, body
    assert body.get("error_description")
    assert "access_token" not in body
    return str(body["error_description"])


def fhir_401(response: Any) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"
    return str(outcome["issue"][0]["diagnostics"])


def problem_401(response: Any) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 401 and body["title"]
    return str(body["title"])


# ---------------------------------------------------------------- client secret


def test_client_secret_in_the_form(api: TestClient, auth_settings: Settings) -> None:
    client = add_client(auth_settings, "clinic-a", "clinic")
    response = token_response(api, client)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"].lower() == "bearer" and body["expires_in"] == 900
    assert body["scope"] == "system/*.cruds"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == client.client_id and claims["tenant"] == "clinic-a" and claims["role"] == "clinic"
    assert client.client_secret not in body["access_token"]
    assert api.get("/fhir/Patient", headers=bearer(body["access_token"])).status_code == 200


def test_client_secret_with_http_basic(api: TestClient, auth_settings: Settings) -> None:
    client = add_client(auth_settings, "clinic-a", "system")
    basic = base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode()
    response = api.post(
        "/auth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/*.rs"
    wrong = base64.b64encode(f"{client.client_id}:not-the-secret".encode()).decode()
    refused = api.post(
        "/auth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {wrong}"}
    )
    oauth_error(refused, 401, "invalid_client")
    # RFC 6749 §5.2: a failed HTTP Basic authentication answers with the scheme the client used
    assert refused.headers["www-authenticate"].lower().startswith("basic")


def test_wrong_unknown_and_revoked_clients_are_invalid_client(
    api: TestClient, auth_settings: Settings
) -> None:
    client = add_client(auth_settings, "clinic-a", "clinic")
    data = {"grant_type": "client_credentials", "client_id": client.client_id}
    oauth_error(api.post("/auth/token", data={**data, "client_secret": "nope"}), 401, "invalid_client")
    oauth_error(api.post("/auth/token", data=data), 401, "invalid_client")
    oauth_error(
        api.post("/auth/token", data={**data, "client_id": "nobody", "client_secret": "x"}),
        401,
        "invalid_client",
    )
    oauth_error(api.post("/auth/token", data={"grant_type": "client_credentials"}), 401, "invalid_client")
    secretless = add_client(auth_settings, "clinic-a", "system", with_secret=False)
    oauth_error(
        api.post("/auth/token", data={**data, "client_id": secretless.client_id, "client_secret": ""}),
        401,
        "invalid_client",
    )
    assert token_response(api, client).status_code == 200
    revoke_client(auth_settings, client.client_id)
    description = oauth_error(token_response(api, client), 401, "invalid_client")
    assert client.client_secret not in description


def test_unsupported_grant_type_is_400(api: TestClient, auth_settings: Settings) -> None:
    client = add_client(auth_settings, "clinic-a", "clinic")
    for grant in ("password", "authorization_code", ""):
        response = api.post(
            "/auth/token",
            data={"grant_type": grant, "client_id": client.client_id, "client_secret": client.client_secret},
        )
        oauth_error(response, 400, "unsupported_grant_type")
    oauth_error(
        api.post("/auth/token", json={"grant_type": "client_credentials"}), 400, "unsupported_grant_type"
    )


def test_scope_narrowing(api: TestClient, auth_settings: Settings) -> None:
    clinic = add_client(auth_settings, "clinic-a", "clinic")
    response = token_response(api, clinic, "system/Patient.rs")
    assert response.status_code == 200 and response.json()["scope"] == "system/Patient.rs"
    token = response.json()["access_token"]
    assert api.get("/fhir/Patient", headers=bearer(token)).status_code == 200
    assert api.get("/fhir/Observation", headers=bearer(token)).status_code == 403
    created = api.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=bearer(token))
    assert created.status_code == 403
    assert created.json()["resourceType"] == "OperationOutcome"
    # SMART v1 names are understood and granted as their v2 equivalents
    assert token_response(api, clinic, "system/Observation.read").json()["scope"] == "system/Observation.rs"

    system = add_client(auth_settings, "clinic-a", "system")
    both = token_response(api, system, "system/Patient.rs system/Patient.c")
    assert both.status_code == 200 and both.json()["scope"] == "system/Patient.rs"  # granted part only
    for beyond in ("system/Patient.cruds", "system/*.c", "system/*.write", "nonsense"):
        oauth_error(token_response(api, system, beyond), 400, "invalid_scope")

    limited = add_client(
        auth_settings, "clinic-a", "system", scopes="system/Patient.rs system/Observation.rs"
    )
    oauth_error(token_response(api, limited, "system/*.rs"), 400, "invalid_scope")
    assert token_response(api, limited, "system/Observation.s").json()["scope"] == "system/Observation.s"


# ---------------------------------------------------------------- SMART Backend Services


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_client_assertion_gets_a_token(
    api: TestClient, auth_settings: Settings, rsa_key: Any, ec_key: Any, alg: str
) -> None:
    key = rsa_key if alg == "RS384" else ec_key
    client = add_client(auth_settings, "clinic-a", "system", public_key=_public_pem(key), with_secret=False)
    response = post_assertion(api, assertion(key, client.client_id, alg=alg), scope="system/Patient.rs")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["scope"] == "system/Patient.rs"
    assert api.get("/fhir/Patient", headers=bearer(body["access_token"])).status_code == 200


def test_client_assertion_refusals(
    api: TestClient, auth_settings: Settings, rsa_key: Any, ec_key: Any
) -> None:
    client = add_client(
        auth_settings, "clinic-a", "system", public_key=_public_pem(rsa_key), with_secret=False
    )
    cid = client.client_id
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    cases = {
        "signature": assertion(other_key, cid),
        "aud": assertion(rsa_key, cid, aud="https://elsewhere.example/token"),
        "expired": assertion(rsa_key, cid, exp=now - 120, iat=now - 400),
        "five minutes": assertion(rsa_key, cid, exp=now + 3600),
        "iss and sub": assertion(rsa_key, cid, iss="someone-else"),
        "RS384 or ES384": assertion(SECRET_KEY, cid, alg="HS256"),
        "must be signed": assertion(None, cid, alg="none"),
        "jti": assertion(rsa_key, cid, jti=None),
        "ES384 key": assertion(ec_key, cid, alg="ES384"),
        # the registered public key as an HMAC secret: the classic algorithm-confusion attack
        "confusion": _hmac_jwt(
            {"iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": now + 60, "jti": "x1"},
            _public_pem(rsa_key).encode(),
        ),
    }
    expected = {
        "signature": "signature",
        "aud": "aud",
        "expired": "expired",
        "five minutes": "five minutes",
        "iss and sub": "iss and sub",
        "RS384 or ES384": "RS384 or ES384",
        "must be signed": "RS384 or ES384",
        "jti": "jti",
        "ES384 key": "registered key",
        "confusion": "RS384 or ES384",
    }
    for name, signed in cases.items():
        description = oauth_error(post_assertion(api, signed), 401, "invalid_client")
        assert expected[name].lower() in description.lower(), (name, description)
        assert signed not in description

    oauth_error(post_assertion(api, "not.a.jwt"), 401, "invalid_client")
    oauth_error(post_assertion(api, assertion(rsa_key, "unknown-client")), 401, "invalid_client")
    wrong_type = api.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "basic",
            "client_assertion": assertion(rsa_key, cid),
        },
    )
    oauth_error(wrong_type, 400, "invalid_request")
    secret_only = add_client(auth_settings, "clinic-a", "system")
    description = oauth_error(
        post_assertion(api, assertion(rsa_key, secret_only.client_id)), 401, "invalid_client"
    )
    assert "public key" in description


def test_a_replayed_assertion_is_refused(api: TestClient, auth_settings: Settings, ec_key: Any) -> None:
    client = add_client(
        auth_settings, "clinic-a", "system", public_key=_public_pem(ec_key), with_secret=False
    )
    signed = assertion(ec_key, client.client_id, alg="ES384")
    assert post_assertion(api, signed).status_code == 200
    description = oauth_error(post_assertion(api, signed), 401, "invalid_client")
    assert "replay" in description
    assert post_assertion(api, assertion(ec_key, client.client_id, alg="ES384")).status_code == 200


def test_a_revoked_key_client_gets_no_token(api: TestClient, auth_settings: Settings, ec_key: Any) -> None:
    client = add_client(
        auth_settings, "clinic-a", "system", public_key=_public_pem(ec_key), with_secret=False
    )
    revoke_client(auth_settings, client.client_id)
    oauth_error(post_assertion(api, assertion(ec_key, client.client_id, alg="ES384")), 401, "invalid_client")


def test_registration_refuses_bad_keys_and_referrers_without_identity(auth_settings: Settings) -> None:
    from hub.errors import BadRequest

    with pytest.raises(BadRequest):
        add_client(auth_settings, "clinic-a", "system", public_key="-----BEGIN PUBLIC KEY-----\nxx\n")
    with pytest.raises(BadRequest):
        add_client(auth_settings, "clinic-a", "referrer")
    with pytest.raises(BadRequest):
        add_client(auth_settings, "clinic-a", "clinic", scopes="system/*.cruds admin")
    with pytest.raises(BadRequest):
        add_client(auth_settings, "clinic-a", "root")


# ---------------------------------------------------------------- access tokens


def _issue(
    secret: str = SECRET_KEY,
    *,
    now: datetime | None = None,
    lifetime: timedelta = timedelta(minutes=15),
    **claims: Any,
) -> str:
    token, _ = tokens.issue(
        secret=secret,
        client_id=claims.get("client_id", "clinic-x"),
        tenant=claims.get("tenant", "clinic-a"),
        role=claims.get("role", "clinic"),
        scope=claims.get("scope", "system/*.cruds"),
        fhir_user=None,
        now=now or utcnow(),
        lifetime=lifetime,
    )
    return token


def _bad_tokens() -> dict[str, tuple[str, str]]:
    """name -> (Authorization header value, what the diagnostics say)."""
    key = tokens._key(SECRET_KEY)
    now = int(time.time())
    claims = {
        "iss": tokens.ISSUER,
        "sub": "clinic-x",
        "iat": now,
        "exp": now + 600,
        "tenant": "clinic-a",
        "role": "admin",
        "scope": "system/*.cruds",
    }
    return {
        "missing": ("", "bearer token"),
        "basic scheme": ("Basic Y2xpbmljOnNlY3JldA==", "bearer token"),
        "empty": ("Bearer ", "bearer token"),
        "malformed": ("Bearer not-a-token", "malformed"),
        "expired": (f"Bearer {_issue(now=utcnow() - timedelta(hours=1))}", "expired"),
        "other key": (f"Bearer {_issue('another-hub-secret-key')}", "signature"),
        "wrong audience": (
            f"Bearer {jwt.encode({**claims, 'aud': 'another-api'}, key, algorithm='HS256')}",
            "audience",
        ),
        "no audience": (f"Bearer {jwt.encode(claims, key, algorithm='HS256')}", "malformed"),
        "alg none": (
            f"Bearer {jwt.encode({**claims, 'aud': tokens.AUDIENCE}, None, algorithm='none')}",
            "malformed",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_tokens()))
def test_bad_access_tokens_are_401(api: TestClient, case: str) -> None:
    header, says = _bad_tokens()[case]
    headers = {"Authorization": header} if header else {}
    diagnostics = fhir_401(api.get("/fhir/Patient", headers=headers))
    assert says in diagnostics.lower(), diagnostics
    fhir_401(api.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers))
    assert says in problem_401(api.get("/admin/api/messages", headers=headers)).lower()
    assert says in problem_401(api.get("/referrals", headers=headers)).lower()
    if header.startswith("Bearer ") and header.strip() != "Bearer":
        # RFC 6750 §3.1: a token that was sent but refused is an invalid_token
        www = api.get("/fhir/Patient", headers=headers).headers["www-authenticate"]
        assert 'error="invalid_token"' in www


def test_open_endpoints_need_no_token(api: TestClient) -> None:
    assert api.get("/fhir/metadata").status_code == 200
    assert api.get("/healthz").status_code == 200


def test_the_clock_override_governs_token_expiry(auth_settings: Settings) -> None:
    """Tokens are issued and checked against the same clock (tests inject time, never sleep)."""
    now = [datetime(2026, 3, 2, 9, 0, 0)]
    app = create_app(auth_settings)
    app.dependency_overrides[get_clock] = lambda: lambda: now[0]
    client = add_client(auth_settings, "clinic-a", "clinic")
    with TestClient(app, base_url="http://testserver") as api:
        token = get_token(api, client)
        assert api.get("/fhir/Patient", headers=bearer(token)).status_code == 200
        now[0] += timedelta(minutes=14)
        assert api.get("/fhir/Patient", headers=bearer(token)).status_code == 200
        now[0] += timedelta(minutes=2)
        assert "expired" in fhir_401(api.get("/fhir/Patient", headers=bearer(token)))


def test_key_rotation_keeps_tokens_of_the_previous_key(auth_settings: Settings) -> None:
    client = add_client(auth_settings, "clinic-a", "clinic")
    with TestClient(create_app(auth_settings), base_url="http://testserver") as before:
        old_token = get_token(before, client)
    rotated = auth_settings.model_copy(
        update={
            "secret_key": SecretStr("the-new-hub-secret-key-0987654321"),
            "secret_key_previous": f"older-key, {SECRET_KEY}",
        }
    )
    with TestClient(create_app(rotated), base_url="http://testserver") as after:
        assert after.get("/fhir/Patient", headers=bearer(old_token)).status_code == 200
        new_token = get_token(after, client)
        assert after.get("/fhir/Patient", headers=bearer(new_token)).status_code == 200
        claims = jwt.decode(
            new_token,
            tokens._key("the-new-hub-secret-key-0987654321"),
            algorithms=["HS256"],
            audience=tokens.AUDIENCE,
        )
        assert claims["sub"] == client.client_id
    retired = rotated.model_copy(update={"secret_key_previous": ""})
    with TestClient(create_app(retired), base_url="http://testserver") as later:
        assert "signature" in fhir_401(later.get("/fhir/Patient", headers=bearer(old_token)))


def test_a_referrer_token_carries_its_identity(api: TestClient, auth_settings: Settings) -> None:
    referrer = add_client(auth_settings, "clinic-a", "referrer", fhir_user=role_of("1234567893"))
    body = token_response(api, referrer).json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["fhirUser"] == role_of("1234567893") and claims["role"] == "referrer"
    assert body["scope"] == "user/*.rs user/ServiceRequest.cruds user/Task.rs"
