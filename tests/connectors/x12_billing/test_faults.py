"""How the clearinghouse connector fails: pinned host keys, credentials, dropped lines, slow and busy partners."""

from __future__ import annotations

from collections.abc import Callable

import asyncssh
import pytest

from connectors.base import AuthError, ConfigError, PermanentError, TransientError
from connectors.x12_billing import X12BillingConnector, host_key_fingerprint
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.connectors.conftest import free_port
from tests.connectors.x12_billing.claims import simple_file

Connect = Callable[..., X12BillingConnector]


def _other_key_line() -> str:
    return " ".join(asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().split()[:2])


def test_pinned_host_key_as_line_or_fingerprint(house: SandboxClearinghouse, connect: Connect) -> None:
    assert host_key_fingerprint(house.host_key_line) == house.host_key_fingerprint
    assert host_key_fingerprint(f"[127.0.0.1]:{house.sftp_port} {house.host_key_line}") == house.host_key_fingerprint
    connector = connect("sftp", sftp={"known_host_key": house.host_key_fingerprint})
    assert connector.submit("claims.837", simple_file(), "k-1").size > 0


@pytest.mark.parametrize("pin", ["line", "fingerprint"])
def test_an_unknown_host_key_is_refused(house: SandboxClearinghouse, connect: Connect, pin: str) -> None:
    other = _other_key_line()
    connector = connect("sftp", sftp={"known_host_key": other if pin == "line" else host_key_fingerprint(other)})
    with pytest.raises(ConfigError) as refused:
        connector.submit("claims.837", simple_file(), "k-1")
    assert "host key" in str(refused.value) and refused.value.fields == ("sftp.known_host_key",)
    assert house.claim_files == [] and house.inbound() == []  # nothing was written to an unverified host


def test_wrong_password_is_an_auth_error(house: SandboxClearinghouse, connect: Connect) -> None:
    connector = connect("sftp", sftp={"password": "not-the-password"})
    with pytest.raises(AuthError) as refused:
        connector.submit("claims.837", simple_file(), "k-1")
    assert "not-the-password" not in str(refused.value) and house.auth_failures >= 1
    assert not connector.health().ok


@pytest.mark.parametrize("transport", ["sftp", "https"])
def test_refused_auth_is_an_auth_error(house: SandboxClearinghouse, connect: Connect, transport: str) -> None:
    house.configure(refuse_auth=True)
    connector = connect(transport)
    with pytest.raises(AuthError) as refused:
        connector.poll_responses()
    assert house.password not in str(refused.value) and house.token not in str(refused.value)


def test_wrong_bearer_token_is_an_auth_error(connect: Connect) -> None:
    with pytest.raises(AuthError) as refused:
        connect("https", https={"bearer_token": "wrong-token-123"}).submit("claims.837", simple_file(), "k-1")
    assert refused.value.status == 401 and "wrong-token" not in str(refused.value)


def test_a_line_dropped_mid_upload_is_transient_and_leaves_no_claim_file(
        house: SandboxClearinghouse, connect: Connect) -> None:
    connector = connect("sftp")
    content = simple_file()
    house.configure(drop_after_bytes=len(content) // 2)
    with pytest.raises(TransientError) as dropped:
        connector.submit("claims.837", content, "k-drop")
    assert b"ISA" not in str(dropped.value).encode()
    assert house.claim_files == []  # the half file was never taken as a claim file
    assert all(name.startswith(".") and name.endswith(".part") for name in house.inbound())

    house.configure(drop_after_bytes=None)
    connector.submit("claims.837", content, "k-drop")  # the retry replaces the partial file
    [record] = house.claim_files
    assert record.size == len(content) and record.accepted_sets == 1
    assert house.inbound() == [] and house.duplicates == 0


def test_a_dropped_http_upload_is_transient(house: SandboxClearinghouse, connect: Connect) -> None:
    house.configure(drop_after_bytes=100)
    with pytest.raises(TransientError):
        connect("https").submit("claims.837", simple_file(), "k-1")
    assert house.claim_files == []


def test_503_is_transient_with_retry_after(house: SandboxClearinghouse, connect: Connect) -> None:
    house.configure(status_override=503, retry_after=7)
    connector = connect("https")
    with pytest.raises(TransientError) as busy:
        connector.submit("claims.837", simple_file(), "k-1")
    assert busy.value.status == 503 and busy.value.retry_after == 7
    house.configure(status_override=None)
    assert connector.submit("claims.837", simple_file(), "k-1").status == 202


def test_a_4xx_is_permanent(house: SandboxClearinghouse, connect: Connect) -> None:
    house.configure(status_override=422)
    with pytest.raises(PermanentError) as refused:
        connect("https").poll_responses()
    assert not isinstance(refused.value, TransientError | AuthError) and refused.value.status == 422


@pytest.mark.parametrize("transport", ["sftp", "https"])
def test_a_slow_clearinghouse_times_out_as_transient(house: SandboxClearinghouse, connect: Connect,
                                                     transport: str) -> None:
    house.configure(slow_seconds=3)
    connector = connect(transport, timeout_seconds=0.5)
    with pytest.raises(TransientError) as slow:
        connector.poll_responses()
    assert "timed out" in str(slow.value)


@pytest.mark.parametrize("transport", ["sftp", "https"])
def test_connection_refused_is_transient(house: SandboxClearinghouse, transport: str) -> None:
    port = free_port()
    overrides = {"sftp": {"port": port}} if transport == "sftp" else {"https": {"base_url": f"http://127.0.0.1:{port}"}}
    with X12BillingConnector(house.connector_config(transport, **overrides)) as connector:  # type: ignore[arg-type]
        with pytest.raises(TransientError):
            connector.submit("claims.837", simple_file(), "k-1")
        assert not connector.health().ok


def test_config_errors_name_fields_never_values(house: SandboxClearinghouse) -> None:
    with pytest.raises(ConfigError) as missing:
        X12BillingConnector({"transport": "sftp"})
    assert "sftp" in str(missing.value)
    config = house.connector_config("sftp", sftp={"known_host_key": "secret-looking-garbage-value"})
    with pytest.raises(ConfigError) as bad_key:
        X12BillingConnector(config)  # type: ignore[arg-type]
    assert "sftp.known_host_key" in bad_key.value.fields and "garbage" not in str(bad_key.value)
    no_credentials = house.connector_config("sftp")
    del no_credentials["sftp"]["password"]
    with pytest.raises(ConfigError):
        X12BillingConnector(no_credentials)  # type: ignore[arg-type]
    with pytest.raises(PermanentError):
        X12BillingConnector(house.connector_config("sftp")).submit("claims.837", b"not x12", "k-1")
