"""Claim files to the sandbox clearinghouse and its answers back, over SFTP and over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from connectors.base import ConnectorError, Delivery
from connectors.x12_billing import X12_CONTENT_TYPE, X12BillingConnector, remote_name
from mappings.x12.reader import read_interchanges
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.connectors.x12_billing.claims import simple_file

Connect = Callable[..., X12BillingConnector]


@pytest.mark.parametrize("transport", ["sftp", "https"])
def test_submit_answers_poll_acknowledge(house: SandboxClearinghouse, connect: Connect, transport: str) -> None:
    connector = connect(transport)
    receipt = connector.submit("claims.837", simple_file(), "claim-batch-1")
    assert receipt.remote_name == remote_name("claims.837", "claim-batch-1")
    assert receipt.size == len(simple_file())
    [record] = house.claim_files
    assert record.name == receipt.remote_name and record.accepted_sets == 1 and record.claims == ("PCN1",)
    assert house.inbound() == []  # taken away from /inbound by the clearinghouse

    files = connector.poll_responses()
    stem = receipt.remote_name.rsplit(".", 1)[0]
    assert [f.name for f in files] == [f"{stem}.277", f"{stem}.835", f"{stem}.999"]
    kinds = {f.name.rsplit(".", 1)[1]: read_interchanges(f.content) for f in files}
    assert not any(read.errors for read in kinds.values())
    [ack] = kinds["999"].transactions
    assert [s.elements for s in ack.body if s.id in ("IK5", "AK9")] == [("IK5", "A"), ("AK9", "A", "1", "1", "1")]
    [status] = kinds["277"].transactions
    stc = [s for s in status.body if s.id == "STC"]
    assert stc[-1].components(1) == ("A2", "20")
    assert [s.get(2) for s in status.body if s.id == "TRN" and s.get(1) == "2"][-1] == "PCN1"

    for remote in files:
        connector.acknowledge(remote)
    assert connector.poll_responses() == [] and house.responses() == []
    connector.acknowledge(files[0])  # acknowledged twice (a retry after a lost answer): no error


@pytest.mark.parametrize("transport", ["sftp", "https"])
def test_a_retried_submit_is_one_claim_file(house: SandboxClearinghouse, connect: Connect, transport: str) -> None:
    connector = connect(transport)
    first = connector.submit("claims.837", simple_file(), "claim-batch-7")
    again = connector.submit("claims.837", simple_file(), "claim-batch-7")
    assert again.remote_name == first.remote_name
    assert len(house.claim_files) == 1 and house.duplicates == 1
    assert len(house.responses()) == 3  # one 999, one 277CA, one 835: nothing answered twice
    other = connector.submit("claims.837", simple_file(control=102), "claim-batch-8")
    assert other.remote_name != first.remote_name and len(house.claim_files) == 2


def test_sftp_with_a_client_key_and_archive(house: SandboxClearinghouse, connect: Connect) -> None:
    connector = connect("sftp", key=True, sftp={"after_download": "archive"})
    connector.submit("claims.837", simple_file(), "k-1")
    files = connector.poll_responses()
    assert len(files) == 3
    for remote in files:
        connector.acknowledge(remote)
    archived = sorted(p.name for p in (house.user_root("clinic") / "archive").iterdir())
    assert archived == sorted(f.name for f in files) and connector.poll_responses() == []


def test_send_takes_an_x12_delivery_and_refuses_fhir(house: SandboxClearinghouse, connect: Connect) -> None:
    connector = connect("sftp")
    delivery = Delivery(payload=simple_file(), content_type=X12_CONTENT_TYPE, idempotency_key="job-41",
                        correlation_id="c-1", resource_type="Claim", resource_id="cl-1", event="x12.837P")
    result = connector.send(delivery)
    assert result.remote_id == remote_name("x12_837P.x12", "job-41")
    assert [f.name for f in house.claim_files] == [result.remote_id]
    fhir = Delivery(payload=b"{}", content_type="application/fhir+json", idempotency_key="job-42",
                    correlation_id="c-2", resource_type="Claim", resource_id="cl-2", event="Claim.create")
    with pytest.raises(Exception) as refused:
        connector.send(fhir)
    assert type(refused.value).__name__ == "PermanentError"
    assert connector.health().ok


def test_manual_remittance_is_released_later(connect: Connect, house: SandboxClearinghouse) -> None:
    house.configure(remit="manual")
    connector = connect("https")
    receipt = connector.submit("claims.837", simple_file(), "k-9")
    stem = receipt.remote_name.rsplit(".", 1)[0]
    assert house.responses() == [f"{stem}.277", f"{stem}.999"]
    assert house.release_remittance() == [f"{stem}.835"]
    assert f"{stem}.835" in [f.name for f in connector.poll_responses()]


def test_https_with_the_clearinghouse_ca() -> None:
    with SandboxClearinghouse(tls=True) as house:
        assert house.url.startswith("https://127.0.0.1:")
        with X12BillingConnector(house.connector_config("https")) as connector:
            connector.submit("claims.837", simple_file(), "tls-1")
            assert len(connector.poll_responses()) == 3
        untrusted = house.connector_config("https", https={"ca_bundle_path": None})
        with X12BillingConnector(untrusted) as connector, pytest.raises(ConnectorError):
            connector.poll_responses()  # the system trust store does not know the sandbox's CA


@pytest.mark.parametrize("transport", ["sftp", "https"])
def test_unacknowledged_files_come_again(house: SandboxClearinghouse, connect: Connect, transport: str) -> None:
    connector = connect(transport)
    connector.submit("claims.837", simple_file(), "crash-1")
    first = connector.poll_responses()  # ... and the hub crashed before storing them: no acknowledge
    again = connector.poll_responses()
    assert [(f.name, f.sha256) for f in again] == [(f.name, f.sha256) for f in first] and len(first) == 3


def test_controls_and_summary_over_http(house: SandboxClearinghouse, connect: Connect) -> None:
    with httpx.Client(base_url=house.url, trust_env=False) as http:
        assert http.post("/_control", json={"refuse_auth": True}).status_code == 200
        with pytest.raises(ConnectorError):
            connect("sftp").submit("claims.837", simple_file(), "ctl-1")
        assert http.post("/_control", json={"refuse_auth": False, "remit": "manual"}).status_code == 200
        assert http.post("/_control", json={"remit": "never"}).status_code == 400
        connect("sftp").submit("claims.837", simple_file(), "ctl-1")
        summary = http.get("/_summary").json()
        assert summary["pending_remittances"] == 1 and summary["auth_failures"] >= 1
        assert [f["claims"] for f in summary["claim_files"]] == [1]


def test_a_delayed_remittance_arrives_later(house: SandboxClearinghouse, connect: Connect) -> None:
    house.configure(remit_delay_seconds=0.3)
    receipt = connect("sftp").submit("claims.837", simple_file(), "late-1")
    stem = receipt.remote_name.rsplit(".", 1)[0]
    assert f"{stem}.835" not in house.responses()
    assert f"{stem}.835" in house.wait_for_responses(3, timeout=10)
