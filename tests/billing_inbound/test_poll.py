"""Polling the sandbox clearinghouse over SFTP: each response file is recorded (committed), THEN
acknowledged (gone from the clearinghouse), then applied; a crash in between downloads it again
and applies nothing twice."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from connectors.x12_billing import X12BillingConnector
from hub.billing.imports import import_x12
from hub.billing.imports_poll import poll_billing, poll_billing_all
from hub.settings import Settings
from hub.store.models import Message, ResourceVersion
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing_inbound.support import TENANT, billing_claim, claim, ensure, sent_file
from workers.app import make_celery


def _counts(settings: Settings) -> tuple[int, int]:
    with unit_of_work(settings, readonly=True) as session:
        messages = session.scalar(select(func.count()).select_from(Message).where(Message.source == "clearinghouse"))
        versions = session.scalar(select(func.count()).select_from(ResourceVersion).where(
            ResourceVersion.resource_type == "ClaimResponse"))
    return int(messages or 0), int(versions or 0)


def _submit(settings: Settings, uploader: X12BillingConnector, house: SandboxClearinghouse, connector_id: int,
            number: int) -> None:
    sent = sent_file(settings, [claim(f"TH{number}1", ("97110", "100.00")),
                                claim(f"TH{number}2", ("97110", "100.00"), ("97750", "50.00"))], number,
                     connector_id=connector_id)
    uploader.submit("claims.x12", sent.file, f"file-{number}")
    house.wait_for_responses(3)


def test_poll_records_then_acknowledges_then_applies(settings: Settings, house: SandboxClearinghouse,
                                                     uploader: X12BillingConnector, connector_id: int) -> None:
    _submit(settings, uploader, house, connector_id, 91)
    report = poll_billing(settings, connector_id)
    assert report is not None and report.ok
    assert len(report.files) == 3 and report.acknowledged == 3 and report.duplicates == 0
    assert house.responses() == []  # acknowledged: gone from the clearinghouse
    assert billing_claim(settings, "TH911").status == "paid"
    assert billing_claim(settings, "TH912").status == "partially_paid"
    assert _counts(settings) == (3, 2)
    again = poll_billing(settings, connector_id)
    assert again is not None and again.files == []


def test_a_poll_applies_the_999_then_the_277ca_then_the_835_whatever_their_names(
        settings: Settings, house: SandboxClearinghouse, uploader: X12BillingConnector, connector_id: int) -> None:
    """The sandbox names its answers <stem>.277, <stem>.835, <stem>.999: by name the 999 would come last and
    find no submitted claim left to accept."""
    _submit(settings, uploader, house, connector_id, 94)
    assert house.responses() == sorted(house.responses()) and house.responses()[-1].endswith(".999")
    report = poll_billing(settings, connector_id)
    assert report is not None and report.ok
    assert [s.kind for f in report.files for s in f.sets] == ["999", "277CA", "835"], report.view()
    ack, status, remit = (f.sets[0] for f in report.files)
    assert ack.claims == {"accepted": 2} and not ack.warnings, ack.view()
    assert status.claims == {"acknowledged": 2} and remit.claims == {"paid": 1, "partially_paid": 1}
    assert billing_claim(settings, "TH941").acknowledged_at is not None


def test_a_crash_between_record_and_acknowledge_downloads_again_without_applying_twice(
        settings: Settings, house: SandboxClearinghouse, uploader: X12BillingConnector, connector_id: int) -> None:
    _submit(settings, uploader, house, connector_id, 92)
    # what the poller does before it acknowledges: the files are recorded and applied, then it "dies"
    with X12BillingConnector(house.connector_config("sftp")) as connector:  # type: ignore[arg-type]
        for remote in connector.poll_responses():
            with unit_of_work(settings) as session:
                import_x12(session, settings, tenant=TENANT, raw=remote.content, source="clearinghouse",
                           name=remote.name, connector_id=connector_id)
    assert len(house.responses()) == 3
    before = _counts(settings)
    paid = billing_claim(settings, "TH921")
    report = poll_billing(settings, connector_id)
    assert report is not None and report.duplicates == 3 and report.acknowledged == 3
    assert house.responses() == []
    assert _counts(settings) == before  # no second message, no second ClaimResponse version
    after = billing_claim(settings, "TH921")
    assert (after.status, after.paid_cents, after.updated_at) == (paid.status, paid.paid_cents, paid.updated_at)


def test_the_beat_task_polls_every_clearinghouse_and_the_admin_api_polls_now(
        client: TestClient, settings: Settings, house: SandboxClearinghouse, uploader: X12BillingConnector,
        connector_id: int) -> None:
    _submit(settings, uploader, house, connector_id, 93)
    answer = client.post("/admin/api/billing/connectors/clearinghouse/poll")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] and body["fetched"] == 3 and body["acknowledged"] == 3
    assert sorted(s["kind"] for f in body["files"] for s in f["sets"]) == ["277CA", "835", "999"]
    assert "Jones" not in answer.text
    _submit(settings, uploader, house, connector_id, 94)
    assert poll_billing_all(settings) == 3
    assert billing_claim(settings, "TH941").status == "paid"
    assert client.post("/admin/api/billing/connectors/nosuch/poll").status_code == 404
    schedule = make_celery("memory://", billing_poll_interval=120.0).conf.beat_schedule
    assert schedule["billing-poll"] == {"task": "hub.billing_poll", "schedule": 120.0}


def test_poll_over_https(settings: Settings, house: SandboxClearinghouse) -> None:
    ensure(settings)
    with unit_of_work(settings) as session:
        connector_id = SyncConfig(session, tenant=TENANT, settings=settings).add_connector(
            name="clearinghouse-api", kind="x12_billing", config=house.connector_config("https")).id
    sent = sent_file(settings, [claim("TH951", ("97110", "100.00"))], 95, connector_id=connector_id)
    with X12BillingConnector(house.connector_config("https")) as connector:  # type: ignore[arg-type]
        connector.submit("claims.x12", sent.file, "file-95")
    house.wait_for_responses(3)
    report = poll_billing(settings, connector_id)
    assert report is not None and report.ok and report.acknowledged == 3
    assert house.responses() == [] and billing_claim(settings, "TH951").status == "paid"


def test_one_poll_applies_the_999_then_the_277ca_then_the_835(
        settings: Settings, house: SandboxClearinghouse, uploader: X12BillingConnector, connector_id: int) -> None:
    _submit(settings, uploader, house, connector_id, 94)
    assert sorted(n.rsplit(".", 1)[1] for n in house.responses()) == ["277", "835", "999"]  # by name: 277 first
    report = poll_billing(settings, connector_id)
    assert report is not None and report.ok
    assert [f.sets[0].kind for f in report.files] == ["999", "277CA", "835"]
    ack = report.files[0].sets[0]
    assert ack.claims == {"accepted": 2} and ack.warnings == []  # the 999 found its claims still submitted
    assert report.files[1].sets[0].claims == {"acknowledged": 2}
    row = billing_claim(settings, "TH941")
    assert row.status == "paid" and row.acknowledged_at is not None


def test_response_rank_reads_the_kind_of_a_file() -> None:
    from hub.billing.imports_poll import response_rank
    from tests.billing_inbound.support import envelope

    assert [response_rank(envelope([("999", [])], functional=f)) for f in ("FA", "HN", "HP", "HB")] == [0, 1, 2, 3]
    ta1 = envelope([]).split(b"~", 1)[0] + b"~\nTA1*000000900*260310*0930*A*000~IEA*0*000000900~"
    assert response_rank(ta1) == 0
    assert response_rank(b"not x12 at all") == 3 and response_rank(b"") == 3


def test_response_rank_takes_the_separators_of_the_isa() -> None:
    from hub.billing.imports_poll import response_rank

    isa = "ISA|00|          |00|          |ZZ|CLEARINGHOUSE  |ZZ|SUBMITTER      |261204|0930|^|00501|000000007|0|T|>\n"
    body = "GS|HN|CH|SUB|20261204|0930|7|X|005010X214\nST|277|0001|005010X214\nSE|2|0001\nGE|1|7\nIEA|1|000000007\n"
    assert response_rank(("\ufeff" + isa + body).encode("utf-8")) == 1
    unpadded = "ISA*00**00**ZZ*CH*ZZ*SUB*261204*0930*^*00501*7*0*T*:~GS*FA*CH*SUB*20261204*0930*7*X*005010X231A1~"
    assert response_rank(unpadded.encode()) == 0
