"""A delivery the partner only accepted awaits its confirmation (ADR 0012), against the fax vendor
sandbox with its automatic status callbacks off: the job is ``awaiting`` (in the admin filters, the
message status and /metrics) until the vendor's ``delivered`` makes it ``succeeded`` once, its
``failed`` or the deadline sends it back to retry then dead letter, a late ``delivered`` is only an
event, a job that succeeded before confirmations were awaited is never swept, and neither a retry
nor a replay sends a delivery that is still in flight a second time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from connectors.fax.model import FaxStatus
from hub.cli import app
from hub.kit import utcnow
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync.confirmations import sweep_unconfirmed
from hub.sync.delivery import deliver
from hub.unit_of_work import unit_of_work
from sandboxes.fax import SandboxFaxServer
from tests.cli_env import cli_environment
from tests.inbound.test_fax_webhook import PATH, WEBHOOK_SECRET, events, hub_url, job, setup, store_certification
from tests.sync.test_cli import table_rows

__all__ = ["hub_url"]  # the fixture: the hub on a real port, for the vendor's webhooks


@pytest.fixture
def vendor() -> Iterator[SandboxFaxServer]:
    # documo: its webhooks carry event ids, so a report repeated as a new event reaches the job
    with SandboxFaxServer(profile="documo", api_key="key-1234", api_secret="secret-5678",
                          webhook_secret=WEBHOOK_SECRET) as server:
        server.configure(auto_callback=False)  # the test says what the vendor reports, and when
        yield server


def _sent(client: TestClient, settings: Settings, vendor: SandboxFaxServer, hub_url: str) -> int:
    setup(client, vendor, hub_url)
    job_id = store_certification(client)
    assert deliver(settings, job_id) is None
    assert vendor.wait_for_sends(1)
    return job_id


def _acknowledged(client: TestClient, view: dict[str, Any]) -> list[str]:
    return [e["detail"] or "" for e in events(client, view["message_id"])
            if e["event"] == "acknowledged" and e["job_id"] == view["id"]]


def _jobs_metric(client: TestClient, status: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if (sample.name == "therapy_hub_delivery_jobs" and sample.labels.get("connector") == "vendor"
                    and sample.labels.get("status") == status):
                return float(sample.value)
    raise AssertionError(f"no therapy_hub_delivery_jobs series for {status}")


def _status_again(vendor: SandboxFaxServer, url: str, fax_id: str, state: str, event_id: str) -> int:
    """The vendor reports a fax's state once more, as a new event (a webhook it did not dedupe)."""
    webhook = vendor.profile.status_webhook(WEBHOOK_SECRET, url, FaxStatus(fax_id=fax_id, state=state,  # type: ignore[arg-type]
                                                                           event_id=event_id, pages=3))
    with httpx.Client(trust_env=False) as http:
        answer = http.post(url, content=webhook.body,
                           headers={"Content-Type": webhook.content_type, **webhook.headers})
    return answer.status_code


def test_a_fax_awaits_the_vendors_status_and_is_confirmed_once(client: TestClient, settings: Settings, hub_url: str,
                                                               vendor: SandboxFaxServer) -> None:
    job_id = _sent(client, settings, vendor, hub_url)
    waiting = job(client, job_id)
    assert waiting["status"] == "awaiting" and waiting["attempts"] == 1 and waiting["finished_at"] is None
    assert waiting["confirm_by"] > waiting["created_at"] and "next_attempt_at" not in waiting
    assert _acknowledged(client, waiting) == []  # sent, not yet confirmed
    assert client.get(f"/admin/api/messages/{waiting['message_id']}").json()["status"] == "awaiting"
    assert [j["id"] for j in client.get("/admin/api/jobs", params={"status": "awaiting"}).json()["items"]] == [job_id]
    assert client.get("/admin/api/jobs", params={"status": "succeeded"}).json()["total"] == 0
    assert client.get("/admin/api/messages", params={"status": "awaiting"}).json()["total"] == 1
    assert _jobs_metric(client, "awaiting") == 1 and _jobs_metric(client, "succeeded") == 0
    page = client.get(f"/dashboard/messages/{waiting['message_id']}")
    assert page.status_code == 200 and 's-awaiting">awaiting' in page.text and "confirmation due by" in page.text
    assert ">Retry<" not in page.text

    # the vendor has it: neither a retry nor a replay sends it again meanwhile
    retried = client.post(f"/admin/api/jobs/{job_id}/retry")
    assert retried.status_code == 409 and "awaiting" in retried.text
    messages = client.get("/admin/api/messages").json()["total"]
    replayed = client.post(f"/admin/api/messages/{waiting['message_id']}/replay")
    assert replayed.status_code == 409 and f"job {job_id} is awaiting" in replayed.text
    assert client.get("/admin/api/messages").json()["total"] == messages
    assert len(vendor.sent) == 1

    fax_id = vendor.sent[0].fax_id
    assert vendor.send_status(fax_id, "delivered", pages=3) == 202
    done = job(client, job_id)
    assert done["status"] == "succeeded" and done["finished_at"] and "confirm_by" not in done
    assert _acknowledged(client, done) == [f"fax {fax_id} delivered, 3 pages"]
    assert client.get(f"/admin/api/messages/{done['message_id']}").json()["status"] == "delivered"
    assert _jobs_metric(client, "awaiting") == 0 and _jobs_metric(client, "succeeded") == 1

    # the same report again, as a new event of the vendor's: accepted, and nothing changes
    assert _status_again(vendor, hub_url + PATH, fax_id, "delivered", "evt-again") == 202
    assert job(client, job_id) == done
    assert len(_acknowledged(client, done)) == 1
    assert sweep_unconfirmed(settings, now=utcnow() + timedelta(days=3)) == 0
    assert job(client, job_id)["status"] == "succeeded" and len(vendor.sent) == 1


def test_no_status_within_the_timeout_retries_then_dead_letters(client: TestClient, settings: Settings, hub_url: str,
                                                                vendor: SandboxFaxServer) -> None:
    job_id = _sent(client, settings, vendor, hub_url)
    assert sweep_unconfirmed(settings, now=utcnow() + timedelta(minutes=30)) == 0  # not yet due
    assert sweep_unconfirmed(settings, now=utcnow() + timedelta(minutes=61)) == 1
    first = job(client, job_id)
    assert first["status"] == "retrying" and "no fax delivered status within 60 minutes" in first["last_error"]
    assert sweep_unconfirmed(settings, now=utcnow() + timedelta(minutes=61)) == 0  # not twice
    # (the sweep ran an hour ahead, so its retry is due then): an operator's retry makes it due now
    assert client.post(f"/admin/api/jobs/{job_id}/retry").status_code == 200
    assert deliver(settings, job_id) is None
    assert vendor.wait_for_sends(2) and job(client, job_id)["status"] == "awaiting"
    assert vendor.sent[1].fields == vendor.sent[0].fields  # the same fax, the same reference (idempotency key)
    assert sweep_unconfirmed(settings, now=utcnow() + timedelta(minutes=61)) == 1
    dead = job(client, job_id)
    assert dead["status"] == "dead" and dead["attempts"] == 2
    trail = [e["event"] for e in events(client, dead["message_id"]) if e["job_id"] == job_id]
    assert trail.count("sent") == 2 and trail.count("dead-lettered") == 1 and "acknowledged" not in trail
    assert client.get(f"/admin/api/messages/{dead['message_id']}").json()["status"] == "dead"


def test_a_late_delivered_after_a_failure_is_only_recorded(client: TestClient, settings: Settings, hub_url: str,
                                                           vendor: SandboxFaxServer) -> None:
    job_id = _sent(client, settings, vendor, hub_url)
    fax_id = vendor.sent[0].fax_id
    assert vendor.send_status(fax_id, "failed", vendor_code="2004") == 202
    failed = job(client, job_id)
    assert failed["status"] == "retrying" and "vendor code 2004" in failed["last_error"]
    assert vendor.send_status(fax_id, "delivered", pages=3) == 202  # the vendor changes its mind, late
    late = job(client, job_id)
    assert late["status"] == "retrying" and late["attempts"] == 1 and late["last_error"] == failed["last_error"]
    assert any("reported after the job was retrying" in d for d in _acknowledged(client, late))
    time.sleep(0.15)
    assert deliver(settings, job_id) is None and vendor.wait_for_sends(2)
    assert job(client, job_id)["status"] == "awaiting"
    assert vendor.send_status(vendor.sent[1].fax_id, "delivered", pages=3) == 202
    assert job(client, job_id)["status"] == "succeeded"


def test_replay_leaves_a_delivery_still_under_way_out(client: TestClient, settings: Settings, hub_url: str,
                                                      vendor: SandboxFaxServer) -> None:
    job_id = _sent(client, settings, vendor, hub_url)
    assert vendor.send_status(vendor.sent[0].fax_id, "failed") == 202
    retrying = job(client, job_id)
    assert retrying["status"] == "retrying"
    for action in ("replay", "resend"):  # it is going out again by itself: no second fax alongside
        answer = client.post(f"/admin/api/messages/{retrying['message_id']}/{action}")
        assert answer.status_code == 409, answer.text
        assert f"job {job_id} is retrying" in answer.text
    assert client.get("/admin/api/jobs").json()["total"] == 1


def test_a_job_that_succeeded_before_confirmations_were_awaited_is_never_swept(
        client: TestClient, settings: Settings, hub_url: str, vendor: SandboxFaxServer) -> None:
    job_id = _sent(client, settings, vendor, hub_url)
    with unit_of_work(settings) as session:  # as the hub recorded an accepted fax before: succeeded at once
        old = repo.job_by_id(session, job_id=job_id)
        assert old is not None
        old.status, old.finished_at = "succeeded", utcnow() - timedelta(days=2)
    assert sweep_unconfirmed(settings, now=utcnow() + timedelta(days=30)) == 0
    assert job(client, job_id)["status"] == "succeeded"
    # its vendor may still report it: delivered changes nothing, failed sends it back as it did before
    assert vendor.send_status(vendor.sent[0].fax_id, "delivered") == 202
    assert job(client, job_id)["status"] == "succeeded"
    assert vendor.send_status(vendor.sent[0].fax_id, "failed") == 202
    assert job(client, job_id)["status"] == "retrying"


def test_hub_jobs_lists_the_awaiting_ones_with_their_deadline(client: TestClient, settings: Settings, hub_url: str,
                                                              vendor: SandboxFaxServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = _sent(client, settings, vendor, hub_url)
    confirm_by = job(client, job_id)["confirm_by"]
    with cli_environment(settings, monkeypatch):
        listed = CliRunner().invoke(app, ["jobs", "--status", "awaiting"], catch_exceptions=False)
        assert "(0 of 0)" in CliRunner().invoke(app, ["jobs", "--status", "succeeded"]).stdout
    assert listed.exit_code == 0, listed.stdout
    row = table_rows(listed.stdout)[str(job_id)]
    assert row[3] == "awaiting" and confirm_by[:10] in row[5]


def test_a_failure_reported_after_the_vendor_confirmed_is_a_warning_not_a_resend(
        client: TestClient, settings: Settings, hub_url: str, vendor: SandboxFaxServer) -> None:
    job_id = _sent(client, settings, vendor, hub_url)
    fax_id = vendor.sent[0].fax_id
    assert vendor.send_status(fax_id, "delivered", pages=3) == 202
    done = job(client, job_id)
    assert done["status"] == "succeeded"
    # the vendor contradicts itself: kept for a person to look at, the confirmed job is not sent again
    assert _status_again(vendor, hub_url + PATH, fax_id, "failed", "evt-contradiction") == 202
    assert job(client, job_id) == done
    warnings = [e for e in events(client, done["message_id"]) if e["event"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["job_id"] == job_id
    assert "after confirming" in warnings[0]["detail"] and f"fax {fax_id} failed" in warnings[0]["detail"]
    assert client.get(f"/admin/api/messages/{done['message_id']}").json()["status"] == "delivered"
    assert client.post(f"/admin/api/jobs/{job_id}/retry").status_code == 409  # nothing to retry either
    assert sweep_unconfirmed(settings, now=utcnow() + timedelta(days=3)) == 0
    assert len(vendor.sent) == 1
