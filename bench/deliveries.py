"""Delivery throughput and latency of the sync engine, per broker.

For each broker (embedded: kombu's SQLAlchemy transport on SQLite with the SQLite store; redis: the
local Redis with a fresh PostgreSQL database): routes N referrals to the sandbox webhook receiver,
starts a real `hub worker`, and measures
  - deliveries/s from worker start until the receiver has all N (queue drained),
  - end-to-end latency of single messages (POST /fhir -> received) with an idle worker.
Only 127.0.0.1 traffic. Prints a table and writes JSON to bench/results/.

    .venv/bin/python bench/deliveries.py --messages 300 --latency-samples 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HUB = str(Path(sys.executable).with_name("hub"))
SECRET = "bench-secret-0123456789abcdef"


def _referral(i: int) -> bytes:
    return json.dumps(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/p{i}"},
        }
    ).encode()


def run_broker(
    name: str, db: str, broker: str, workdir: Path, messages: int, samples: int, concurrency: int
) -> dict:
    from fastapi.testclient import TestClient

    from hub.app import create_app
    from hub.settings import Settings
    from hub.store.migrate import upgrade
    from sandboxes.webhook import SandboxReceiver

    upgrade(db)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=db, broker_url=broker, task_queue=queue, environment="test",
                        auth_disabled=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        {"HUB_DATABASE_URL": db, "HUB_BROKER_URL": broker, "HUB_TASK_QUEUE": queue, "HUB_ENVIRONMENT": "test"}
    )
    headers = {"Content-Type": "application/fhir+json"}
    with SandboxReceiver(secret=SECRET) as receiver, TestClient(create_app(settings)) as client:
        client.put(
            "/admin/api/connectors/bench",
            json={
                "name": "bench",
                "kind": "webhook",
                "config": {"url": receiver.url + "/in", "secret": SECRET},
            },
        )
        client.post(
            "/admin/api/routes", json={"name": "all", "resource_type": "ServiceRequest", "connector": "bench"}
        )
        print(f"[{name}] writing {messages} routed referrals ...", flush=True)
        started = time.perf_counter()
        for i in range(messages):
            assert (
                client.post("/fhir/ServiceRequest", content=_referral(i), headers=headers).status_code == 201
            )
        write_rate = messages / (time.perf_counter() - started)
        print(f"[{name}] starting a worker (concurrency {concurrency}) ...", flush=True)
        worker = subprocess.Popen(
            [HUB, "worker", "--concurrency", str(concurrency), "--loglevel", "WARNING"],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            started = time.perf_counter()
            first = None
            while len(receiver.deliveries) < messages:
                if first is None and receiver.deliveries:
                    first = time.perf_counter() - started
                if time.perf_counter() - started > 600:
                    raise RuntimeError(f"{name}: only {len(receiver.deliveries)} of {messages} delivered")
                time.sleep(0.02)
            drain = time.perf_counter() - started
            print(f"[{name}] {messages} delivered in {drain:.1f}s; measuring latency ...", flush=True)
            latencies = []
            for i in range(samples):
                before = len(receiver.deliveries)
                t0 = time.perf_counter()
                client.post("/fhir/ServiceRequest", content=_referral(messages + i), headers=headers)
                while len(receiver.deliveries) <= before:
                    time.sleep(0.002)
                latencies.append((time.perf_counter() - t0) * 1000)
        finally:
            os.killpg(worker.pid, 9)
            worker.wait()
    return {
        "broker": name,
        "messages": messages,
        "api_writes_per_s": round(write_rate, 1),
        "deliveries_per_s": round(messages / (drain - (first or 0) + 1e-9), 1),
        "drain_seconds_incl_worker_start": round(drain, 2),
        "latency_p50_ms": round(statistics.median(latencies), 1),
        "latency_max_ms": round(max(latencies), 1),
        "duplicates_at_receiver": receiver.duplicates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=300, help="referrals to deliver per broker")
    parser.add_argument(
        "--latency-samples", type=int, default=20, help="single-message round trips per broker"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--brokers", default="embedded,redis", help="comma list of embedded, redis")
    args = parser.parse_args()

    results = []
    for name in args.brokers.split(","):
        with tempfile.TemporaryDirectory(prefix=f"hub-bench-{name}-") as tmp:
            workdir = Path(tmp)
            if name == "embedded":
                results.append(
                    run_broker(
                        name,
                        f"sqlite:///{workdir / 'hub.db'}",
                        f"sqla+sqlite:///{workdir / 'broker.sqlite'}",
                        workdir,
                        args.messages,
                        args.latency_samples,
                        args.concurrency,
                    )
                )
            elif name == "redis":
                import psycopg

                admin = os.environ.get(
                    "HUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
                )
                redis_url = os.environ.get("HUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
                db_name = f"hub_bench_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{db_name}"')
                try:
                    results.append(
                        run_broker(
                            name,
                            admin.rsplit("/", 1)[0] + f"/{db_name}",
                            redis_url,
                            workdir,
                            args.messages,
                            args.latency_samples,
                            args.concurrency,
                        )
                    )
                finally:
                    from hub.store.db import engine_for

                    engine_for.cache_clear()
                    with psycopg.connect(admin, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            else:
                parser.error(f"unknown broker {name}")

    columns = [
        "broker",
        "api_writes_per_s",
        "deliveries_per_s",
        "latency_p50_ms",
        "latency_max_ms",
        "duplicates_at_receiver",
    ]
    print()
    print(" | ".join(f"{c:>22}" for c in columns))
    for row in results:
        print(" | ".join(f"{row[c]!s:>22}" for c in columns))
    out = ROOT / "bench" / "results" / f"deliveries-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine_cores": os.cpu_count(), "results": results}, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
