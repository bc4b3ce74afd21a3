"""`hub demo` walks the whole referral loop on embedded defaults, with no services, and finishes green."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HUB = str(Path(sys.executable).with_name("hub"))


def test_hub_demo_finishes_green_with_no_services(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    result = subprocess.run([HUB, "demo", "--exit"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for expected in ("referral sent", "sent for signature", "signed", "progress report: due",
                     "discharged: referral completed", "all signatures valid: True", "Where to look"):
        assert expected in out, out
    assert "[11/11] done" in out and "/dashboard" in out
    assert "HL7 v2 messages acknowledged" in out and " 0 HL7 v2" not in out  # every connector kind is used
    # the legacy system heard of the referral's status, the booked visit and the plan of care (the page
    # sent for signature and its signed version: two documents)
    assert "RRI^I12 x" in out and "SIU^S12 x1" in out and "MDM^T02 x2" in out, out
    assert "SMART Backend Services" in out
    assert (tmp_path / "var" / "demo" / "hub.db").exists()


def test_hub_demo_help_explains_itself() -> None:
    result = subprocess.run([HUB, "demo", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--keep-running" in result.stdout and "sandbox" in result.stdout
