"""An idle hub is quiet: the scheduler sweeps, polls and purges, and logs only what changed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HUB = str(Path(sys.executable).with_name("hub"))


def test_an_idle_worker_with_beat_writes_nothing_while_it_sweeps(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env |= {"HUB_SWEEP_INTERVAL_SECONDS": "0.3", "HUB_POLL_INTERVAL_SECONDS": "0.5",
            "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    subprocess.run([HUB, "db", "upgrade"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([HUB, "worker", "--beat"], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(1)
        before = log.read_bytes()
        time.sleep(4)  # a dozen sweeps, some polls
        idle = log.read_bytes()[len(before):].decode(errors="replace")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert idle.strip() == "", idle
