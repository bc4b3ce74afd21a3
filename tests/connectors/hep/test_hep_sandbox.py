"""The sandbox HEP vendor's scripted patients and webhook sending."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from connectors.hep.signature import verify_webhook
from sandboxes.hep import SandboxHepVendor
from sandboxes.hep_script import (
    ScriptedExercise,
    ScriptedPatient,
    build_script,
    fast_order,
    out_of_order_pairs,
)

NOW = datetime(2026, 3, 20, 15, 0, tzinfo=UTC)


def patients() -> list[ScriptedPatient]:
    exercises = (ScriptedExercise("ex-a", 3, 10), ScriptedExercise("ex-b", 2, 12), ScriptedExercise("ex-c"))
    return [ScriptedPatient(profile, f"pat_{i}", f"hub-{i}", f"prg_{i}", f"cp-{i}", exercises,
                            utc_offset_minutes=offset)
            for i, (profile, offset) in enumerate(zip(("adherent", "lapsing", "improving", "worsening"),
                                                      (-300, 60, 0, -480), strict=True))]


def by_patient(script: list[Any], profile_index: int, kind: str) -> list[dict[str, Any]]:
    events = {c.id: c.event for c in script if c.event["patient"]["id"] == f"pat_{profile_index}"
              and c.type == kind}
    return sorted(events.values(), key=lambda e: datetime.fromisoformat(e["occurred_at"]))


def test_the_script_is_deterministic_by_seed() -> None:
    first = build_script(patients(), seed=3, days=14, now=NOW)
    again = build_script(patients(), seed=3, days=14, now=NOW)
    other = build_script(patients(), seed=4, days=14, now=NOW)
    assert [(c.event, c.sent_at, c.duplicate) for c in first] == [(c.event, c.sent_at, c.duplicate) for c in again]
    assert [c.id for c in first] != [c.id for c in other]
    assert [c.id for c in fast_order(first, seed=3)] == [c.id for c in fast_order(again, seed=3)]


@pytest.mark.parametrize("seed", [0, 1, 2, 17])
def test_the_script_has_duplicates_out_of_order_and_late_events(seed: int) -> None:
    script = build_script(patients(), seed=seed, days=14, now=NOW)
    duplicates = [c for c in script if c.duplicate]
    assert duplicates and all(any(o.id == d.id and not o.duplicate for o in script) for d in duplicates)
    assert any(c.late and c.sent_at - c.occurred_at >= timedelta(days=1) for c in script)
    assert out_of_order_pairs(script) > 0
    assert all(c.sent_at <= NOW and c.occurred_at <= c.sent_at for c in script)
    assert all(c.occurred_at >= NOW - timedelta(days=15) for c in script)


def test_the_profiles_behave_as_named() -> None:
    script = build_script(patients(), seed=5, days=14, now=NOW)
    sessions = {i: by_patient(script, i, "session.completed") for i in range(4)}
    assert len(sessions[0]) >= 10  # adherent
    lapse_days = {e["data"]["date"] for e in sessions[1]}
    last_lapsing = max(datetime.fromisoformat(e["occurred_at"]) for e in sessions[1])
    assert len(lapse_days) <= 5 and NOW - last_lapsing > timedelta(days=8)  # lapsing: nothing for days
    lefs = [e["data"]["score"] for e in by_patient(script, 2, "outcome.recorded")]
    assert lefs[0] == 38 and lefs[-1] - lefs[0] >= 9  # improving past the LEFS MCID
    odi = by_patient(script, 3, "outcome.recorded")
    assert {e["data"]["measure"] for e in odi} == {"ODI"} and odi[-1]["data"]["score"] - odi[0]["data"]["score"] >= 10
    pains = [e["data"]["pain"] for e in sessions[3]]
    assert pains[-1] > pains[0]  # worsening: more pain
    assert any(x["status"] == "skipped" for e in sessions[3] for x in e["data"]["exercises"])
    session = sessions[0][0]["data"]
    assert set(session) >= {"session_id", "date", "duration_seconds", "exercises", "pain", "exertion"}
    assert session["exercises"][0] == {"external_id": "ex-a", "status": "done", "sets_done": 3, "reps_done": 10}
    minutes = [e["data"] for e in by_patient(script, 2, "communication.logged")]
    assert [(m["channel"], m["minutes"]) for m in minutes] == [("call", 11), ("chat", 8)]
    assert by_patient(script, 0, "program.assigned")[0]["data"] == {"version": 1}
    # occurred_at carries the patient's offset; the session date is the patient's local date
    first = sessions[0][0]
    assert first["occurred_at"].endswith("-05:00") and first["occurred_at"][:10] == first["data"]["date"]


class _Hub(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_run_script_sends_every_pushed_program_signed_and_shuffled(hub: ThreadingHTTPServer) -> None:
    secret = secrets.token_hex(16)
    url = f"http://127.0.0.1:{hub.server_address[1]}/inbound/t1/hep/main"
    with SandboxHepVendor(webhook_secret=secret, seed=9) as vendor:
        vendor.seed_demo(2)
        script = vendor.script(days=7, now=NOW)
        sent = vendor.run_script(url, days=7, now=NOW)
    received = hub.received  # type: ignore[attr-defined]
    assert len(sent) == len(script) == len(received) and all(s.status == 202 for s in sent)
    assert sorted(s.event_id for s in sent) == sorted(c.id for c in script)
    assert [s.event_id for s in sent] != [c.id for c in script]  # not in send order: shuffled
    now = time.time()
    ids = [verify_webhook(secret, headers, body, now=now) for headers, body in received]
    assert len(ids) > len(set(ids))  # duplicates: the same event id again
    programs = {json.loads(body)["program"]["external_id"] for _, body in received}
    assert programs == {"demo-plan-1", "demo-plan-2"}


def test_send_event_sends_one_signed_event(hub: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{hub.server_address[1]}/hook"
    event = {"id": "evt_one", "type": "outcome.recorded", "occurred_at": "2026-03-01T20:00:00-05:00",
             "patient": {"id": "pat_x", "external_id": "hub-x"}, "program": None,
             "data": {"measure": "NPRS", "score": 3, "date": "2026-03-01"}}
    with SandboxHepVendor(webhook_secret="a-webhook-secret-123456") as vendor:
        assert vendor.send_event(url, event) == 202
    ((headers, body),) = hub.received  # type: ignore[attr-defined]
    assert json.loads(body) == event
    assert verify_webhook("a-webhook-secret-123456", headers, body, now=time.time()) == "evt_one"


def test_script_needs_a_program() -> None:
    with SandboxHepVendor() as vendor, pytest.raises(ValueError, match="no program"):
        vendor.script()


def test_rest_api_versions_and_idempotency_keys() -> None:
    with SandboxHepVendor(api_key="key-0123456789") as vendor, httpx.Client(
            base_url=vendor.url, headers={"Authorization": "Bearer key-0123456789"}) as client:
        patient = client.post("/v1/patients", json={"external_id": "h1", "first_name": "A", "last_name": "B"},
                              headers={"Idempotency-Key": "k1"})
        assert patient.status_code == 201
        pid = patient.json()["id"]
        body = {"title": "T", "starts_on": "2026-03-01", "exercises": [{"external_id": "e1", "code": "", "name": "N"}]}
        assert client.put(f"/v1/patients/{pid}/programs/cp", json=body).json()["version"] == 1
        assert client.put(f"/v1/patients/{pid}/programs/cp", json=body).json()["version"] == 1  # unchanged
        body["exercises"].append({"external_id": "e2", "code": "X", "name": "M", "sets": 0})
        bad = client.put(f"/v1/patients/{pid}/programs/cp", json=body)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "exercises[1].sets"
        body["exercises"][1]["sets"] = 2
        assert client.put(f"/v1/patients/{pid}/programs/cp", json=body).json()["version"] == 2
        assert client.delete(f"/v1/patients/{pid}/programs/cp/exercises/e2").status_code == 204
        assert client.delete(f"/v1/patients/{pid}/programs/cp/exercises/nope").status_code == 404
        assert client.get(f"/v1/patients/{pid}/programs/cp").json()["version"] == 3
        reused = client.post("/v1/patients", json={"external_id": "h2", "first_name": "C", "last_name": "D"},
                             headers={"Idempotency-Key": "k1"})
        assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"
        link = client.post(f"/v1/patients/{pid}/access-link", json={}).json()
        assert link["url"].startswith(vendor.url + "/sso/") and link["expires_at"]
        assert httpx.post(vendor.url + "/v1/patients", json={}).status_code == 401


def test_runs_on_its_own_and_sends_its_script(hub: ThreadingHTTPServer) -> None:
    usage = subprocess.run([sys.executable, "-m", "sandboxes.hep", "--help"], capture_output=True, text=True,
                           timeout=30, check=True)
    assert "--webhook-url" in usage.stdout and "--demo" in usage.stdout
    url = f"http://127.0.0.1:{hub.server_address[1]}/hook"
    process = subprocess.Popen([sys.executable, "-m", "sandboxes.hep", "--demo", "--days", "3", "--webhook-url",
                                url], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        root = process.stdout.readline().strip()
        assert httpx.get(root + "/v1/health").json() == {"ok": True}
        assert process.stdout.readline().startswith("sent ")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0 and len(hub.received) > 4  # type: ignore[attr-defined]


def test_a_program_ending_inside_the_window_stops_with_program_ended() -> None:
    ending = [p if p.profile != "adherent" else ScriptedPatient(
        p.profile, p.patient_id, p.patient_external_id, p.program_id, p.program_external_id, p.exercises,
        utc_offset_minutes=p.utc_offset_minutes, ends_on=(NOW - timedelta(days=5)).date()) for p in patients()]
    script = build_script(ending, seed=1, days=14, now=NOW)
    (ended,) = by_patient(script, 0, "program.ended")
    sessions = by_patient(script, 0, "session.completed")
    assert ended["occurred_at"][:10] == str((NOW - timedelta(days=5)).date())
    assert all(e["data"]["date"] <= ended["occurred_at"][:10] for e in sessions)
    assert not by_patient(script, 2, "program.ended")


def test_program_changes_are_announced_to_the_webhook_url(hub: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{hub.server_address[1]}/hook"
    with SandboxHepVendor(webhook_secret="a-webhook-secret-123456", webhook_url=url, webhook_delay=0) as vendor:
        vendor.seed_demo(1)
        assert vendor.wait_for_webhooks(1)
        (program,) = vendor.book.programs.values()
        vendor.handle("DELETE", f"/v1/patients/{program.patient_id}/programs/{program.external_id}/exercises/demo-1-0",
                      b"", None)
        assert vendor.wait_for_webhooks(2)
    events = sorted((json.loads(body) for _, body in hub.received),  # type: ignore[attr-defined]
                    key=lambda e: e["data"]["version"])
    assert [(e["type"], e["data"]["version"]) for e in events] == [("program.assigned", 1), ("program.updated", 2)]
    assert events[0]["patient"]["external_id"] == "demo-patient-1" and events[0]["program"]["id"] == program.id
