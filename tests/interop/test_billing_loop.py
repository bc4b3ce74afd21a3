"""The billing loop end to end: a clinic's week of visits written through ``/fhir`` becomes claims
(one blocked with its finding, the rest ready), the ready ones go out as 837P files that a real
``hub worker`` delivers over SFTP to the sandbox clearinghouse, even when the worker is killed in the
middle of a delivery; the clearinghouse's 999, 277CA and 835 come back by a poll and move every claim
to accepted, acknowledged and then paid, partially paid or denied, with ClaimResponses in the store
that add up to the cent, analytics that agree with the claims, a re-poll that applies nothing twice,
and ``hub billing claims --status paid`` listing the paid claims.

Real parts: the hub app (TestClient) on a SQLite store, the embedded broker, ``hub worker --beat``
processes (their sweeper re-enqueues the job of the killed worker; their beat polls the
clearinghouse for the 835s), the sandbox clearinghouse on
127.0.0.1 (SFTP), the ``hub`` CLI as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub import processes
from hub.app import create_app
from hub.settings import Settings
from hub.store.migrate import upgrade
from mappings.billing.codes import LINE_CONTROL_EXTENSION
from mappings.x12.validation import validate
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing.scenario import ACME, MEDICARE, billing_profile, load_week
from tests.sync.conftest import wait_until

HUB = str(Path(sys.executable).with_name("hub"))
CONNECTOR = "clearinghouse"
#: the sandbox denies these: ot-tue (97166 + 97535) is partially paid, ot-thu (97530 alone) denied
DENIED_CODES = ("97535", "97530")
TIMEOUT = 40.0


@dataclass
class Loop:
    settings: Settings
    client: TestClient
    house: SandboxClearinghouse
    workdir: Path
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115
        process = processes.spawn([HUB, "worker", "--beat", "--pool", "solo", "--concurrency", "1",
                                   "--loglevel", "WARNING"], cwd=self.workdir, env={**self.env, **env}, stdout=log,
                                  stderr=subprocess.STDOUT)
        log.close()
        self.workers.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def job(self, job_id: int) -> dict[str, Any]:
        response = self.client.get(f"/admin/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def claims(self, **params: str) -> list[dict[str, Any]]:
        response = self.client.get("/admin/api/billing/claims", params={"limit": "500", **params})
        assert response.status_code == 200, response.text
        return list(response.json())

    def poll(self) -> dict[str, Any]:
        response = self.client.post(f"/admin/api/billing/connectors/{CONNECTOR}/poll")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([HUB, *args], cwd=self.workdir, env={**self.env, "COLUMNS": "250"},
                              capture_output=True, text=True, timeout=60)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    db, broker = f"sqlite:///{tmp_path / 'hub.db'}", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    upgrade(db)
    queue = f"hub-test-{uuid.uuid4().hex[:10]}"
    settings = Settings(database_url=db, broker_url=broker, task_queue=queue, sweep_interval_seconds=1,
                        requeue_grace_seconds=2, billing_poll_seconds=3600, environment="test", base_url="",
                        auth_disabled=True, var_dir=tmp_path / "var")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({"HUB_DATABASE_URL": db, "HUB_BROKER_URL": broker, "HUB_TASK_QUEUE": queue,
                "HUB_SWEEP_INTERVAL_SECONDS": "1", "HUB_REQUEUE_GRACE_SECONDS": "2",
                "HUB_BILLING_POLL_SECONDS": "3600", "HUB_ENVIRONMENT": "test", "HUB_BASE_URL": "",
                "HUB_VAR_DIR": str(tmp_path / "var"),
                "HUB_SECRET_KEY": settings.secret_key.get_secret_value()})
    with SandboxClearinghouse() as house, TestClient(create_app(settings), base_url="http://testserver") as client:
        state = Loop(settings, client, house, tmp_path, env)
        try:
            yield state
        finally:
            for process in state.workers:
                if process.returncode is None:
                    state.kill(process)


def _connector(loop: Loop) -> None:
    config = loop.house.connector_config("sftp", billing=billing_profile())
    body = {"name": CONNECTOR, "kind": "x12_billing", "config": config, "max_attempts": 5, "timeout_seconds": 3.0,
            "backoff_base_seconds": 0.2, "backoff_max_seconds": 1.0}
    response = loop.client.put(f"/admin/api/connectors/{CONNECTOR}", json=body)
    assert response.status_code == 200, response.text


def _line_totals(item: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal]:
    """(submitted, paid, adjusted) of a ClaimResponse line."""
    by: dict[str, Decimal] = {}
    adjusted = Decimal(0)
    for adjudication in item["adjudication"]:
        amount = Decimal(str(adjudication["amount"]["value"]))
        if "reason" in adjudication:
            adjusted += amount
        else:
            by[adjudication["category"]["coding"][0]["code"]] = amount
    return by["submitted"], by["benefit"], adjusted


def _check_response(loop: Loop, view: dict[str, Any]) -> dict[str, Any]:
    """The claim's one ClaimResponse (found by ``request``), to the cent against the Claim."""
    claim = loop.client.get(f"/fhir/Claim/{view['claim_id']}").json()
    bundle = loop.client.get("/fhir/ClaimResponse", params={"request": f"Claim/{view['claim_id']}"}).json()
    [entry] = bundle.get("entry") or [None]
    response = entry["resource"]
    for form in (view["claim_id"], f"http://testserver/fhir/Claim/{view['claim_id']}"):  # the other forms of it
        again = loop.client.get("/fhir/ClaimResponse", params={"request": form}).json()
        assert [e["resource"]["id"] for e in again.get("entry") or []] == [response["id"]], form
    assert response["request"] == {"reference": f"Claim/{claim['id']}"}
    assert response["patient"] == claim["patient"] and response["insurer"]["reference"] == claim["insurer"]["reference"]
    items = {i["sequence"]: i for i in claim["item"]}
    controls = {next(e["valueIdentifier"]["value"] for e in i["extension"] if e["url"] == LINE_CONTROL_EXTENSION)
                for i in claim["item"]}
    assert len(controls) == len(items)
    paid = Decimal(0)
    for line in response["item"]:
        submitted, benefit, adjusted = _line_totals(line)
        assert submitted == Decimal(str(items[line["itemSequence"]]["net"]["value"]))  # matched by line control
        assert benefit + adjusted == submitted
        paid += benefit
    assert sorted(i["itemSequence"] for i in response["item"]) == sorted(items)
    totals = {t["category"]["coding"][0]["code"]: Decimal(str(t["amount"]["value"])) for t in response["total"]}
    assert totals["benefit"] == paid and int(paid * 100) == int(Decimal(view["paid"]) * 100)
    assert totals["submitted"] == Decimal(view["charge"]) == Decimal(str(claim["total"]["value"]))
    return dict(response)


def test_a_week_of_visits_is_billed_delivered_once_acknowledged_and_paid_to_the_cent(loop: Loop) -> None:
    load_week(loop.client)
    _connector(loop)
    loop.house.configure(denied_codes=DENIED_CODES, remit="manual")

    built = loop.client.post("/admin/api/billing/claims/build")
    assert built.status_code == 200, built.text
    by_visit = {c["encounter_id"]: c for c in built.json()["claims"]}
    assert len(by_visit) == 12 and {c["action"] for c in by_visit.values()} == {"created"}
    assert [e for e, c in by_visit.items() if c["status"] != "ready"] == ["p2-wed"]
    blocked = loop.client.get(f"/admin/api/billing/claims/{by_visit['p2-wed']['claim_id']}").json()
    assert blocked["status"] == "blocked" and blocked["errors"] >= 1
    assert any(f["severity"] == "error" and f["rule"].startswith("ncci") for f in blocked["finding_list"])
    kx = loop.client.get(f"/fhir/Claim/{by_visit['p3-mar']['claim_id']}").json()
    assert [m["coding"][0]["code"] for m in kx["item"][0]["modifier"]] == ["GP", "KX"]

    # the clearinghouse is slow to open the upload: the worker is killed while it delivers a file
    loop.house.configure(slow_seconds=2.5)
    submitted = loop.client.post("/admin/api/billing/submit", json={"connector": CONNECTOR})
    assert submitted.status_code == 200, submitted.text
    files = submitted.json()
    assert sorted(f["payer_id"] for f in files) == sorted([ACME, MEDICARE]) and {f["status"] for f in files} == {
        "queued"}
    jobs = [j for f in files for j in f["job_ids"]]
    assert len(jobs) == 2
    first = loop.start_worker()
    wait_until(lambda: any(loop.job(j)["status"] == "running" for j in jobs), TIMEOUT, "a delivery to start")
    loop.kill(first)
    [killed] = [j for j in jobs if loop.job(j)["status"] == "running"]  # never recorded: its lease runs out
    assert loop.house.claim_files == []  # nothing arrived: the upload had not finished
    loop.house.configure(slow_seconds=0)
    second = loop.start_worker()  # its sweeper re-enqueues the job whose lease the killed worker held
    wait_until(lambda: all(loop.job(j)["status"] == "succeeded" for j in jobs), TIMEOUT, "both files delivered")

    assert loop.job(killed)["attempts"] >= 2  # the killed attempt, then the one after the sweeper took it back
    received = loop.house.claim_files
    assert len(received) == 2 and loop.house.duplicates == 0  # each file exactly once
    ready = {c["patient_control_number"] for c in by_visit.values() if c["status"] == "ready"}
    assert sorted(pcn for r in received for pcn in r.claims) == sorted(ready)
    for answer in received:
        assert answer.accepted_sets == 1 and answer.rejected_sets == 0
    assert not [n for n in loop.house.inbound() if not n.startswith(".")]
    assert loop.house.base_dir is not None
    arrived = sorted((loop.house.base_dir / "received").iterdir())
    assert len(arrived) == 2  # what the sandbox took from /inbound: one file per payer, no second copy
    for path in arrived:
        assert [i for i in validate(path.read_text(encoding="latin-1")) if i.severity == "error"] == []

    # 999 + 277CA: accepted, then acknowledged
    loop.house.wait_for_responses(4)
    report = loop.poll()
    sets = [s for f in report["files"] for s in f["sets"]]
    assert [s["kind"] for s in sets] == ["999", "999", "277CA", "277CA"]  # the files accepted first
    assert sum(s["claims"].get("accepted", 0) for s in sets if s["kind"] == "999") == len(ready)
    assert sum(s["claims"].get("acknowledged", 0) for s in sets if s["kind"] == "277CA") == len(ready)
    assert not [w for s in sets for w in s["warnings"]] and report["acknowledged"] == 4
    states = {c["patient_control_number"]: c for c in loop.claims()}
    assert {states[pcn]["status"] for pcn in ready} == {"acknowledged"}

    # the 835s, fetched by the beat task this time: paid, partially paid (a denied line), denied
    loop.kill(second)  # idle: nothing of it is running
    loop.start_worker(HUB_BILLING_POLL_SECONDS="1")
    assert len(loop.house.release_remittance()) == 2
    wait_until(lambda: not [c for c in loop.claims() if c["status"] == "acknowledged"], TIMEOUT,
               "the beat's poll to apply the 835s")
    assert loop.house.responses() == []  # fetched and acknowledged at the clearinghouse
    views = {c["encounter_id"]: c for c in loop.claims()}
    assert views["ot-tue"]["status"] == "partially_paid" and views["ot-thu"]["status"] == "denied"
    assert views["p2-wed"]["status"] == "blocked"
    paid = {e for e, v in views.items() if v["status"] == "paid"}
    assert paid == {e for e in by_visit if e not in ("ot-tue", "ot-thu", "p2-wed")}
    for eid, view in views.items():
        if eid != "p2-wed":
            _check_response(loop, view)
    assert Decimal(views["ot-thu"]["paid"]) == 0

    # analytics agree with the claims
    analytics = loop.client.get("/admin/api/billing/analytics")
    assert analytics.status_code == 200, analytics.text
    numbers = analytics.json()
    assert numbers["claims"] == 12
    for status in {v["status"] for v in views.values()}:
        mine = [v for v in views.values() if v["status"] == status]
        row = numbers["by_status"][status]
        assert row["count"] == len(mine)
        assert row["charge_cents"] == sum(round(Decimal(v["charge"]) * 100) for v in mine)
        assert row["paid_cents"] == sum(round(Decimal(v["paid"] or 0) * 100) for v in mine)
    [carc] = [r for r in numbers["denials"]["by_carc"] if r["carc"] == "50"]
    assert carc["claims"] == 2 and carc["count"] == 2  # the denied line of ot-tue, the line of ot-thu
    denied_cents = sum(round(Decimal(str(i["net"]["value"])) * 100) for e in ("ot-tue", "ot-thu")
                       for i in loop.client.get(f"/fhir/Claim/{views[e]['claim_id']}").json()["item"]
                       if i["productOrService"]["coding"][0]["code"] in DENIED_CODES)
    assert carc["amount_cents"] == denied_cents
    assert numbers["days_to_payment"]["count"] == len(paid) + 1  # paid and partially paid

    # a poll again applies nothing twice
    before = {eid: (v["status"], v["paid"], v["updated_at"]) for eid, v in views.items()}
    loop.poll()
    assert {eid: (v["status"], v["paid"], v["updated_at"]) for eid, v in
            ((c["encounter_id"], c) for c in loop.claims())} == before
    for view in views.values():
        if view["status"] != "blocked":
            bundle = loop.client.get("/fhir/ClaimResponse", params={"request": f"Claim/{view['claim_id']}"}).json()
            assert len(bundle.get("entry") or []) == 1

    # the CLI on the same store
    done = loop.cli("billing", "claims", "--status", "paid")
    assert done.returncode == 0, done.stderr
    assert "Claims (9)" in done.stdout
    listed = {v["patient_control_number"] for v in views.values() if v["patient_control_number"] in done.stdout}
    assert listed == {views[e]["patient_control_number"] for e in paid}, done.stdout
