"""The webhook sandbox itself: HTTP controls, determinism, process mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from connectors.base import TransientError
from connectors.webhook import WebhookConnector
from sandboxes.webhook import SandboxControls, SandboxReceiver
from tests.connectors.conftest import SECRET, make_delivery

ROOT = Path(__file__).resolve().parents[2]


def test_http_controls_summary_and_reset(sandbox: SandboxReceiver) -> None:
    with (
        httpx.Client(base_url=sandbox.url, trust_env=False) as http,
        WebhookConnector({"url": sandbox.url + "/hook", "secret": SECRET}) as connector,
    ):
        answer = http.post("/_control", json={"fail_keys": ["job-2"], "fail_keys_status": 422})
        assert answer.status_code == 200 and answer.json()["controls"]["fail_keys"] == {"job-2": 422}
        connector.send(make_delivery("job-1"))
        connector.send(make_delivery("job-1"))
        with pytest.raises(Exception):  # noqa: B017 - PermanentError, checked in test_webhook
            connector.send(make_delivery("job-2"))
        unsigned = http.post("/hook", content=b"{}", headers={"Idempotency-Key": "job-3"})
        assert unsigned.status_code == 401

        summary = http.get("/_received", params={"bodies": 1}).json()
        assert summary["deliveries"] == 1 and summary["keys"] == ["job-1"]
        assert summary["duplicates"] == 1 and summary["duplicate_keys"] == {"job-1": 1}
        assert summary["rejected"] == 1 and summary["failed"] == 1 and summary["requests"] == 4
        assert summary["signatures"] == {"valid": 3, "invalid": 1}
        assert summary["items"][0]["signature_valid"] is True
        assert summary["items"][0]["body"].startswith('{"resourceType": "ServiceRequest"')

        assert http.post("/_control", json={"fail_rate": 2}).status_code == 400
        assert http.post("/_control", json={"no_such_control": 1}).status_code == 400
        assert http.post("/_control", content=b"[1]").status_code == 400

        assert http.post("/_reset").status_code == 200
        summary = http.get("/_received").json()
        assert summary["requests"] == 0 and summary["controls"]["fail_keys"] == {}


def test_fail_rate_is_deterministic_for_a_seed() -> None:
    def outcomes(seed: int) -> list[str]:
        with (
            SandboxReceiver(secret=SECRET, fail_rate=0.5, seed=seed) as receiver,
            WebhookConnector({"url": receiver.url, "secret": SECRET}) as connector,
        ):
            results = []
            for n in range(12):
                try:
                    connector.send(make_delivery(f"job-{n}"))
                    results.append("ok")
                except TransientError:
                    results.append("503")
            return results

    first = outcomes(seed=3)
    assert first == outcomes(seed=3)
    assert "ok" in first and "503" in first


def test_controls_are_validated() -> None:
    with pytest.raises(ValueError):
        SandboxControls(hang_rate=-0.1)
    with pytest.raises(ValueError):
        SandboxControls(status_override=99)
    with pytest.raises(ValueError):
        SandboxControls(fail_keys={"k": 700})
    assert SandboxControls().updated({"fail_keys": {"a", "b"}}).fail_keys == {"a": 503, "b": 503}


def test_binds_loopback_only(sandbox: SandboxReceiver) -> None:
    assert sandbox.url.startswith("http://127.0.0.1:")


def test_runs_as_a_process_until_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sandboxes.webhook", "--port", "0", "--secret", SECRET],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.stderr else ""
        with WebhookConnector({"url": url, "secret": SECRET}) as connector:
            assert connector.send(make_delivery("job-p")).remote_id == "dlv-000001"
        summary = httpx.get(url + "/_received", trust_env=False).json()
        assert summary["keys"] == ["job-p"] and summary["signatures"]["valid"] == 1
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < 3
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
