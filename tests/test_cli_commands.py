"""Packages add commands to ``hub`` through the ``therapy_hub.cli`` entry point group (the workers add
``worker`` and ``beat``): the hub's command line never imports them by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hub.cli import app


def test_the_workers_commands_are_on_the_hub_command_line() -> None:
    result = CliRunner().invoke(app, ["worker", "--help"])
    assert result.exit_code == 0 and "--concurrency" in result.output and "--beat" in result.output
    assert CliRunner().invoke(app, ["beat", "--help"]).exit_code == 0


def test_commands_come_from_the_installed_entry_points(tmp_path: Path) -> None:
    (tmp_path / "extra_commands.py").write_text(
        "def hello() -> None:\n    print('hello from a plugin')\n\n\n"
        "def register(app):\n    app.command()(hello)\n")
    dist = tmp_path / "extra_commands-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-commands\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[therapy_hub.cli]\nworkers = workers.cli:register\nextra = extra_commands:register\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", ""),
                                                        str(Path(__file__).resolve().parents[1])])}
    listed = subprocess.run([sys.executable, "-m", "hub.cli", "--help"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "hello" in listed.stdout and "worker" in listed.stdout and "beat" in listed.stdout
    ran = subprocess.run([sys.executable, "-m", "hub.cli", "hello"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert ran.stdout.strip() == "hello from a plugin", ran.stderr[-2000:]
