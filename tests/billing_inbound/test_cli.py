"""``billing import`` and ``billing eligibility`` on a Typer group built here, as the CLI registers them."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hub.cli.billing_files import register
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.unit_of_work import unit_of_work
from sandboxes.clearinghouse import SandboxClearinghouse
from tests.billing_inbound.support import billing_claim, claim, envelope, patient_and_coverage, remit_body, sent_file
from tests.cli_env import cli_environment


def _app() -> typer.Typer:
    billing_app = typer.Typer()
    register(billing_app)
    return billing_app


def test_billing_import_prints_what_each_file_applied(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    sent_file(settings, [claim("TC1", ("97110", "100.00"))], 1101)
    good = tmp_path / "remit.835"
    good.write_bytes(envelope([("835", remit_body(["CLP*TC1*1*100*64*16*MB*P1*11*1", "CAS*CO*45*20",
                                                   "CAS*PR*2*16"], total="64"))]))
    bad = tmp_path / "junk.x12"
    bad.write_bytes(b"not an X12 file at all")
    with cli_environment(settings, monkeypatch):
        result = CliRunner().invoke(_app(), ["import", str(good), str(bad)])
        assert result.exit_code == 1, result.output
        assert "remit.835: message" in result.output
        assert "835 0001: applied; 1 paid; paid 64.00, patient responsibility 16.00" in result.output
        assert "junk.x12: not readable" in result.output and "[x12.interchange-header]" in result.output
        assert billing_claim(settings, "TC1").status == "paid"
        again = CliRunner().invoke(_app(), ["import", str(good)])
        assert again.exit_code == 0 and "already imported" in again.output


def test_billing_eligibility_queues_a_270(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                          house: SandboxClearinghouse, connector_id: int) -> None:
    patient_and_coverage(settings)
    with cli_environment(settings, monkeypatch):
        result = CliRunner().invoke(_app(), ["eligibility", "cov-jones", "--discipline", "OT"])
        assert result.exit_code == 0, result.output
        assert "270 queued to clearinghouse" in result.output and "service types AD" in result.output
        message_id = result.output.rsplit("message ", 1)[1].strip(" )\n")
        with unit_of_work(settings, readonly=True) as session:
            assert len(repo.jobs_of(session, message_id=message_id)) == 1
        missing = CliRunner().invoke(_app(), ["eligibility", "nosuch"])
        assert missing.exit_code == 2 and "error:" in missing.output
