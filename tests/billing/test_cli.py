"""``hub billing``: claims, build, scrub, export and submit on the store of the API client."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub.cli import app
from hub.settings import Settings
from mappings.x12.validation import validate
from tests.billing.conftest import CONNECTOR
from tests.billing.scenario import ACME, MEDICARE
from tests.billing.support import claim_numbers, rows
from tests.cli_env import cli_environment


def test_the_billing_commands(clinic: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                              tmp_path: Path) -> None:
    runner = CliRunner()
    with cli_environment(settings, monkeypatch):
        built = runner.invoke(app, ["billing", "build", "--through", "2025-03-31"])
        assert built.exit_code == 0, built.output
        assert "12 created, 0 updated, 0 replacement(s), 0 unchanged; 1 blocked, 0 skipped" in built.output
        assert runner.invoke(app, ["billing", "build", "--through", "March"]).exit_code == 2

        listed = runner.invoke(app, ["billing", "claims", "--status", "blocked"])
        assert listed.exit_code == 0, listed.output
        blocked = rows(settings)["p2-wed"]
        assert blocked.claim_id in listed.output and rows(settings)["pt-mon"].claim_id not in listed.output
        assert "Roe" not in listed.output and "Doe" not in listed.output  # no patient names
        assert runner.invoke(app, ["billing", "claims", "--status", "lost"]).exit_code == 2

        scrubbed = runner.invoke(app, ["billing", "scrub", blocked.claim_id])
        assert scrubbed.exit_code == 1
        assert "ncci.pair" in scrubbed.output and "distinct-service modifier" in scrubbed.output
        ready = runner.invoke(app, ["billing", "scrub", rows(settings)["pt-mon"].claim_id])
        assert ready.exit_code == 0, ready.output
        assert runner.invoke(app, ["billing", "scrub", "no-such-claim"]).exit_code == 2

        out = tmp_path / "files"
        exported = runner.invoke(app, ["billing", "export", "--out", str(out), "--connector", CONNECTOR])
        assert exported.exit_code == 0, exported.output
        names = sorted(p.name for p in out.iterdir())
        assert [n.split("-")[0] for n in names] == sorted([MEDICARE, ACME])
        for path in out.iterdir():
            text = path.read_text()
            assert [i for i in validate(text) if i.severity == "error"] == []
            for number in claim_numbers(text):
                assert number in exported.output
            assert path.name in exported.output
        assert "no claim is ready" in runner.invoke(app, ["billing", "submit"]).output
        assert runner.invoke(app, ["billing", "submit", "--connector", "nope"]).exit_code == 2
