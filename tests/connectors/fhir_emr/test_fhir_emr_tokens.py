"""SMART Backend Services tokens: assertions, renewal, refusals and scopes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connectors.base import (
    AuthError,
    ConfigError,
    TransientError,
)
from connectors.fhir_emr import (
    CLIENT_ASSERTION_TYPE,
    SmartBackendAuth,
)
from sandboxes.emr import SandboxEmr
from tests.connectors.conftest import free_port, make_delivery
from tests.connectors.fhir_emr.conftest import Clock, MakeConnector, body, fhir_requests, patient, private_pem

# --------------------------------------------------------------------------------------- tokens


def test_one_token_for_many_sends(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector()
    for n in range(5):
        connector.send(make_delivery(f"job-{n}", body(patient(f"p{n}", f"M{n}"))))

    assert emr.tokens_issued == 1 and len(emr.token_requests) == 1
    [token_request] = emr.token_requests
    assert token_request.client_id == "hub" and token_request.status == 200
    assert token_request.scope == connector.emr_config.scope
    tokens = {r.headers["authorization"] for r in emr.requests}
    assert len(tokens) == 1 and tokens.pop().startswith("Bearer ")
    assert [r.status for r in emr.requests] == [201] * 5


@pytest.mark.parametrize("flavour", ["RS384", "ES384"])
def test_the_client_assertion_claims(
    emr: SandboxEmr,
    make_connector: MakeConnector,
    clock: Clock,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    flavour: str,
) -> None:
    key = rsa_key if flavour == "RS384" else ec_key
    connector = make_connector(
        client_id="hub" if flavour == "RS384" else "hub-ec",
        key_id="rsa-1" if flavour == "RS384" else "ec-1",
        algorithm=flavour,
        private_key=private_pem(key),
    )
    assert connector.send(make_delivery(payload=body(patient()))).status == 201
    auth = connector.auth
    assert isinstance(auth, SmartBackendAuth) and auth.token_url == emr.token_url

    first, second = auth._assertion(emr.token_url), auth._assertion(emr.token_url)
    header = jwt.get_unverified_header(first)
    assert header["alg"] == flavour and header["kid"] == ("rsa-1" if flavour == "RS384" else "ec-1")
    claims = jwt.decode(
        first, key.public_key(), algorithms=[flavour], audience=emr.token_url, options={"verify_exp": False}
    )
    client_id = connector.emr_config.client_id
    assert claims["iss"] == claims["sub"] == client_id and claims["aud"] == emr.token_url
    assert 0 < claims["exp"] - clock.now <= 300
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]


def test_the_token_is_renewed_shortly_before_it_expires(
    emr: SandboxEmr, make_connector: MakeConnector, clock: Clock
) -> None:
    connector = make_connector()
    connector.send(make_delivery("job-1", body(patient())))
    clock.advance(200)
    connector.send(make_delivery("job-2", body(patient(gender="male"))))
    assert emr.tokens_issued == 1
    clock.advance(75)  # 275 s of 300: inside the 30 s margin
    connector.send(make_delivery("job-3", body(patient(gender="female"))))

    assert emr.tokens_issued == 2
    assert 401 not in [r.status for r in emr.requests]  # renewed before the server refused it


def test_a_short_server_lifetime_is_honoured(
    emr: SandboxEmr, make_connector: MakeConnector, clock: Clock
) -> None:
    emr.configure(token_lifetime=2)
    connector = make_connector()
    connector.send(make_delivery("job-1", body(patient())))
    clock.advance(1.9)  # margin: 10 % of 2 s
    connector.send(make_delivery("job-2", body(patient(gender="male"))))
    assert emr.tokens_issued == 2 and 401 not in [r.status for r in emr.requests]


def test_a_401_refreshes_the_token_once(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector()
    connector.send(make_delivery("job-1", body(patient())))
    assert emr.revoke_tokens() == 1  # e.g. the EMR restarted and forgot its tokens

    result = connector.send(make_delivery("job-2", body(patient(gender="male"))))

    assert result.status == 200 and emr.tokens_issued == 2
    assert [r.status for r in emr.requests] == [201, 401, 200]
    first, refused, retried = (r.headers["authorization"] for r in emr.requests)
    assert first == refused != retried


def test_a_401_after_a_fresh_token_is_final(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    emr.configure(bearer_token="something-else", require_token=False)  # the base sandbox's static check
    with pytest.raises(AuthError) as caught:
        make_connector().send(make_delivery(payload=body(patient())))
    assert caught.value.status == 401 and emr.tokens_issued == 2  # one refresh, one retry, no loop
    assert [r.status for r in emr.requests] == [401, 401]


def replaying_jti(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.fhir_emr.auth.secrets.token_urlsafe", lambda n: "always-the-same-jti")


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("wrong key", "invalid_client: signature verification failed: not signed by the registered key"),
        ("wrong kid", "invalid_client: no key with kid 'rsa-2' is registered for this client"),
        ("unknown client", "invalid_client: iss is not a registered client_id"),
        ("wrong aud", "invalid_client: aud must be the token endpoint URL"),
        ("expired", "invalid_client: the client assertion expired"),
        ("too far ahead", "invalid_client: exp is more than 5 minutes in the future"),
        ("replayed jti", "invalid_client: jti was already used: a replayed client assertion"),
        ("scope beyond registration", "invalid_scope: scope 'system/Patient.cu' is not registered"),
        (
            "EC key on an RSA client",
            "invalid_client: alg ES384 does not fit the registered key (not EC P-384)",
        ),
    ],
)
def test_assertions_the_sandbox_refuses(
    emr: SandboxEmr,
    make_connector: MakeConnector,
    clock: Clock,
    other_rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    monkeypatch: pytest.MonkeyPatch,
    scenario: str,
    message: str,
) -> None:
    options: dict[str, Any] = {}
    if scenario == "wrong key":
        options["private_key"] = private_pem(other_rsa_key)
    elif scenario == "wrong kid":
        options["key_id"] = "rsa-2"
    elif scenario == "unknown client":
        options["client_id"] = "stranger"
    elif scenario == "wrong aud":  # the endpoint answers under another URL than the one it checks
        emr.configure(smart_configuration=False)
        options["token_url"] = emr.token_url + "?tenant=clinic-1"
    elif scenario == "expired":
        options["connector_clock"] = lambda: clock.now - 600
    elif scenario == "too far ahead":
        options["connector_clock"] = lambda: clock.now + 600
    elif scenario == "replayed jti":
        replaying_jti(monkeypatch)
        first = make_connector()
        first.send(make_delivery("job-0", body(patient("p0", "M0"))))
    elif scenario == "scope beyond registration":
        options.update(client_id="narrow", scope="system/*.rs system/Patient.cu")
    elif scenario == "EC key on an RSA client":
        options.update(algorithm="ES384", private_key=private_pem(ec_key))
    connector = make_connector(**options)

    with pytest.raises(AuthError) as caught:
        connector.send(make_delivery("job-1", body(patient())))

    error = caught.value
    assert message in str(error), str(error)
    assert str(error).startswith(f"SMART token request to http://127.0.0.1:{emr.port} -> 40")
    assert "eyJ" not in str(error) and "PRIVATE KEY" not in str(error)  # no assertion, no key
    assert [r.status for r in fhir_requests(emr)] == ([201] if scenario == "replayed jti" else [])
    assert emr.token_requests[-1].status in (400, 401)


def test_token_endpoint_failures_are_transient(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    emr.configure(token_status_override=503, retry_after=12)
    connector = make_connector()
    with pytest.raises(TransientError) as caught:
        connector.send(make_delivery(payload=body(patient())))
    assert caught.value.status == 503 and caught.value.retry_after == 12.0
    assert "SMART token request" in str(caught.value)

    emr.configure(token_status_override=None)
    assert connector.send(make_delivery(payload=body(patient()))).status == 201

    down = make_connector(base_url=f"http://127.0.0.1:{free_port()}/fhir")
    with pytest.raises(TransientError, match="SMART configuration GET .* failed \\(ConnectError\\)"):
        down.send(make_delivery(payload=body(patient())))


def test_token_url_is_the_fallback_of_discovery(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    emr.configure(smart_configuration=False)
    with pytest.raises(ConfigError, match="no SMART configuration; set token_url"):
        make_connector().send(make_delivery(payload=body(patient())))

    connector = make_connector(token_url=emr.token_url)
    assert connector.send(make_delivery(payload=body(patient()))).status == 201
    assert connector.auth.token_url == emr.token_url  # type: ignore[attr-defined]


def test_an_algorithm_the_server_does_not_accept_is_a_config_error(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    emr.configure(signing_algorithms=["ES384"])
    with pytest.raises(ConfigError, match="does not accept RS384 client assertions \\(it lists ES384\\)"):
        make_connector().send(make_delivery(payload=body(patient())))
    assert emr.token_requests == []  # refused before the key was used


def test_the_token_endpoint_checks_every_claim(
    emr: SandboxEmr, rsa_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    def assertion(header: dict[str, Any] | None = None, algorithm: str = "RS384", **changes: Any) -> str:
        claims = {"iss": "hub", "sub": "hub", "aud": emr.token_url, "exp": int(clock.now) + 60}
        claims["jti"] = uuid.uuid4().hex
        claims.update(changes)
        claims = {k: v for k, v in claims.items() if v is not None}
        key: Any = rsa_key if algorithm.startswith("RS") else "a-shared-secret-long-enough-for-hs384-" * 2
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": "rsa-1", **(header or {})})

    def token(client_assertion: str, **form: str) -> httpx.Response:
        data = {
            "grant_type": "client_credentials",
            "scope": "system/Patient.rs",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": client_assertion,
            **form,
        }
        return httpx.post(emr.token_url, data=data, trust_env=False)

    good = token(assertion())
    assert good.status_code == 200 and good.headers["Cache-Control"] == "no-store"
    granted = good.json()
    assert granted["token_type"] == "bearer" and granted["expires_in"] == 300
    assert granted["scope"] == "system/Patient.rs"

    for bad, description in [
        (assertion(sub="someone-else"), "sub must equal iss"),
        (assertion(jti=None), "the assertion has no jti claim"),
        (assertion(exp=None), "the assertion has no exp claim"),
        (assertion(algorithm="HS384"), "alg 'HS384' is not accepted"),
        (assertion(algorithm="RS256"), "alg 'RS256' is not accepted"),
        (assertion(header={"kid": ""}), "the assertion header has no kid"),
        ("not-a-jwt", "client_assertion is not a JWT"),
    ]:
        answer = token(bad)
        assert answer.status_code == 401, description
        assert answer.json() == {
            "error": "invalid_client",
            "error_description": answer.json()["error_description"],
        }
        assert description in answer.json()["error_description"]

    assert token(assertion(), grant_type="password").json()["error"] == "unsupported_grant_type"
    assert token(assertion(), scope="patient/Patient.rs").json()["error"] == "invalid_scope"
    assert token(assertion(), client_assertion_type="x").json()["error"] == "invalid_request"
    assert httpx.get(emr.token_url, trust_env=False).status_code == 405
    as_json = httpx.post(emr.token_url, json={"grant_type": "client_credentials"}, trust_env=False)
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"

    bearer = {"Authorization": f"Bearer {granted['access_token']}"}
    with httpx.Client(base_url=emr.url, trust_env=False, headers=bearer) as http:
        assert http.get("/Patient").status_code == 200
        forbidden = http.get("/Task")
        assert forbidden.status_code == 403
        assert "do not allow search of Task" in forbidden.json()["issue"][0]["diagnostics"]
        assert 'error="insufficient_scope"' in forbidden.headers["WWW-Authenticate"]
        clock.advance(301)
        expired = http.get("/Patient")
        assert expired.status_code == 401 and 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
        assert "expired" in expired.json()["issue"][0]["diagnostics"]
    assert httpx.get(emr.url + "/Patient", trust_env=False).status_code == 401
    assert httpx.get(emr.url + "/metadata", trust_env=False).status_code == 200


def test_a_scope_too_narrow_for_writes_is_an_auth_error(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    emr.seed(patient("ignored", "M9") | {"id": "e1"})
    connector = make_connector(client_id="narrow", scope="system/*.rs")

    with pytest.raises(AuthError) as caught:
        connector.send(make_delivery(payload=body(patient())))

    assert caught.value.status == 403
    assert str(caught.value).endswith("-> 403 Forbidden: forbidden")  # the issue code, never its text
    assert emr.resources("Patient")[0]["id"] == "e1" and len(emr.resources("Patient")) == 1
    assert len(connector.poll(None, 10).items) == 1  # reading is allowed
