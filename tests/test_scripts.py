"""scripts/bootstrap installs only when the project changed (each demo, serve and test run calls it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bootstrap_installs_once_then_only_when_pyproject_or_the_extras_change(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap", tmp_path / "scripts" / "bootstrap")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    calls = tmp_path / "pip-calls"
    fake = tmp_path / ".venv" / "bin" / "python"  # stands in for the venv's interpreter: records pip runs
    fake.parent.mkdir(parents=True)
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)

    def bootstrap(*args: str) -> list[str]:
        subprocess.run([str(tmp_path / "scripts" / "bootstrap"), *args], check=True, timeout=30)
        return calls.read_text().splitlines() if calls.exists() else []

    assert len(bootstrap("postgres")) == 2  # pip upgrade + install
    assert len(bootstrap("postgres")) == 2  # nothing changed: no install
    assert len(bootstrap("dev")) == 4  # other extras
    with open(tmp_path / "pyproject.toml", "a") as f:
        f.write("\n# changed\n")
    assert len(bootstrap("dev")) == 6
    assert "-e .[dev]" in calls.read_text()


def test_the_license_is_an_spdx_expression() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])
