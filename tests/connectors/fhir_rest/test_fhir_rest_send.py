"""The FHIR REST connector's sends: creates, updates, dedup, error statuses and auth."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import pytest

from connectors.base import (
    AuthError,
    PermanentError,
    TransientError,
)
from connectors.fhir_rest import BearerTokenAuth, NoAuth
from sandboxes.fhir import SandboxFhirServer
from tests.connectors.conftest import free_port, make_delivery
from tests.connectors.fhir_rest.conftest import TOKEN, MakeConnector, payload

# ------------------------------------------------------------------------------------- send


def test_send_creates_with_our_id(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    body = b'{"resourceType":"Patient","id":"p1","extension":[{"url":"u","valueDecimal":1.50}]}'
    result = make_connector(emr.url).send(make_delivery("job-1", body, correlation_id="corr-9"))

    assert result.status == 201 and result.remote_id == "p1"
    assert "Patient/p1 -> 201" in result.detail and "version 1" in result.detail
    assert "1.50" not in result.detail and result.duration_ms > 0
    [stored] = emr.resources("Patient")
    assert stored["id"] == "p1" and stored["meta"]["versionId"] == "1"
    [request] = emr.requests
    assert (request.method, request.path, request.idempotency_key) == ("PUT", "/fhir/Patient/p1", "job-1")
    assert request.body == body  # sent unchanged
    headers = request.headers
    assert headers["content-type"] == "application/fhir+json"
    assert headers["accept"] == "application/fhir+json"
    assert headers["x-correlation-id"] == "corr-9"
    assert headers["user-agent"].startswith("therapy-hub-fhir-rest/")
    assert "authorization" not in headers


def test_send_updates_as_a_new_version(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    connector = make_connector(emr.url)
    connector.send(make_delivery("job-1", payload(gender="female")))
    result = connector.send(make_delivery("job-2", payload(gender="other")))

    assert result.status == 200 and result.remote_id == "p1" and "version 2" in result.detail
    # what the server now holds, named as poll() will name it: the hub skips it when it comes back
    assert result.written == ("Patient/p1/_history/2",)
    [polled] = connector.poll(None, 10).items
    assert polled.external_id in result.written
    assert [v["gender"] for v in emr.history("Patient", "p1")] == ["female", "other"]
    assert emr.resource("Patient", "p1")["meta"]["versionId"] == "2"  # type: ignore[index]


def test_repeated_key_is_deduped_by_the_server(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    connector = make_connector(emr.url)
    results = [connector.send(make_delivery("job-7", payload())) for _ in range(3)]

    assert [r.status for r in results] == [201, 201, 201]  # the first answer, replayed
    assert {r.remote_id for r in results} == {"p1"}
    assert len(emr.history("Patient", "p1")) == 1
    assert emr.duplicates == 2 and emr.duplicate_keys == {"job-7": 2}


def test_retry_after_a_lost_response_is_a_duplicate(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    """The server stored the resource but answered too late: the retry must not make a version 2."""
    connector = make_connector(emr.url, timeout_seconds=0.2)
    emr.configure(hang_rate=1.0, hang_seconds=0.5)
    with pytest.raises(TransientError):
        connector.send(make_delivery("job-9", payload()))
    emr.configure(hang_rate=0.0)
    assert emr.wait_for_requests(1, timeout=3)

    result = connector.send(make_delivery("job-9", payload()))

    assert result.status == 201
    assert len(emr.history("Patient", "p1")) == 1 and emr.duplicates == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'["Patient", "p1"]',
        b'{"resourceType": "Patient"}',
        b'{"id": "p1", "name": [{"family": "Doe"}]}',
        b'{"resourceType": "Patient", "id": "../metadata"}',
        b'{"resourceType": "Patient", "id": 12}',
        b'{"resourceType": "patient", "id": "p1"}',
        b"\xff\xfe",
    ],
)
def test_a_payload_that_is_not_a_fhir_resource_is_refused_without_a_request(
    emr: SandboxFhirServer, make_connector: MakeConnector, body: bytes
) -> None:
    for base in (emr.url, f"http://127.0.0.1:{free_port()}/fhir"):  # a request would be transient here
        with pytest.raises(PermanentError) as caught:
            make_connector(base).send(make_delivery(payload=body))
        assert str(caught.value) == "payload is not a FHIR resource with an id"
        assert caught.value.status is None
    assert emr.requests == []


# ----------------------------------------------------------------------------- send errors


def test_503_with_retry_after_is_transient(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(fail_rate=1.0, retry_after=7)
    with pytest.raises(TransientError) as caught:
        make_connector(emr.url).send(make_delivery())
    error = caught.value
    assert error.status == 503 and error.retry_after == 7.0 and error.retryable
    assert "503 Service Unavailable" in str(error) and error.duration_ms is not None
    assert emr.resources("Patient") == []


def test_429_with_an_http_date_is_transient(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    emr.configure(fail_keys={"job-1": 429}, retry_after=when)
    with pytest.raises(TransientError) as caught:
        make_connector(emr.url).send(make_delivery("job-1", payload()))
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and 115 <= caught.value.retry_after <= 121


@pytest.mark.parametrize("status", [408, 500, 502, 504])
def test_other_transient_statuses(emr: SandboxFhirServer, make_connector: MakeConnector, status: int) -> None:
    emr.configure(fail_keys={"job-1": status})
    with pytest.raises(TransientError) as caught:
        make_connector(emr.url).send(make_delivery("job-1", payload()))
    assert caught.value.status == status


def test_400_quotes_the_operation_outcome_but_not_the_payload(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    emr.configure(
        status_override=400,
        diagnostics="Patient.birthDate: invalid date\r\n\x1b[31m" + "x" * 500,
    )
    marker = payload(name=[{"family": "Doe-Marker"}], birthDate="1990-13-45")
    with pytest.raises(PermanentError) as caught:
        make_connector(emr.url).send(make_delivery(payload=marker))
    error = caught.value
    message = str(error)
    assert not isinstance(error, AuthError) and error.status == 400 and not error.retryable
    assert message.endswith("-> 400 Bad Request: processing")  # the issue code, not the server's free text
    assert "Doe-Marker" not in message and "1990-13-45" not in message and "birthDate" not in message
    assert all(32 <= ord(ch) < 127 for ch in message)
    assert len(message) < 300


def test_unknown_resource_type_is_permanent_with_the_issue_code(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    with pytest.raises(PermanentError) as caught:
        make_connector(emr.url).send(make_delivery(payload=payload("Spaceship", "x1")))
    assert caught.value.status == 404
    assert str(caught.value).endswith("-> 404 Not Found: not-supported")


def test_401_without_the_token_is_an_auth_error(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    emr.configure(bearer_token=TOKEN)
    with pytest.raises(AuthError) as caught:
        make_connector(emr.url).send(make_delivery(payload=payload()))
    assert caught.value.status == 401 and str(caught.value).endswith("401 Unauthorized: login")
    with pytest.raises(AuthError):
        make_connector(emr.url, bearer_token="a-wrong-token").send(make_delivery(payload=payload()))

    connector = make_connector(emr.url, bearer_token=TOKEN)
    assert connector.send(make_delivery(payload=payload())).status == 201
    assert emr.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(connector) + repr(connector.config) + str(connector.config.model_dump())


def test_403_is_an_auth_error(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(fail_keys={"job-1": 403})
    with pytest.raises(AuthError) as caught:
        make_connector(emr.url).send(make_delivery("job-1", payload()))
    assert caught.value.status == 403


def test_redirects_are_not_followed(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(status_override=307)
    with pytest.raises(PermanentError, match="redirects are not followed"):
        make_connector(emr.url).send(make_delivery(payload=payload()))


def test_hanging_server_times_out_quickly(emr: SandboxFhirServer, make_connector: MakeConnector) -> None:
    emr.configure(hang_rate=1.0, hang_seconds=5)
    connector = make_connector(emr.url, timeout_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        connector.send(make_delivery(payload=payload()))
    assert time.monotonic() - started < 2
    assert "timed out" in str(caught.value) and caught.value.status is None
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_connection_refused_is_transient(make_connector: MakeConnector) -> None:
    connector = make_connector(f"http://127.0.0.1:{free_port()}/fhir")
    with pytest.raises(TransientError, match="ConnectError"):
        connector.send(make_delivery(payload=payload()))
    with pytest.raises(TransientError, match="ConnectError"):
        connector.poll(None, 10)


class RotatingAuth:
    """A stand-in for an expiring-token scheme (SMART Backend Services): refreshes once on a 401."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.refreshes = 0

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.tokens[0]}"}

    def refresh(self) -> bool:
        self.refreshes += 1
        if len(self.tokens) > 1:
            self.tokens.pop(0)
            return True
        return False


def test_pluggable_auth_is_refreshed_once_after_a_401(
    emr: SandboxFhirServer, make_connector: MakeConnector
) -> None:
    emr.configure(bearer_token=TOKEN)
    auth = RotatingAuth(["expired-token", TOKEN])
    connector = make_connector(emr.url, auth=auth)

    assert connector.send(make_delivery("job-1", payload())).status == 201
    assert [r.status for r in emr.requests] == [401, 201] and auth.refreshes == 1

    stale = RotatingAuth(["expired-token"])  # nothing fresher to offer: the 401 is final
    with pytest.raises(AuthError):
        make_connector(emr.url, auth=stale).send(make_delivery("job-2", payload()))
    assert stale.refreshes == 1 and [r.status for r in emr.requests] == [401, 201, 401]


def test_auth_schemes_hide_their_secrets() -> None:
    assert NoAuth().headers() == {} and not NoAuth().refresh()
    auth = BearerTokenAuth(TOKEN)
    assert auth.headers() == {"Authorization": f"Bearer {TOKEN}"} and not auth.refresh()
    assert TOKEN not in repr(auth)
    with pytest.raises(ValueError) as caught:
        BearerTokenAuth("bad\r\ntoken")
    assert "bad" not in str(caught.value)
