"""The test-only fault points are honoured in the test environment only, and only at the path and window named."""

from __future__ import annotations

from pathlib import Path

from hub import faults
from hub.settings import Settings


def test_ignored_outside_the_test_environment(tmp_path: Path) -> None:
    settings = Settings(environment="development", var_dir=tmp_path, fault_pause_before_commit="fax-receive",
                        fault_pause_after_commit="fax-receive")
    faults.pause(settings, "before", "fax-receive")  # returns at once
    faults.pause(settings, "after", "fax-receive")
    assert list(tmp_path.iterdir()) == []


def test_only_the_named_point_and_window_pause(tmp_path: Path) -> None:
    settings = Settings(environment="test", var_dir=tmp_path, fault_pause_before_commit="direct-receive")
    faults.pause(settings, "before", "fax-receive")
    faults.pause(settings, "after", "direct-receive")
    assert list(tmp_path.iterdir()) == []
    # that it blocks at the named point is shown by tests/inbound/test_kill_mid_receive.py (a real hub, killed)
