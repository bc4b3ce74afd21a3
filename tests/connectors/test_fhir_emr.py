"""The FHIR EMR connector (SMART Backend Services, conditional writes) against the sandbox EMR."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connectors import registry
from connectors.base import (
    AuthError,
    ConfigError,
    Connector,
    ConnectorError,
    PermanentError,
    Poller,
    TransientError,
)
from connectors.fhir_emr import (
    CLIENT_ASSERTION_TYPE,
    FhirEmrConfig,
    FhirEmrConnector,
    SmartBackendAuth,
    map_identifier_systems,
)
from connectors.fhir_rest import FhirRestConnector
from hub.sync.polling import resolve_references
from sandboxes.emr import SandboxEmr
from tests.connectors.conftest import free_port, make_delivery

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = {"urn:hub:mrn": "urn:emr:mrn", "urn:hub:referral": "urn:emr:referral"}


# ------------------------------------------------------------------------------------ fixtures


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


class Clock:
    """Unix seconds that tests move forward; shared by the sandbox and the connector."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emr(clock: Clock, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Iterator[SandboxEmr]:
    with SandboxEmr(clock=clock) as server:
        server.register_client("hub", public_pem(rsa_key), "system/*.cruds", kid="rsa-1")
        server.register_client("hub-ec", public_pem(ec_key), "system/*.cruds", kid="ec-1")
        server.register_client("narrow", public_pem(rsa_key), "system/*.rs", kid="rsa-1")
        yield server


MakeConnector = Callable[..., FhirEmrConnector]


@pytest.fixture
def make_connector(emr: SandboxEmr, clock: Clock, rsa_key: rsa.RSAPrivateKey) -> Iterator[MakeConnector]:
    made: list[FhirEmrConnector] = []

    def factory(*, connector_clock: Callable[[], float] | None = None, **config: Any) -> FhirEmrConnector:
        settings: dict[str, Any] = {
            "base_url": emr.url,
            "client_id": "hub",
            "key_id": "rsa-1",
            "private_key": private_pem(rsa_key),
            "identifier_system_map": SYSTEMS,
            "timeout_seconds": 2.0,
            **config,
        }
        connector = FhirEmrConnector(settings, clock=connector_clock or clock)
        made.append(connector)
        return connector

    yield factory
    for connector in made:
        connector.close()


def patient(hub_id: str = "p1", mrn: str = "M1", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": hub_id,
        "meta": {"versionId": "7", "lastUpdated": "2024-01-01T00:00:00Z", "profile": ["urn:profile"]},
        "identifier": [{"system": "urn:hub:mrn", "value": mrn}],
        **fields,
    }


def body(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource).encode()


def fhir_requests(emr: SandboxEmr, method: str | None = None) -> list[Any]:
    return [r for r in emr.requests if method is None or r.method == method]


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


# -------------------------------------------------------------------------------------- writes


def test_conditional_update_creates_then_updates(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector()

    created = connector.send(make_delivery("job-1", body(patient(gender="female"))))
    again = connector.send(make_delivery("job-1", body(patient(gender="female"))))  # a worker retry
    replayed = connector.send(make_delivery("job-1-replay", body(patient(gender="female"))))
    updated = connector.send(make_delivery("job-2", body(patient(gender="other"))))

    assert (created.status, created.remote_id) == (201, "s000001")
    assert "FHIR conditional update" in created.detail and "Patient/p1 by urn:emr:mrn" in created.detail
    assert "-> 201 created as Patient/s000001 (version 1)" in created.detail
    assert again.status == 201 and emr.duplicates == 1
    assert (replayed.status, replayed.remote_id) == (200, "s000001")
    assert (updated.status, updated.remote_id) == (200, "s000001") and "version 3" in updated.detail
    assert "M1" not in created.detail + updated.detail  # identifier values may be PHI

    [stored] = emr.resources("Patient")  # no duplicates
    assert stored["id"] == "s000001" and stored["gender"] == "other"
    assert stored["identifier"] == [{"system": "urn:emr:mrn", "value": "M1"}]
    assert stored["meta"]["profile"] == ["urn:profile"] and stored["meta"]["versionId"] == "3"
    put = fhir_requests(emr, "PUT")[0]
    assert put.path == "/fhir/Patient" and put.query == "identifier=urn%3Aemr%3Amrn%7CM1"
    sent = json.loads(put.body)
    assert "id" not in sent and sent["meta"] == {"profile": ["urn:profile"]}
    assert put.idempotency_key == "job-1" and put.correlation_id == "corr-123"


def test_the_key_identifier_prefers_a_mapped_system(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    resource = patient(
        identifier=[{"system": "urn:other", "value": "X"}, {"system": "urn:hub:mrn", "value": "M1"}]
    )
    make_connector().send(make_delivery(payload=body(resource)))
    assert fhir_requests(emr, "PUT")[0].query == "identifier=urn%3Aemr%3Amrn%7CM1"


def test_a_resource_without_identifier_is_keyed_by_the_hub_id(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    task = {"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order"}
    connector.send(make_delivery("job-1", body(task)))
    connector.send(make_delivery("job-2", body(task | {"status": "accepted"})))

    [stored] = emr.resources("Task")
    assert stored["identifier"] == [{"system": "urn:therapy-hub:id", "value": "t1"}]
    assert stored["status"] == "accepted" and stored["meta"]["versionId"] == "2"


def test_identifier_values_are_escaped(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector()
    odd = patient(mrn="A|B,C$D\\E")
    connector.send(make_delivery("job-1", body(odd)))
    connector.send(make_delivery("job-2", body(odd | {"gender": "male"})))
    [stored] = emr.resources("Patient")
    assert stored["identifier"][0]["value"] == "A|B,C$D\\E" and stored["meta"]["versionId"] == "2"


def test_create_only_types_use_if_none_exist(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector(create_only_types=["ServiceRequest"])
    referral = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "requisition": {"system": "urn:hub:referral", "value": "R-1"},
        "identifier": [{"system": "urn:hub:referral", "value": "R-1"}],
    }
    created = connector.send(make_delivery("job-1", body(referral)))
    kept = connector.send(make_delivery("job-2", body(referral | {"status": "revoked"})))

    assert (created.status, kept.status) == (201, 200) and created.remote_id == kept.remote_id
    assert "already there, unchanged" in kept.detail
    [stored] = emr.resources("ServiceRequest")
    assert stored["status"] == "active" and stored["requisition"]["system"] == "urn:emr:referral"
    posts = fhir_requests(emr, "POST")
    assert [p.path for p in posts] == ["/fhir/ServiceRequest"] * 2
    assert posts[0].headers["if-none-exist"] == "identifier=urn%3Aemr%3Areferral%7CR-1"


def test_several_matches_are_permanent(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    for emr_id in ("e1", "e2"):
        emr.seed(
            {
                "resourceType": "Patient",
                "id": emr_id,
                "identifier": [{"system": "urn:emr:mrn", "value": "M1"}],
            }
        )
    with pytest.raises(PermanentError) as caught:
        make_connector().send(make_delivery(payload=body(patient())))
    assert caught.value.status == 412 and not isinstance(caught.value, AuthError)
    assert str(caught.value).endswith("-> 412 Precondition Failed: multiple-matches")


def test_a_payload_that_is_not_a_resource_is_refused_without_a_request(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    with pytest.raises(PermanentError, match="payload is not a FHIR resource with an id"):
        make_connector().send(make_delivery(payload=b'{"resourceType": "Patient"}'))
    assert emr.requests == [] and emr.token_requests == []


# ----------------------------------------------------------------------- identifier mapping, poll


def test_identifier_systems_are_mapped_both_ways(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector(resource_types=["ServiceRequest"])
    referral = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "identifier": [{"system": "urn:hub:referral", "value": "R-1"}, {"system": "urn:x", "value": "1"}],
        "subject": {"reference": "Patient/p1", "identifier": {"system": "urn:hub:mrn", "value": "M1"}},
        "code": {"coding": [{"system": "urn:hub:mrn", "code": "not-an-identifier"}]},
        "contained": [
            {"resourceType": "Patient", "id": "c", "identifier": [{"system": "urn:hub:mrn", "value": "M2"}]}
        ],
    }
    connector.send(make_delivery(payload=body(referral)))

    [stored] = emr.resources("ServiceRequest")
    assert [i["system"] for i in stored["identifier"]] == ["urn:emr:referral", "urn:x"]
    assert stored["subject"]["identifier"]["system"] == "urn:emr:mrn"
    assert stored["contained"][0]["identifier"][0]["system"] == "urn:emr:mrn"
    assert stored["code"]["coding"][0]["system"] == "urn:hub:mrn"  # codings are not identifiers

    emr.seed(
        {
            "resourceType": "ServiceRequest",
            "id": "emr-made",
            "status": "active",
            "intent": "order",
            "identifier": [{"system": "urn:emr:referral", "value": "R-2"}],
        }
    )
    items = [json.loads(item.payload) for item in connector.poll(None, 10).items]
    assert [i["identifier"][0]["system"] for i in items] == ["urn:hub:referral", "urn:hub:referral"]
    assert items[0]["subject"]["identifier"]["system"] == "urn:hub:mrn"
    assert items[0]["identifier"][1] == {"system": "urn:x", "value": "1"}

    assert map_identifier_systems({"valueIdentifier": {"system": "a"}}, {"a": "b"}) == {
        "valueIdentifier": {"system": "b"}
    }


def test_poll_resumes_from_the_cursor_after_a_crash(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    for n in range(7):
        emr.seed(
            {
                "resourceType": "Patient",
                "id": f"e{n}",
                "identifier": [{"system": "urn:emr:mrn", "value": f"M{n}"}],
            }
        )
    first = make_connector(resource_types=["Patient"], page_size=2)
    batch = first.poll(None, 3)
    first.close()  # the worker dies; only the stored cursor survives

    second = make_connector(resource_types=["Patient"], page_size=2)
    rest = second.poll(batch.next_cursor, 100)
    seen = [i.external_id for i in batch.items + rest.items]

    assert seen == [f"Patient/e{n}/_history/1" for n in range(7)]
    assert all(json.loads(i.payload)["identifier"][0]["system"] == "urn:hub:mrn" for i in rest.items)
    assert second.poll(rest.next_cursor, 100).items == []
    assert emr.tokens_issued == 2  # each instance got its own token
    with pytest.raises(PermanentError, match="invalid fhir_emr poll cursor"):
        second.poll("garbage", 10)


# -------------------------------------------------------------------------------- references


def referral(hub_id: str = "sr1", number: str = "R-1", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": hub_id,
        "meta": {"versionId": "3", "lastUpdated": "2024-01-01T00:00:00Z"},
        "status": "active",
        "intent": "order",
        "identifier": [{"system": "urn:hub:referral", "value": number}],
        "subject": {"reference": "Patient/p1", "display": "the patient"},
        **fields,
    }


def in_context(focus: dict[str, Any], *referenced: dict[str, Any]) -> bytes:
    """The payload the hub delivers to a connector whose context asks for references."""
    entries = [
        {"fullUrl": f"http://hub.test/fhir/{r['resourceType']}/{r['id']}", "resource": r}
        for r in (focus, *referenced)
    ]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()


def searches(emr: SandboxEmr, resource_type: str) -> list[Any]:
    return [r for r in emr.requests if r.method == "GET" and r.path == f"/fhir/{resource_type}"]


def test_the_connector_asks_for_references() -> None:
    assert FhirEmrConnector.context == frozenset({"references"})
    assert "context" not in vars(FhirRestConnector)  # fhir_rest mirrors ids: bare resources


def test_a_referenced_patient_missing_on_the_emr_is_written_first(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    result = connector.send(make_delivery("job-1", in_context(referral(), patient())))

    [stored_patient] = emr.resources("Patient")
    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"] == {"reference": f"Patient/{stored_patient['id']}", "display": "the patient"}
    assert stored_patient["identifier"] == [{"system": "urn:emr:mrn", "value": "M1"}]
    assert stored_patient["id"] != "p1" and "id" not in json.loads(fhir_requests(emr, "PUT")[0].body)
    calls = [(r.method, r.path, r.status) for r in emr.requests]
    assert calls == [
        ("GET", "/fhir/Patient", 200),  # is it there? no
        ("PUT", "/fhir/Patient", 201),  # then write it, by its identifier
        ("PUT", "/fhir/ServiceRequest", 201),
    ]
    assert searches(emr, "Patient")[0].query == "identifier=urn%3Aemr%3Amrn%7CM1&_count=2"
    dependency, request = fhir_requests(emr, "PUT")
    assert dependency.idempotency_key == "job-1:Patient/p1" and request.idempotency_key == "job-1"
    assert dependency.correlation_id == request.correlation_id == "corr-123"
    assert result.remote_id == stored["id"]
    assert "references: 1 resolved to EMR ids (0 from cache), 1 dependencies written, 0 logical" in result.detail
    assert "M1" not in result.detail and "the patient" not in result.detail
    # both writes are the hub's own: a later poll skips them (SendResult.written, as poll names them)
    assert result.written == (
        f"Patient/{stored_patient['id']}/_history/1", f"ServiceRequest/{stored['id']}/_history/1"
    )


def test_a_second_delivery_resolves_from_the_cache(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector()
    connector.send(make_delivery("job-1", in_context(referral(), patient())))
    before = len(emr.requests)
    other = referral("sr2", "R-2", subject={"reference": "Patient/p1"})
    result = connector.send(make_delivery("job-2", in_context(other, patient())))

    assert [(r.method, r.path) for r in emr.requests[before:]] == [("PUT", "/fhir/ServiceRequest")]
    assert len(searches(emr, "Patient")) == 1  # the first delivery's search only
    [stored_patient] = emr.resources("Patient")
    assert {r["subject"]["reference"] for r in emr.resources("ServiceRequest")} == {f"Patient/{stored_patient['id']}"}
    assert "1 resolved to EMR ids (1 from cache), 0 dependencies written" in result.detail

    # the resource a delivery writes is remembered too: a Task about the referral needs no search
    task = {"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order",
            "focus": {"reference": "ServiceRequest/sr1"}, "for": {"reference": "Patient/p1"}}
    before = len(emr.requests)
    connector.send(make_delivery("job-3", in_context(task, referral(), patient())))
    assert [r.method for r in emr.requests[before:]] == ["PUT"]
    [emr_task] = emr.resources("Task")
    assert emr_task["focus"]["reference"] == "ServiceRequest/" + emr.resources("ServiceRequest")[0]["id"]


def test_a_patient_already_on_the_emr_is_found_not_duplicated(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    emr.seed({"resourceType": "Patient", "id": "emr-7", "identifier": [{"system": "urn:emr:mrn", "value": "M1"}]})
    result = make_connector().send(make_delivery("job-1", in_context(referral(), patient(gender="male"))))

    [existing] = emr.resources("Patient")
    assert existing["id"] == "emr-7" and existing["meta"]["versionId"] == "1"  # found, used as it is
    assert "gender" not in existing
    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"]["reference"] == "Patient/emr-7"
    assert [(r.method, r.path) for r in emr.requests] == [("GET", "/fhir/Patient"), ("PUT", "/fhir/ServiceRequest")]
    assert "0 dependencies written" in result.detail


def test_an_identifier_not_unique_on_the_emr_is_permanent(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    for emr_id in ("e1", "e2"):
        emr.seed({"resourceType": "Patient", "id": emr_id, "identifier": [{"system": "urn:emr:mrn", "value": "M1"}]})
    with pytest.raises(PermanentError) as caught:
        make_connector().send(make_delivery("job-1", in_context(referral(), patient())))

    message = str(caught.value)
    assert not isinstance(caught.value, AuthError)
    assert "2 Patient resources carry that identifier on the EMR (not unique" in message
    assert "Patient/p1 by urn:emr:mrn" in message and "M1" not in message
    assert emr.resources("ServiceRequest") == [] and fhir_requests(emr, "PUT") == []


def test_dependencies_are_resolved_recursively(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    organization = {"resourceType": "Organization", "id": "org1", "name": "Ortho Associates"}
    practitioner = {"resourceType": "Practitioner", "id": "dr1",
                    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]}
    role = {"resourceType": "PractitionerRole", "id": "role1", "practitioner": {"reference": "Practitioner/dr1"},
            "organization": {"reference": "Organization/org1"}}
    request = referral(requester={"reference": "PractitionerRole/role1"})
    connector = make_connector(scope="system/*.cruds")
    result = connector.send(make_delivery("job-1", in_context(request, patient(), role, practitioner, organization)))

    [stored_role] = emr.resources("PractitionerRole")
    [stored_practitioner] = emr.resources("Practitioner")
    [stored_organization] = emr.resources("Organization")
    assert stored_role["practitioner"]["reference"] == f"Practitioner/{stored_practitioner['id']}"
    assert stored_role["organization"]["reference"] == f"Organization/{stored_organization['id']}"
    # keyed by the hub id when it has no identifier of its own, as any write
    assert stored_organization["identifier"] == [{"system": "urn:therapy-hub:id", "value": "org1"}]
    [stored] = emr.resources("ServiceRequest")
    assert stored["requester"]["reference"] == f"PractitionerRole/{stored_role['id']}"
    assert "4 resolved to EMR ids (0 from cache), 4 dependencies written, 0 logical" in result.detail
    assert fhir_requests(emr, "PUT")[-1].path == "/fhir/ServiceRequest"  # dependencies first


def test_references_without_a_target_become_logical(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    request = referral(
        subject={"reference": "Patient/gone", "display": "the patient"},  # not in the hub's store any more
        performer=[{"reference": "Organization/o9", "identifier": {"system": "urn:hub:mrn", "value": "O-9"}}],
        supportingInfo=[{"reference": "#local"}, {"reference": "urn:uuid:0d6f7a9e-1c1b-4c54-9b52-2d0d4f1e5f0a"},
                        {"reference": "https://elsewhere.example/fhir/Binary/b1"}],
        contained=[{"resourceType": "Observation", "id": "local", "status": "final",
                    "code": {"text": "x"}, "subject": {"reference": "Patient/gone"}}],
    )
    emr.configure(check_references=False)  # the contained reference is not the connector's to rewrite
    result = make_connector().send(make_delivery("job-1", body(request)))  # a bare resource: no context

    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"] == {
        "display": "the patient",
        "type": "Patient",
        "identifier": {"system": "urn:therapy-hub:id", "value": "gone"},
    }
    assert stored["performer"] == [{"type": "Organization", "identifier": {"system": "urn:emr:mrn", "value": "O-9"}}]
    assert stored["supportingInfo"] == request["supportingInfo"]  # local, urn: and absolute: untouched
    assert stored["contained"][0]["subject"] == {"reference": "Patient/gone"}
    assert [r.method for r in emr.requests] == ["PUT"]  # nothing to look up
    assert "0 resolved to EMR ids (0 from cache), 0 dependencies written, 2 logical" in result.detail


def test_a_target_that_cannot_be_keyed_stays_logical(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    letter = {"resourceType": "Composition", "id": "c1", "status": "final", "type": {"text": "letter"},
              "identifier": {"system": "urn:hub:letter", "value": "L-1"}, "date": "2024-01-01", "title": "t",
              "author": [{"display": "x"}]}  # a single identifier, not a list: not writable by identifier
    request = referral(supportingInfo=[{"reference": "Composition/c1"}])
    result = make_connector().send(make_delivery("job-1", in_context(request, patient(), letter)))

    [stored] = emr.resources("ServiceRequest")
    assert stored["supportingInfo"] == [{"type": "Composition",
                                         "identifier": {"system": "urn:therapy-hub:id", "value": "c1"}}]
    assert emr.resources("Composition") == [] and "1 resolved to EMR ids" in result.detail


def test_cycles_and_depth_end_in_logical_references(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    one = patient("p1", "M1", link=[{"other": {"reference": "Patient/p2"}, "type": "seealso"}])
    two = patient("p2", "M2", link=[{"other": {"reference": "Patient/p1"}, "type": "seealso"}])
    connector = make_connector(scope="system/*.cruds")
    connector.send(make_delivery("job-1", in_context(one, two)))
    stored = {p["identifier"][0]["value"]: p for p in emr.resources("Patient")}
    assert stored["M2"]["link"][0]["other"] == {"type": "Patient",
                                               "identifier": {"system": "urn:therapy-hub:id", "value": "p1"}}
    assert stored["M1"]["link"][0]["other"] == {"reference": f"Patient/{stored['M2']['id']}"}

    chain = [{"resourceType": "Organization", "id": f"o{n}", "partOf": {"reference": f"Organization/o{n + 1}"}}
             for n in range(6)]
    result = connector.send(make_delivery("job-2", in_context(*chain)))
    written = {o["identifier"][0]["value"]: o for o in emr.resources("Organization")}
    assert sorted(written) == ["o0", "o1", "o2", "o3"]  # o1..o3: three dependency levels
    assert written["o3"]["partOf"] == {"type": "Organization",
                                       "identifier": {"system": "urn:therapy-hub:id", "value": "o4"}}
    assert written["o0"]["partOf"] == {"reference": f"Organization/{written['o1']['id']}"}
    assert "3 dependencies written" in result.detail


def test_a_type_the_hub_may_not_write_stays_logical(
    emr: SandboxEmr, make_connector: MakeConnector, rsa_key: rsa.RSAPrivateKey
) -> None:
    emr.register_client("referrals-only", public_pem(rsa_key), "system/*.rs system/ServiceRequest.cu", kid="rsa-1")
    connector = make_connector(client_id="referrals-only", scope="system/*.rs system/ServiceRequest.cu")
    result = connector.send(make_delivery("job-1", in_context(referral(), patient())))

    assert [(r.method, r.path, r.status) for r in emr.requests] == [
        ("GET", "/fhir/Patient", 200), ("PUT", "/fhir/Patient", 403), ("PUT", "/fhir/ServiceRequest", 201)]
    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"] == {"display": "the patient", "type": "Patient",
                                 "identifier": {"system": "urn:therapy-hub:id", "value": "p1"}}
    assert "1 logical" in result.detail


def test_a_refused_write_makes_a_retry_look_the_ids_up_again(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    connector.send(make_delivery("job-1", in_context(referral(), patient())))
    emr.reset()  # the EMR lost the Patient (merged away, restored from a backup...): the cache is stale

    with pytest.raises(PermanentError) as caught:
        connector.send(make_delivery("job-2", in_context(referral(status="on-hold"), patient())))
    assert caught.value.status == 400
    assert str(caught.value).endswith("-> 400 Bad Request: processing")

    result = connector.send(make_delivery("job-2", in_context(referral(status="on-hold"), patient())))
    assert "1 dependencies written" in result.detail
    [stored_patient] = emr.resources("Patient")
    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"]["reference"] == f"Patient/{stored_patient['id']}" and stored["status"] == "on-hold"


def test_the_cache_is_bounded(
    emr: SandboxEmr, make_connector: MakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("connectors.fhir_emr.connector.REFERENCE_CACHE_SIZE", 2)
    connector = make_connector()
    for n in range(3):
        connector.send(make_delivery(f"job-{n}", in_context(referral(f"sr{n}", f"R-{n}"), patient())))
    assert len(connector._emr_ids) == 2
    assert [key[0] for key in connector._emr_ids] == ["Patient", "ServiceRequest"]  # least recently used out


def test_keep_mode_sends_hub_ids(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    emr.configure(check_references=False)  # an EMR that mirrors the hub's ids
    connector = make_connector(reference_mode="keep")
    connector.send(make_delivery("job-1", in_context(referral(), patient())))

    [stored] = emr.resources("ServiceRequest")
    assert stored["subject"] == {"reference": "Patient/p1", "display": "the patient"}
    assert emr.resources("Patient") == [] and [r.method for r in emr.requests] == ["PUT"]
    with pytest.raises(ConfigError, match="reference_mode"):
        make_connector(reference_mode="guess")


def test_a_malformed_context_bundle_is_refused_without_a_request(
    emr: SandboxEmr, make_connector: MakeConnector
) -> None:
    empty = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": []}).encode()
    without_id = json.dumps({"resourceType": "Bundle", "type": "collection",
                             "entry": [{"resource": {"resourceType": "Patient"}}]}).encode()
    for payload in (empty, without_id):
        with pytest.raises(PermanentError, match="payload is not a FHIR resource with an id"):
            make_connector().send(make_delivery(payload=payload))
    assert emr.requests == []


def test_the_sandbox_refuses_a_dangling_reference(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    with pytest.raises(PermanentError) as caught:  # hub ids sent as they are: nothing on the EMR
        make_connector(reference_mode="keep").send(make_delivery(payload=body(referral())))
    assert caught.value.status == 400
    assert str(caught.value).endswith("-> 400 Bad Request: processing")

    emr.configure(require_token=False)
    headers = {"Content-Type": "application/fhir+json"}
    task = {"resourceType": "Task", "status": "requested", "intent": "order",
            "identifier": [{"system": "urn:s", "value": "1"}],
            "basedOn": [{"reference": "ServiceRequest/x/_history/2"}]}
    with httpx.Client(base_url=emr.url, trust_env=False, headers=headers) as http:
        refused = http.put("/Task", params={"identifier": "urn:s|1"}, json=task)
        assert refused.status_code == 400
        [issue] = refused.json()["issue"]
        assert issue["code"] == "processing"
        assert issue["diagnostics"] == "Task.basedOn: ServiceRequest/x not found"
        assert http.post("/Task", json=task).status_code == 400
        assert http.put("/Task/t1", json=task | {"id": "t1"}).status_code == 400
        emr.seed({"resourceType": "ServiceRequest", "id": "x", "status": "active", "intent": "order"})
        assert http.put("/Task", params={"identifier": "urn:s|1"}, json=task).status_code == 201
        itself = task | {"id": "t2", "partOf": [{"reference": "Task/t2"}],
                         "focus": {"reference": "Binary-less/none"},
                         "owner": {"reference": "Device/not-served"}}
        assert http.put("/Task/t2", json=itself).status_code == 201  # itself, a bad type, an unserved type
        emr.configure(check_references=False)
        unchecked = task | {"id": "t3", "focus": {"reference": "Patient/nobody"}}
        assert http.put("/Task/t3", json=unchecked).status_code == 201


# ------------------------------------------------------------------------------- poll references


def test_poll_returns_references_the_hub_can_resolve(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    emr.seed({"resourceType": "Patient", "id": "emr-p",
              "identifier": [{"system": "urn:x", "value": "X"}, {"system": "urn:emr:mrn", "value": "M1"}]})
    emr.seed({"resourceType": "ServiceRequest", "id": "emr-sr", "status": "active", "intent": "order",
              "identifier": [{"system": "urn:emr:referral", "value": "R-1"}],
              "subject": {"reference": "Patient/emr-p"}})
    emr.seed({"resourceType": "Organization", "id": "emr-o",
              "identifier": [{"system": "urn:emr:npi", "value": "N"}, {"system": "urn:therapy-hub:id", "value": "o1"}]})
    task = {"resourceType": "Task", "id": "emr-t", "status": "accepted", "intent": "order",
            "identifier": [{"system": "urn:emr:referral", "value": "R-1"}],
            "focus": {"reference": "ServiceRequest/emr-sr", "display": "the referral"},
            "for": {"reference": f"{emr.url}/Patient/emr-p"},
            "owner": {"reference": "Organization/emr-o/_history/1"},
            "requester": {"reference": "Practitioner/not-there"},
            "input": [{"type": {"text": "d"}, "valueReference": {"reference": "Device/emr-d"}}],  # not served
            "basedOn": [{"reference": "#x"}], "contained": [{"resourceType": "Patient", "id": "x"}]}
    emr.seed(task)
    connector = make_connector(resource_types=["Task"])
    [item] = connector.poll(None, 10).items
    polled = json.loads(item.payload)

    assert item.external_id == "Task/emr-t/_history/1"
    assert polled["identifier"] == [{"system": "urn:hub:referral", "value": "R-1"}]
    assert polled["focus"] == {"display": "the referral", "type": "ServiceRequest",
                               "identifier": {"system": "urn:hub:referral", "value": "R-1"}}
    assert polled["for"] == {"type": "Patient", "identifier": {"system": "urn:hub:mrn", "value": "M1"}}
    assert polled["owner"] == {"type": "Organization", "identifier": {"system": "urn:therapy-hub:id", "value": "o1"}}
    assert polled["requester"] == {"type": "Practitioner",
                                   "identifier": {"system": f"{emr.url}/Practitioner", "value": "not-there"}}
    assert polled["input"][0]["valueReference"] == {
        "type": "Device", "identifier": {"system": f"{emr.url}/Device", "value": "emr-d"}}
    assert polled["basedOn"] == [{"reference": "#x"}]
    reads = [r.path for r in emr.requests if r.method == "GET" and r.path.count("/") == 3]
    assert sorted(reads) == ["/fhir/Device/emr-d", "/fhir/Organization/emr-o", "/fhir/Patient/emr-p",
                             "/fhir/Practitioner/not-there", "/fhir/ServiceRequest/emr-sr"]

    # the hub turns them into its own ids (hub.sync.polling), here with the hub's resources faked
    hub = {("ServiceRequest", "urn:hub:referral", "R-1"): ["sr1"], ("Patient", "urn:hub:mrn", "M1"): ["p1"]}
    resolved = resolve_references(polled, find=lambda t, s, v: hub.get((t, s, v), []),
                                  exists=lambda t, i: (t, i) == ("Organization", "o1"))
    assert resolved["focus"]["reference"] == "ServiceRequest/sr1" and resolved["for"]["reference"] == "Patient/p1"
    assert resolved["owner"]["reference"] == "Organization/o1"
    assert "reference" not in resolved["requester"] and "reference" not in resolved["input"][0]["valueReference"]

    with make_connector(resource_types=["Task"], reference_mode="keep") as keeping:
        [kept] = keeping.poll(None, 10).items
    assert json.loads(kept.payload)["focus"] == {"reference": "ServiceRequest/emr-sr", "display": "the referral"}


def test_poll_reads_each_referenced_resource_once(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    emr.seed({"resourceType": "Patient", "id": "emr-p", "identifier": [{"system": "urn:emr:mrn", "value": "M1"}]})
    for n in range(3):
        emr.seed({"resourceType": "Task", "id": f"t{n}", "status": "requested", "intent": "order",
                  "for": {"reference": "Patient/emr-p"}, "owner": {"reference": "Patient/emr-p"}})
    items = make_connector(resource_types=["Task"]).poll(None, 10).items
    assert len(items) == 3
    assert all(json.loads(i.payload)["for"]["identifier"] == {"system": "urn:hub:mrn", "value": "M1"} for i in items)
    assert [r.path for r in emr.requests if r.path == "/fhir/Patient/emr-p"] == ["/fhir/Patient/emr-p"]


# -------------------------------------------------------------------------------- rate limits


def test_429_with_retry_after_is_transient(
    emr: SandboxEmr, make_connector: MakeConnector, clock: Clock
) -> None:
    emr.configure(rate_limit=2, rate_window=30)
    connector = make_connector()
    connector.send(make_delivery("job-1", body(patient("p1", "M1"))))
    connector.send(make_delivery("job-2", body(patient("p2", "M2"))))
    clock.advance(10)

    with pytest.raises(TransientError) as caught:
        connector.send(make_delivery("job-3", body(patient("p3", "M3"))))
    assert caught.value.status == 429 and caught.value.retry_after == 20.0
    assert str(caught.value).endswith("-> 429 Too Many Requests: throttled")

    clock.advance(20)
    assert connector.send(make_delivery("job-3", body(patient("p3", "M3")))).status == 201

    emr.configure(rate_limit=None, status_override=429, retry_after=5)
    with pytest.raises(TransientError) as injected:
        connector.poll(None, 10)
    assert injected.value.retry_after == 5.0


# ------------------------------------------------------------------------- config, registry


def test_registry_and_health(emr: SandboxEmr, rsa_key: rsa.RSAPrivateKey) -> None:
    registry.default_registry.cache_clear()
    assert registry.get("fhir_emr") is FhirEmrConnector
    config = {"base_url": emr.url, "client_id": "hub", "key_id": "rsa-1", "private_key": private_pem(rsa_key)}
    connector = registry.create("fhir_emr", config)
    try:
        assert isinstance(connector, Connector) and isinstance(connector, Poller)
        result = connector.health()
        assert result.ok and "CapabilityStatement" in result.detail
    finally:
        connector.close()

    with FhirEmrConnector({**config, "client_id": "stranger"}) as refused:
        result = refused.health()
        assert not result.ok and "invalid_client" in result.detail


def test_config_validation_never_shows_the_key(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    pem = private_pem(rsa_key)
    config = registry.validate_config(
        "fhir_emr",
        {"base_url": "https://emr.example/fhir", "client_id": "hub", "key_id": "k", "private_key": pem},
    )
    assert isinstance(config, FhirEmrConfig) and config.algorithm == "RS384"
    assert config.scope.split() == [
        "system/*.rs",
        "system/Patient.cu",
        "system/ServiceRequest.cu",
        "system/Task.cu",
        "system/CarePlan.cu",
    ]
    assert pem not in repr(config) and "PRIVATE" not in str(config.model_dump())

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"private_key": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"},
            "private_key",
        ),
        ({"private_key": private_pem(ec_key)}, "private_key"),  # EC with RS384
        ({"private_key": pem, "algorithm": "ES384"}, "private_key"),
        ({"private_key": private_pem(small)}, "private_key"),
        ({"algorithm": "HS256"}, "algorithm"),
        ({"bearer_token": "static"}, "bearer_token"),
        ({"scope": 'system/*.rs "quoted"'}, "scope"),
        ({"identifier_system_map": {"urn:a": "urn:x", "urn:b": "urn:x"}}, "identifier_system_map"),
        ({"token_url": "http://emr.example/token"}, "token_url"),  # http token URL for an https EMR
    ]
    for change, field in cases:
        settings = {
            "base_url": "https://emr.example/fhir",
            "client_id": "hub",
            "key_id": "k",
            "private_key": pem,
        }
        with pytest.raises(ConfigError) as caught:
            registry.validate_config("fhir_emr", settings | change)
        assert field in caught.value.fields, (change, caught.value)
        assert "PRIVATE KEY" not in str(caught.value) and "bm90IGEga2V5" not in str(caught.value)
    ok = registry.validate_config(
        "fhir_emr",
        {"base_url": "https://emr.example/fhir", "client_id": "c", "key_id": "k", "algorithm": "ES384"}
        | {"private_key": private_pem(ec_key)},
    )
    assert isinstance(ok, FhirEmrConfig)


def test_secrets_stay_out_of_reprs_and_errors(emr: SandboxEmr, make_connector: MakeConnector) -> None:
    connector = make_connector()
    connector.send(make_delivery(payload=body(patient())))
    token = emr.requests[-1].headers["authorization"].split()[1]
    emr.configure(status_override=422, diagnostics=f"echoing {token}")  # a careless server
    with pytest.raises(ConnectorError) as caught:
        connector.send(make_delivery("job-2", body(patient(name=[{"family": "Doe-Marker"}]))))
    text = repr(connector) + repr(connector.auth) + repr(connector.config) + repr(caught.value)
    assert "PRIVATE KEY" not in text and "Doe-Marker" not in text
    assert token not in repr(connector.auth) + repr(connector)


# ----------------------------------------------------------------------------------- sandbox


def test_sandbox_conditional_interactions(emr: SandboxEmr) -> None:
    emr.configure(require_token=False)
    headers = {"Content-Type": "application/fhir+json"}
    task = {"resourceType": "Task", "status": "requested", "identifier": [{"system": "urn:s", "value": "1"}]}
    with httpx.Client(base_url=emr.url, trust_env=False, headers=headers) as http:
        assert http.put("/Task", params={"identifier": "urn:s|1"}, json=task).status_code == 201
        assert http.put("/Task", params={"identifier": "urn:s|1"}, json=task).status_code == 200
        assert (
            http.put("/Task", params={"identifier": "urn:s|2"}, json=task).status_code == 400
        )  # not in body
        assert http.put("/Task", params={"identifier": "1"}, json=task | {"id": "other"}).status_code == 400
        assert http.put("/Task", params={"status": "x"}, json=task).status_code == 400
        assert http.put("/Task", json=task).status_code == 400
        assert http.put("/Task", params={"identifier": "urn:s|1,2"}, json=task).status_code == 400
        stale = http.put("/Task", params={"identifier": "urn:s|1"}, json=task, headers={"If-Match": 'W/"1"'})
        assert stale.status_code == 412

        exists = http.post("/Task", json=task, headers={"If-None-Exist": "identifier=urn:s|1"})
        assert exists.status_code == 200 and exists.json()["id"] == "s000001"
        fresh = http.post("/Task", json=task, headers={"If-None-Exist": "identifier=urn:s|9"})
        assert fresh.status_code == 201 and fresh.json()["id"] == "s000002"
        both = http.post("/Task", json=task, headers={"If-None-Exist": "identifier=urn:s|1"})
        assert both.status_code == 412  # two resources carry urn:s|1 now

    smart = httpx.get(emr.url + "/.well-known/smart-configuration", trust_env=False).json()
    assert smart["token_endpoint"] == emr.token_url
    assert smart["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    summary = httpx.get(emr.root + "/_requests", trust_env=False).json()
    assert summary["clients"] == ["hub", "hub-ec", "narrow"]
    emr.reset()
    assert emr.controls.require_token and emr.resources("Task") == []


def test_sandbox_emr_runs_as_a_process(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    key_file = tmp_path / "hub.pub.pem"
    key_file.write_text(public_pem(rsa_key))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandboxes.emr",
            "--port",
            "0",
            "--client-id",
            "hub",
            "--public-key",
            str(key_file),
            "--kid",
            "rsa-1",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/fhir"), (
            process.stderr.read() if process.stderr else ""
        )
        config = {"base_url": url, "client_id": "hub", "key_id": "rsa-1", "private_key": private_pem(rsa_key)}
        with FhirEmrConnector(config) as connector:
            assert connector.send(make_delivery(payload=body(patient()))).status == 201
            [item] = connector.poll(None, 10).items
            assert item.external_id == "Patient/s000001/_history/1"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
