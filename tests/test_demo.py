"""`hub demo` walks the whole referral loop on embedded defaults, with no services (the plan for signature
also by fax and by Direct, signed pages back on both; two more certifications signed only on paper, one
faxed back as a scanned image-only page, one sent back by Direct, both completed by the document intake;
the visits billed through the sandbox clearinghouse and paid), finishes green,
keeps its files in one directory, and writes no PHI to any log stream."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from hub.demo import COVERAGE, PATIENT
from hub.demo_billing import CLINIC_NPI, FEES, THERAPIST_NPI
from mappings.billing.codes import npi_is_valid
from tests.processes import MARKER, wait_until_gone

HUB = str(Path(sys.executable).with_name("hub"))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str], str]:
    cwd = tmp_path_factory.mktemp("demo")
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")} | {MARKER: marker}
    result = subprocess.run([HUB, "demo", "--exit"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return cwd, result, marker


def test_hub_demo_finishes_green_with_no_services(demo_run) -> None:  # type: ignore[no-untyped-def]
    tmp_path, result, _ = demo_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for expected in ("referral sent", "sent for signature", "signed", "progress report: due",
                     "discharged: referral completed", "all signatures valid: True"):
        assert expected in out, out
    assert "[12/12] done" in out
    assert "HL7 v2 messages acknowledged" in out and " 0 HL7 v2" not in out  # every connector kind is used
    # the legacy system heard of the referrals' status, the booked visit and the three plans of care (each
    # the page sent for signature and its signed version: six documents)
    assert "RRI^I12 x" in out and "SIU^S12 x1" in out and "MDM^T02 x6" in out, out
    assert "SMART Backend Services" in out
    # the plan for signature went out by fax and by Direct, and the signed pages came back on both
    assert "plan of care faxed (fax " in out and "sent by Direct (<" in out, out
    assert "came back by fax (stored, HTTP 202) and by Direct (stored, SMTP 250)" in out, out
    assert "signed pages by fax: DocumentReference/" in out and "signed pages by Direct: DocumentReference/" in out
    assert (tmp_path / "var" / "demo" / "hub.db").exists()


def test_both_paper_loops_close_by_fax_and_by_direct(demo_run) -> None:  # type: ignore[no-untyped-def]
    """Two certifications nobody signs through the API: one comes back by fax as a scanned image-only
    page, one by Direct as a signed plan, and the intake matches each and completes its Task."""
    _, result, _ = demo_run
    out = result.stdout
    assert out.count("to be signed on paper only") == 2, out
    assert "faxed back the signed occupational therapy plan: a scanned, image-only page (HTTP 202)" in out, out
    assert "replied by Direct with the signed speech therapy plan (SMTP 250)" in out, out
    assert "waiting for the document intake to complete both certifications" in out, out
    closed = {}
    for channel, plan, document, task in re.findall(
            r"signed on paper, back by (fax|Direct): \w[\w ]+ plan (CarePlan/[\w-]+), document "
            r"(DocumentReference/[\w-]+) \(intake: matched\); certification (Task/[\w-]+) completed", out):
        closed[channel] = (plan, document, task)
    assert set(closed) == {"fax", "Direct"}, out
    # two plans, two documents, two Tasks; none of them the step-6 certification signed through the API
    assert len({v[0] for v in closed.values()}) == len({v[1] for v in closed.values()}) == 2
    assert len({v[2] for v in closed.values()}) == 2
    assert "both paper certifications completed by the intake" in out, out
    assert out.index("both paper certifications completed") < out.index("[10/12]")


def _amount(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def test_the_demo_bills_its_visits_and_shows_the_payment(demo_run) -> None:  # type: ignore[no-untyped-def]
    """Eligibility at intake (270 -> 271); after the episode a claim per visit, one blocked by the scrubber
    and fixed, one 837P delivered by the worker, the 999 and 277CA polled back, then the 835: every claim
    paid, the amounts adding up to the cent, the discharge re-test denied with its CARC."""
    _, result, _ = demo_run
    out = result.stdout
    assert npi_is_valid(CLINIC_NPI) and npi_is_valid(THERAPIST_NPI)
    # asked at intake, answered while the clinic accepts the referral
    assert out.index("[ 4/12]") < out.index("eligibility asked (270)") < out.index("[ 5/12]"), out
    assert out.index("[ 5/12]") < out.index("eligibility (270 -> 271") < out.index("[ 6/12]"), out
    assert "coverage active; PT visits this year: 20 allowed, 0 used; copay $25.00 a visit" in out, out
    billing = out[out.index("[10/12] billing"):out.index("[11/12]")]
    assert "19 ChargeItems on the 10 visits" in billing, billing
    assert "claims built: 10 (one per visit), 9 ready, 1 blocked by the scrubber" in billing, billing
    assert re.search(r"visit 5, claim [A-Z0-9]+, line \d: ncci\.pair: 97\d+ with 97\d+ on \d{4}-\d\d-\d\d", billing)
    assert "modifier 59 on 97140 of visit 5" in billing and "all 10 ready" in billing, billing
    # the CMS 8-minute rule on the demo's minutes, and the discipline modifier on every line
    units = dict(re.findall(r"(\d{5}) x(\d+)", billing[billing.index("units by the CMS 8-minute rule"):]))
    assert units == {"97110": "17", "97140": "4", "97161": "1", "97530": "5", "97750": "1"}, billing
    assert "GP on 19 of 19 lines, 59 on 1" in billing
    submitted = re.search(r"claims submitted: 10 in one 837P .* charge \$([\d,.]+)", billing)
    assert submitted, billing
    charge = sum((Decimal(FEES[code]) * int(n) for code, n in units.items()), Decimal(0))
    assert _amount(submitted.group(1)) == charge
    assert "the worker delivered the 837P over SFTP" in billing and "10 claims)" in billing
    assert "polled the 999 (the 837P's syntax): 10 claims accepted" in billing, billing
    assert "polled the 277CA (the claims, by the payer's front end): 10 claims acknowledged" in billing, billing
    assert "polled the 835: 9 paid, 1 partially_paid; 10 ClaimResponses written" in billing, billing
    paid = re.search(r"payment: 10 of 10 claims paid \(9 in full\): billed \$([\d,.]+), allowed \$([\d,.]+), "
                     r"paid \$([\d,.]+), patient responsibility \$([\d,.]+); check/EFT trace (\w+)", billing)
    assert paid, billing
    billed, allowed, paid_amount, patient = (_amount(paid.group(n)) for n in range(1, 5))
    adjustments = {k: _amount(v) for k, v in re.findall(r"(\w\w-\d+) \$([\d,.]+)", billing.split("adjustments:")[1]
                                                                                     .split("(")[0])}
    denied = Decimal(FEES["97750"])  # the sandbox payer does not cover the discharge re-test
    assert billed == charge and adjustments["CO-50"] == denied
    assert allowed == (billed - denied) * Decimal("0.80")  # the sandbox payer allows 80 % of each line
    assert allowed == paid_amount + patient and patient == adjustments["PR-2"]
    assert billed == allowed + adjustments["CO-45"] + adjustments["CO-50"]
    assert 'denied: CO-50 "Not deemed a medical necessity by the payer": 1 line(s), $48.00 (visit 10)' in billing


def test_after_exit_the_demo_tells_how_to_go_on_not_where_a_stopped_hub_was(demo_run) -> None:  # type: ignore[no-untyped-def]
    _, result, _ = demo_run
    out = result.stdout
    assert "have stopped" in out and "client_secret" not in out and "-u demo-admin:" not in out
    assert "/dashboard" not in out and "Where to look" not in out
    assert f"{HUB} jobs" in out and f"{HUB} demo" in out  # the hub command by its path: not on PATH


def test_the_demo_keeps_its_files_in_one_directory_and_checkpoints_its_store(demo_run) -> None:  # type: ignore[no-untyped-def]
    tmp_path, _, marker = demo_run
    data = tmp_path / "var" / "demo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["var"]
    assert not (data / "var").exists()
    assert (data / "broker.sqlite").exists() and (data / "hub.log").exists()
    wal = data / "hub.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert not wait_until_gone(marker, 10)


def test_no_phi_in_any_log_stream_of_the_demo(demo_run) -> None:  # type: ignore[no-untyped-def]
    """The patient's name, MRN, birth date (ISO and HL7 forms) and member id, in every log stream:
    the demo's stdout and stderr, and the log of its hub and worker processes."""
    tmp_path, result, _ = demo_run
    streams = {"stdout": result.stdout, "stderr": result.stderr}
    streams |= {str(p): p.read_text(errors="replace") for p in tmp_path.rglob("*.log")}
    assert len(streams["stdout"]) > 1000 and any(len(v) > 10_000 for k, v in streams.items() if k.endswith(".log"))
    phi = [PATIENT["family"], PATIENT["identifier"]["value"], PATIENT["birth_date"],
           PATIENT["birth_date"].replace("-", ""), COVERAGE["member_id"]]
    hits = {(name, value): text.count(value) for name, text in streams.items() for value in phi if value in text}
    assert not hits, hits


def test_hub_demo_help_explains_itself() -> None:
    result = subprocess.run([HUB, "demo", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--keep-running" in result.stdout and "sandbox" in result.stdout
