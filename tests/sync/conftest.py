"""A whole stack for sync tests: store, broker, API client, sandbox receiver and real workers.

Two stacks, the two real deployments: ``embedded`` (SQLite store + kombu's SQLAlchemy transport
on SQLite, no services) and ``redis`` (PostgreSQL store + Redis broker). Workers are real
``hub worker --beat`` processes, started and killed by the tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub import processes
from hub.app import create_app
from hub.settings import Settings
from hub.store.migrate import upgrade
from sandboxes.webhook import SandboxReceiver
from tests.brokers import redis_server
from tests.pg import fresh_database

SECRET = "sandbox-secret-for-tests-0123456789"
HUB = str(Path(sys.executable).with_name("hub"))


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Stack:
    name: str
    settings: Settings
    client: TestClient
    workdir: Path
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, concurrency: int = 4, loglevel: str = "WARNING") -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115
        process = processes.spawn(  # its own process group, ended with this test process should it die
            [HUB, "worker", "--beat", "--concurrency", str(concurrency), "--loglevel", loglevel],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal the worker's whole process group (main process, pool children, beat)."""
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.workers:
            if process.returncode is None:
                self.kill_worker(process)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([HUB, *args], cwd=self.workdir, env=self.env, capture_output=True, text=True,
                              timeout=60)

    # --- API helpers

    def add_webhook(self, name: str, url: str, **options: object) -> dict:
        body = {"name": name, "kind": "webhook", "config": {"url": url, "secret": SECRET},
                "max_attempts": 5, "timeout_seconds": 1.0, "backoff_base_seconds": 0.2, "backoff_max_seconds": 1.0}
        body.update(options)
        response = self.client.put(f"/admin/api/connectors/{name}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def add_route(self, name: str, resource_type: str, connector: str, **options: object) -> dict:
        response = self.client.post(
            "/admin/api/routes", json={"name": name, "resource_type": resource_type, "connector": connector, **options}
        )
        assert response.status_code == 201, response.text
        return response.json()

    def create_referral(self, patient: str = "p1", **extra: object) -> dict:
        resource = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                    "subject": {"reference": f"Patient/{patient}"}, **extra}
        response = self.client.post("/fhir/ServiceRequest", content=json.dumps(resource),
                                    headers={"Content-Type": "application/fhir+json"})
        assert response.status_code == 201, response.text
        return response.json()

    def jobs(self, status: str | None = None) -> list[dict]:
        params = {"limit": 500, **({"status": status} if status else {})}
        return self.client.get("/admin/api/jobs", params=params).json()["items"]

    def all_jobs_finished(self) -> bool:
        jobs = self.jobs()
        return bool(jobs) and all(j["status"] in ("succeeded", "dead") for j in jobs)


def _settings(db: str, broker: str, queue: str) -> tuple[Settings, dict[str, str]]:
    values = {
        "HUB_DATABASE_URL": db,
        "HUB_BROKER_URL": broker,
        "HUB_TASK_QUEUE": queue,
        "HUB_SWEEP_INTERVAL_SECONDS": "1",
        "HUB_REQUEUE_GRACE_SECONDS": "2",
        "HUB_ENVIRONMENT": "test",
        "HUB_BASE_URL": "",
    }
    settings = Settings(
        database_url=db, broker_url=broker, task_queue=queue, sweep_interval_seconds=1, requeue_grace_seconds=2,
        environment="test", base_url="", auth_disabled=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(values)
    return settings, env


def _build(name: str, db: str, broker: str, workdir: Path) -> Iterator[Stack]:
    upgrade(db)
    settings, env = _settings(db, broker, f"hub-test-{uuid.uuid4().hex[:10]}")
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        stack = Stack(name=name, settings=settings, client=client, workdir=workdir, env=env)
        try:
            yield stack
        finally:
            stack.stop_all()


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.postgres)])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    if request.param == "embedded":
        yield from _build(
            "embedded", f"sqlite:///{tmp_path / 'hub.db'}", f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}", tmp_path
        )
        return
    admin = request.getfixturevalue("postgres_admin_url")
    redis_url = request.getfixturevalue("redis_url")
    with fresh_database(admin) as db:
        yield from _build("redis", db, redis_url, tmp_path)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[SandboxReceiver]:
    with SandboxReceiver(secret=SECRET) as sandbox:
        yield sandbox


# ---------------------------------------------------------------- in-process tests (no worker)


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The store of tests/conftest.py (both backends) with an embedded broker of this test only:
    publishing after commit works, and the tasks just sit in ``broker.sqlite`` (no worker runs)."""
    return settings.model_copy(update={"broker_url": f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"})


def queued_tasks(settings: Settings) -> list[dict]:
    """The ``hub.deliver`` tasks waiting in the embedded broker of ``settings``: job id and ETA."""
    import base64

    from sqlalchemy import create_engine, inspect
    from sqlalchemy import text as sql

    engine = create_engine(settings.broker_url.removeprefix("sqla+"))
    try:
        if not inspect(engine).has_table("kombu_message"):
            return []
        with engine.connect() as conn:
            payloads = conn.execute(sql("SELECT payload FROM kombu_message ORDER BY id")).scalars().all()
    finally:
        engine.dispose()
    tasks = []
    for payload in payloads:
        message = json.loads(payload)
        assert message["headers"]["task"] == "hub.deliver", message["headers"]["task"]
        args = json.loads(base64.b64decode(message["body"]))[0]
        tasks.append({"job_id": args[0], "eta": message["headers"].get("eta")})
    return tasks
