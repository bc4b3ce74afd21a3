"""Project-level checks: layering, CLI, settings, health probes, deployment files."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_import_layering_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    declared = len(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"])
    assert declared >= 5 and f"Contracts: {declared} kept, 0 broken" in result.stdout  # every one checked


def test_ruff_finds_nothing() -> None:
    """The house style (pyproject [tool.ruff]) holds everywhere: lint errors fail the suite, so CI."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ruff")), "check", "--no-cache", "."],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_mypy_strict_finds_nothing(tmp_path: Path) -> None:
    """mappings/ and connectors/ type-check under mypy --strict (pyproject [tool.mypy]). The cache lives in the
    virtual environment that runs the suite (the project's own, git-ignored), else in the test's directory: a
    cold run takes 10-90 s (by load), a warm one about a second."""
    venv = Path(sys.prefix)
    cache = venv / ".mypy-cache" if venv != Path(sys.base_prefix) and os.access(venv, os.W_OK) else tmp_path
    result = subprocess.run(
        [str(Path(sys.executable).with_name("mypy")), "--cache-dir", str(cache)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    assert "Success: no issues found" in result.stdout


def test_cli_help_lists_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "db", "version"):
        assert command in result.output
    serve_help = CliRunner().invoke(cli, ["serve", "--help"])
    assert "--port" in serve_help.output and "--no-migrate" in serve_help.output


def test_cli_version() -> None:
    result = CliRunner().invoke(cli, ["version"])
    assert result.exit_code == 0
    assert "FHIR R4 4.0.1" in result.output


def test_cli_db_upgrade_creates_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'hub.db'}"
    env = {**os.environ, "HUB_DATABASE_URL": url}
    hub = str(Path(sys.executable).with_name("hub"))
    result = subprocess.run([hub, "db", "upgrade"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from hub.store.migrate import head

    assert f"revision {head()}" in result.stdout
    current = subprocess.run([hub, "db", "current"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert current.stdout.strip() == head()


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("HUB_BASE_URL", "https://hub.example.org/")
    settings = Settings()
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.fhir_base == "https://hub.example.org/fhir"
    assert settings.broker_url == ""


def test_production_refuses_placeholder_secret() -> None:
    with pytest.raises(ValidationError, match="HUB_SECRET_KEY"):
        Settings(environment="production")
    assert Settings(environment="production", secret_key="a-real-secret-of-some-length",
                    base_url="https://hub.example.org").environment == "production"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"


def test_readiness_fails_when_store_not_migrated(tmp_path: Path) -> None:
    from hub.app import create_app

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", environment="test")
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200


def test_compose_file_has_the_deployment_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"api", "worker", "beat", "mllp", "flower", "postgres", "redis"} <= set(compose["services"])
    assert compose["services"]["worker"]["command"][:2] == ["hub", "worker"]
    assert compose["services"]["api"]["environment"]["HUB_BROKER_URL"].startswith("redis://")


def test_readme_names_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    head = readme[:1500]
    assert "./scripts/demo" in head and "./scripts/test" in head
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
