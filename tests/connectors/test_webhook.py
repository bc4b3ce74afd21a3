"""The webhook connector against the real sandbox receiver on 127.0.0.1."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import time
from collections.abc import Callable

import pytest

from connectors.base import (
    AuthError,
    Connector,
    ConnectorError,
    Delivery,
    HealthChecker,
    PermanentError,
    Poller,
    Sender,
    TransientError,
    supports_polling,
)
from connectors.httputil import excerpt, parse_retry_after, safe_target
from connectors.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConfig,
    WebhookConnector,
    sign,
    signature_header,
    verify_signature,
)
from sandboxes.webhook import SandboxReceiver
from tests.connectors.conftest import PAYLOAD, SECRET, free_port, make_delivery

MakeConnector = Callable[..., WebhookConnector]


# ----------------------------------------------------------------------------------- success


def test_delivery_is_signed_and_accepted(sandbox: SandboxReceiver, make_connector: MakeConnector) -> None:
    result = make_connector(sandbox.url).send(make_delivery("job-1"))

    assert result.status == 200
    assert result.remote_id == "dlv-000001"
    assert result.duration_ms > 0
    assert "200" in result.detail and PAYLOAD.decode() not in result.detail
    [received] = sandbox.deliveries
    assert received.signature_valid is True
    assert received.body == PAYLOAD
    assert sandbox.rejected == []


def test_request_headers(sandbox: SandboxReceiver, make_connector: MakeConnector) -> None:
    before = int(time.time())
    make_connector(sandbox.url).send(make_delivery("job-42"))

    [received] = sandbox.deliveries
    headers = received.headers
    assert headers["content-type"] == "application/fhir+json"
    assert headers["idempotency-key"] == "job-42"
    assert headers["x-correlation-id"] == "corr-123"
    assert headers["x-hub-event"] == "ServiceRequest.create"
    timestamp = headers[TIMESTAMP_HEADER.lower()]
    assert before <= int(timestamp) <= time.time() + 1
    assert headers[SIGNATURE_HEADER.lower()] == f"v1={sign(SECRET, timestamp, PAYLOAD, idempotency_key='job-42')}"
    assert headers["user-agent"].startswith("therapy-hub-webhook/")
    assert (received.idempotency_key, received.event, received.correlation_id) == (
        "job-42",
        "ServiceRequest.create",
        "corr-123",
    )


def test_repeated_key_is_deduped_by_the_receiver(
    sandbox: SandboxReceiver, make_connector: MakeConnector
) -> None:
    connector = make_connector(sandbox.url)
    results = [connector.send(make_delivery("job-7")) for _ in range(3)]
    connector.send(make_delivery("job-8"))

    assert {r.remote_id for r in results} == {"dlv-000001"}
    assert [d.idempotency_key for d in sandbox.deliveries] == ["job-7", "job-8"]
    assert sandbox.duplicates == 2
    assert sandbox.duplicate_keys == {"job-7": 2}


def test_retry_after_a_lost_response_is_a_duplicate(
    sandbox: SandboxReceiver, make_connector: MakeConnector
) -> None:
    """The partner processed the request but answered too late: the retry must not double-deliver."""
    connector = make_connector(sandbox.url, timeout_seconds=0.2)
    sandbox.configure(hang_rate=1.0, hang_seconds=0.5)
    with pytest.raises(TransientError):
        connector.send(make_delivery("job-9"))
    sandbox.configure(hang_rate=0.0)
    assert sandbox.wait_for_deliveries(1, timeout=3)

    result = connector.send(make_delivery("job-9"))

    assert result.status == 200
    assert len(sandbox.deliveries) == 1 and sandbox.duplicates == 1


# ------------------------------------------------------------------------------------ errors


def test_503_with_retry_after_seconds_is_transient(
    sandbox: SandboxReceiver, make_connector: MakeConnector
) -> None:
    sandbox.configure(fail_rate=1.0, retry_after=7)
    with pytest.raises(TransientError) as caught:
        make_connector(sandbox.url).send(make_delivery())
    error = caught.value
    assert error.status == 503 and error.retry_after == 7.0 and error.retryable
    assert "503 Service Unavailable" in str(error)
    assert error.duration_ms is not None
    assert sandbox.deliveries == []


def test_429_with_retry_after_http_date_is_transient(
    sandbox: SandboxReceiver, make_connector: MakeConnector
) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    sandbox.configure(fail_keys={"job-1": 429}, retry_after=when)
    with pytest.raises(TransientError) as caught:
        make_connector(sandbox.url).send(make_delivery("job-1"))
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and 115 <= caught.value.retry_after <= 121


@pytest.mark.parametrize("status", [408, 500, 502, 504])
def test_other_transient_statuses(
    sandbox: SandboxReceiver, make_connector: MakeConnector, status: int
) -> None:
    sandbox.configure(fail_keys={"job-1": status})
    with pytest.raises(TransientError) as caught:
        make_connector(sandbox.url).send(make_delivery("job-1"))
    assert caught.value.status == status and caught.value.retry_after is None


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_4xx_is_permanent(sandbox: SandboxReceiver, make_connector: MakeConnector, status: int) -> None:
    sandbox.configure(status_override=status)
    with pytest.raises(PermanentError) as caught:
        make_connector(sandbox.url).send(make_delivery())
    assert not isinstance(caught.value, AuthError)
    assert caught.value.status == status and not caught.value.retryable


def test_wrong_secret_is_an_auth_error(sandbox: SandboxReceiver, make_connector: MakeConnector) -> None:
    with pytest.raises(AuthError) as caught:
        make_connector(sandbox.url, secret="another-secret-of-some-length").send(make_delivery())
    assert caught.value.status == 401
    assert isinstance(caught.value, PermanentError)
    [rejected] = sandbox.rejected
    assert rejected.signature_valid is False and sandbox.deliveries == []


def test_stale_timestamp_is_rejected_by_the_receiver(
    sandbox: SandboxReceiver, make_connector: MakeConnector
) -> None:
    connector = make_connector(sandbox.url, clock=lambda: time.time() - 3600)
    with pytest.raises(AuthError):
        connector.send(make_delivery())
    assert len(sandbox.rejected) == 1


def test_403_is_an_auth_error(sandbox: SandboxReceiver, make_connector: MakeConnector) -> None:
    sandbox.configure(fail_keys={"job-1": 403})
    with pytest.raises(AuthError) as caught:
        make_connector(sandbox.url).send(make_delivery("job-1"))
    assert caught.value.status == 403


def test_hanging_partner_times_out_quickly(sandbox: SandboxReceiver, make_connector: MakeConnector) -> None:
    sandbox.configure(hang_rate=1.0, hang_seconds=5)
    connector = make_connector(sandbox.url, timeout_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        connector.send(make_delivery())
    assert time.monotonic() - started < 2
    assert "timed out" in str(caught.value) and caught.value.status is None
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_connection_refused_is_transient(make_connector: MakeConnector) -> None:
    connector = make_connector(f"http://127.0.0.1:{free_port()}/hook")
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        connector.send(make_delivery())
    assert time.monotonic() - started < 2
    assert "ConnectError" in str(caught.value)


def test_errors_carry_no_payload_nor_secret(sandbox: SandboxReceiver, make_connector: MakeConnector) -> None:
    marker = b'{"resourceType":"Patient","name":[{"family":"Doe-Marker"}]}'
    sandbox.configure(status_override=400)
    connector = make_connector(sandbox.url + "/hooks/secret-token-in-path?sig=abc")
    with pytest.raises(ConnectorError) as caught:
        connector.send(make_delivery(payload=marker))
    text = str(caught.value) + repr(caught.value) + repr(connector) + repr(connector.config)
    assert "Doe-Marker" not in text
    assert SECRET not in text
    assert "secret-token-in-path" not in text and "sig=abc" not in text
    assert "400 Bad Request" in str(caught.value)
    assert "Doe-Marker" not in repr(make_delivery(payload=marker))


def test_excerpt_is_short_single_line_and_printable() -> None:
    body = ("line one\r\n\x00\x1b[31m" + "x" * 500).encode() + b"\xff\xfe"
    text = excerpt(body)
    assert len(text) <= 200
    assert text.startswith("line one ") and text.endswith("...")
    assert all(32 <= ord(ch) < 127 for ch in text)


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0.0


def test_safe_target_drops_credentials_path_and_query() -> None:
    assert safe_target("https://user:pw@partner.example:8443/a/b?token=x") == "https://partner.example:8443"


# ------------------------------------------------------------------------------------ health


def test_health(sandbox: SandboxReceiver, make_connector: MakeConnector) -> None:
    connector = make_connector(sandbox.url + "/hook")
    assert connector.health().ok is True

    sandbox.configure(status_override=404)
    assert connector.health().ok is True  # reachable: anything below 500 is fine

    sandbox.configure(status_override=503)
    result = connector.health()
    assert result.ok is False and "503" in result.detail


def test_health_uses_health_url_and_never_raises(
    sandbox: SandboxReceiver, make_connector: MakeConnector
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    connector = make_connector(down, health_url=sandbox.url + "/status", health_method="GET")
    assert connector.health().ok is True

    unreachable = make_connector(down).health()
    assert unreachable.ok is False and "ConnectError" in unreachable.detail


# ---------------------------------------------------------------------------- the contract


def test_connector_satisfies_the_protocols(make_connector: MakeConnector) -> None:
    connector = make_connector("http://127.0.0.1:9/")
    assert isinstance(connector, Sender) and isinstance(connector, HealthChecker)
    assert isinstance(connector, Connector)
    assert not isinstance(connector, Poller) and not supports_polling(connector)
    assert WebhookConnector.slug == "webhook" and WebhookConnector.Config is WebhookConfig


def test_connector_is_a_context_manager(sandbox: SandboxReceiver) -> None:
    with WebhookConnector({"url": sandbox.url, "secret": SECRET}) as connector:
        assert connector.send(make_delivery()).status == 200
    assert connector._client.is_closed


@pytest.mark.parametrize(
    "overrides",
    [
        {"idempotency_key": ""},
        {"idempotency_key": "a\r\nX-Evil: 1"},
        {"event": "x\n"},
        {"correlation_id": "c" * 300},
        {"payload": "not bytes"},
    ],
)
def test_delivery_rejects_unsafe_values(overrides: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        make_delivery(**overrides)  # type: ignore[arg-type]


def test_delivery_is_frozen() -> None:
    delivery = make_delivery()
    with pytest.raises(AttributeError):
        delivery.idempotency_key = "other"  # type: ignore[misc]
    assert isinstance(delivery, Delivery)


# ------------------------------------------------------------------------------- signatures


def test_verify_signature() -> None:
    now = 1_700_000_000
    body = b'{"resourceType":"Task"}'
    key = "job-42"
    header = signature_header(SECRET, now, body, idempotency_key=key)
    assert header.startswith("v1=")

    def verify(secret: str | bytes = SECRET, ts: str | int | None = str(now), data: bytes = body,
               value: str | None = header, k: str | None = key, **options: float) -> bool:
        return verify_signature(secret, ts, data, value, idempotency_key=k, **{"now": now, **options})

    assert verify()
    assert verify(SECRET.encode(), now, now=now + 299)
    assert not verify("wrong-secret-wrong-secret")
    assert not verify(data=body + b" ")  # tampered body
    assert not verify(ts=str(now + 1))  # tampered timestamp
    assert not verify(k="job-43")  # the same signature under another Idempotency-Key
    assert not verify(k=None)
    assert not verify(now=now + 301)  # stale
    assert not verify(now=now - 301)  # from the future
    assert not verify(tolerance_seconds=10, now=now + 11)
    assert not verify(ts=None)
    assert not verify(ts="soon")
    assert not verify(value=None)
    assert not verify(value=header.removeprefix("v1="))
    assert not verify(value="v1=zz\u00e9")
    # the scheme that did not cover the key is not accepted any more
    legacy = "sha256=" + hmac.new(SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert not verify(value=legacy)


def test_the_signed_parts_cannot_be_shifted_into_one_another() -> None:
    now = 1_700_000_000
    header = signature_header(SECRET, now, b"b.{}", idempotency_key="a")
    assert not verify_signature(SECRET, now, b"{}", header, idempotency_key="a\nb.", now=now)
    assert not verify_signature(SECRET, now, b"{}", header, idempotency_key="a.b", now=now)
    with pytest.raises(ValueError):
        signature_header(SECRET, now, b"{}", idempotency_key="two\nlines")


def test_verify_signature_accepts_any_of_several_signatures() -> None:
    """Secret rotation: the sender may sign with the old and the new secret."""
    now = 1_700_000_000
    body = b"{}"
    old, new = (signature_header(s, now, body, idempotency_key="k") for s in ("old-secret-old-secret", SECRET))
    header = f"{old}, {new}"
    assert verify_signature(SECRET, now, body, header, now=now, idempotency_key="k")
    assert not verify_signature("third-secret-third-secret", now, body, header, now=now, idempotency_key="k")
