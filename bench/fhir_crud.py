"""FHIR CRUD benchmark: create and read of a small ServiceRequest, hub vs. the fhirstarter framework.

For each target (``hub serve`` on SQLite, ``hub serve`` on a fresh PostgreSQL database, and a
small fhirstarter app as the peer baseline) the script starts the server as a subprocess on a free
loopback port, waits until ``/metadata`` answers, runs each scenario (create/read x concurrency)
with ``bench/loadgen.py`` in a separate process, and stops the server. It prints progress lines, a
table of throughput and latency, and writes everything to ``bench/results/fhir_crud-<UTC time>.json``.

Run from the repository root with the hub's venv::

    .venv/bin/python bench/fhir_crud.py            # about 2-4 minutes with the defaults
    .venv/bin/python bench/fhir_crud.py --help

All traffic goes to 127.0.0.1. Every scenario is bounded by a request count and a duration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from fhir_crud_runs import Scenario, TargetResult, render_cpu_table, render_table, run_target
from fhir_crud_servers import fhirstarter_server, hub_has_command, hub_serve_supports, hub_server
from fhir_crud_support import (
    ALL_TARGETS,
    BENCH_DIR,
    BUSY_SHARE,
    RATE_LIMIT_OUT_OF_REACH,
    REPO,
    cpu_model,
    ensure_fhirstarter_venv,
    fresh_postgres_database,
    git_commit,
    package_versions,
    postgres_settings,
    progress,
)

# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fhir_crud.py",
        description=(
            "Benchmark FHIR create (POST /ServiceRequest) and read (GET /ServiceRequest/{id}) of a small "
            "ServiceRequest: throughput and p50/p99 latency at 1 and 32 concurrent keep-alive connections, "
            "against 'hub serve' on SQLite, 'hub serve' on a fresh PostgreSQL database, and the fhirstarter "
            "framework (in-memory store) as a peer baseline. The load comes from bench/loadgen.py in a "
            "separate process; all traffic stays on 127.0.0.1. Results: a table on stdout and JSON in "
            "bench/results/. With the defaults a run takes about 2-4 minutes (plus about a minute the first "
            "time, to build bench/.venv-fhirstarter)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=ALL_TARGETS,
        default=ALL_TARGETS,
        metavar="TARGET",
        help=f"servers to measure, any of: {' '.join(ALL_TARGETS)}",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=["create", "read"],
        default=["create", "read"],
        metavar="OP",
        help="interactions to measure: create, read",
    )
    parser.add_argument(
        "--concurrency",
        nargs="+",
        type=int,
        default=[1, 32],
        metavar="N",
        help="concurrent connections (one request in flight on each)",
    )
    parser.add_argument(
        "--requests", type=int, default=4000, help="measured requests per scenario (upper bound)"
    )
    parser.add_argument(
        "--duration", type=float, default=8.0, help="seconds of measuring per scenario (upper bound)"
    )
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured warm-up requests per scenario")
    parser.add_argument(
        "--seed", type=int, default=100, help="resources created (unmeasured) before a read scenario"
    )
    parser.add_argument(
        "--body",
        choices=["plain", "referral"],
        default="plain",
        help="ServiceRequest to create: 'plain' (no category), or 'referral' (a physical therapy category: "
        "the hub then also opens a referral Task in the same transaction)",
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator's HTTP client; 'raw' is a lean asyncio HTTP/1.1 client, httpx saturates first",
    )
    parser.add_argument(
        "--postgres-admin-url",
        default=os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL database used to create and drop the bench's fresh database "
        "(env BENCH_POSTGRES_ADMIN_URL)",
    )
    parser.add_argument(
        "--server-log-level",
        default="warning",
        help="uvicorn log level of the servers ('warning' keeps access logs out of the measurement)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each scenario, wait up to SECONDS for other processes to leave the CPUs idle "
        "(0: do not wait; busy scenarios are flagged either way)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run a scenario up to N times while other processes disturb it, and keep the least "
        "disturbed attempt (for shared machines)",
    )
    parser.add_argument(
        "--hub-auth",
        choices=["token", "disabled"],
        default="token",
        help="'token': register an OAuth2 client with 'hub clients add' and send a bearer token, as real "
        "clients do; 'disabled': HUB_AUTH_DISABLED=true (development mode, no authentication)",
    )
    parser.add_argument(
        "--hub-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for 'hub serve' (repeatable), e.g. HUB_RATE_LIMIT_PER_MINUTE=1200",
    )
    parser.add_argument(
        "--hub-embedded-worker",
        action="store_true",
        help="let 'hub serve' start its embedded sync worker and scheduler (by default the bench passes "
        "--no-embedded-worker when the hub has it, so that only the API runs)",
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=90.0, help="seconds to wait for a server to be ready"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=BENCH_DIR / "results", help="where the JSON results go"
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON results file")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the servers' logs (their path is printed)"
    )
    parser.add_argument(
        "--rebuild-fhirstarter-venv", action="store_true", help="delete and rebuild bench/.venv-fhirstarter"
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.duration <= 0 or args.warmup < 0 or args.seed < 1 or args.repeat < 1:
        parser.error("--requests, --seed and --repeat must be >= 1, --duration > 0, --warmup >= 0")
    if any(c < 1 or c > 256 for c in args.concurrency):
        parser.error("--concurrency values must be between 1 and 256")
    args.targets = [t for t in ALL_TARGETS if t in args.targets]  # fixed column order
    pairs = [item.partition("=") for item in args.hub_env]
    if any(not key or not sep for key, sep, _ in pairs):
        parser.error("--hub-env takes KEY=VALUE")
    args.hub_env = {key: value for key, _, value in pairs}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = [Scenario(op, c) for op in args.scenarios for c in args.concurrency]
    started_at = datetime.now(UTC)
    progress(
        f"fhir_crud: targets {', '.join(args.targets)}; scenarios {', '.join(s.key for s in scenarios)}; "
        f"{os.cpu_count()} CPUs shared by servers and load generator"
    )

    fhirstarter_python = (
        ensure_fhirstarter_venv(args.rebuild_fhirstarter_venv) if "fhirstarter" in args.targets else None
    )

    workdir = Path(tempfile.mkdtemp(prefix="fhir-crud-bench-"))
    results: list[TargetResult] = []
    hub_versions = package_versions(
        sys.executable,
        [
            "therapy-hub",
            "fastapi",
            "starlette",
            "uvicorn",
            "pydantic",
            "fhir.resources",
            "sqlalchemy",
            "psycopg",
            "uvloop",
            "httptools",
        ],
    )
    args.hub_extra_options = []
    if any(t.startswith("hub-") for t in args.targets) and not args.hub_embedded_worker:
        if hub_serve_supports("--no-embedded-worker"):
            args.hub_extra_options.append("--no-embedded-worker")
    if args.hub_extra_options:
        progress(f"hub: serving with {' '.join(args.hub_extra_options)} (the API alone is measured)")
    args.hub_has_clients = False
    if any(t.startswith("hub-") for t in args.targets) and args.hub_auth == "token":
        args.hub_has_clients = hub_has_command("clients")
        if not args.hub_has_clients:
            progress("hub: no 'hub clients' command in this version: requests go without a token")
    interrupted = False
    try:
        for name in args.targets:
            result = TargetResult(name)
            results.append(result)
            if name == "hub-sqlite":
                result.versions = dict(hub_versions)
                db_path = workdir / "hub-bench.db"
                run_target(hub_server(name, f"sqlite:///{db_path}", workdir, args), scenarios, args, result)
            elif name == "hub-postgres":
                result.versions = dict(hub_versions)
                with contextlib.ExitStack() as stack:
                    try:
                        url = stack.enter_context(fresh_postgres_database(args.postgres_admin_url))
                    except Exception as exc:
                        result.status, result.detail = "skipped", f"PostgreSQL not reachable: {exc}"
                        progress(f"hub-postgres: SKIPPED, {result.detail} (see --postgres-admin-url)")
                        continue
                    result.versions.update(postgres_settings(url))
                    run_target(hub_server(name, url, workdir, args), scenarios, args, result)
            else:
                assert fhirstarter_python is not None
                result.versions = package_versions(
                    fhirstarter_python,
                    [
                        "fhirstarter",
                        "fastapi",
                        "starlette",
                        "uvicorn",
                        "pydantic",
                        "fhir.resources",
                        "uvloop",
                        "httptools",
                    ],
                )
                result.versions["FHIR_SEQUENCE"] = "R4B"
                run_target(
                    fhirstarter_server(fhirstarter_python, workdir, args.server_log_level),
                    scenarios,
                    args,
                    result,
                )
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: reporting what was measured so far")
    finally:
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)

    finished_at = datetime.now(UTC)
    table = render_table(results, scenarios)
    cpu_table = render_cpu_table(results, scenarios)
    print()
    print(
        f"FHIR CRUD benchmark: small ServiceRequest ({args.body}); req/s higher is better; "
        "latency in ms (p50 / p99)"
    )
    print(
        f"client: bench/loadgen.py ({args.client}), separate process; "
        f"{os.cpu_count()} CPUs shared by server and client"
    )
    print(table)
    print()
    print(
        "CPU per measured request, ms (server process; '+pg' = its PostgreSQL backends, a lower bound; "
        "last column = load generator)"
    )
    print(cpu_table)
    for t in results:
        opened = [
            (k, d["postgres_sessions_opened"])
            for k, d in t.scenarios.items()
            if "postgres_sessions_opened" in d
        ]
        if opened:
            print(
                f"{t.name}: new PostgreSQL connections opened while measuring: "
                + ", ".join(
                    f"{k}: {n} ({n / max(t.scenarios[k]['requests'], 1):.2f}/request)" for k, n in opened
                )
            )
    problems = [t for t in results if t.status != "ok"]
    errors = [(t.name, k) for t in results for k, d in t.scenarios.items() if d["errors"]]
    for t in problems:
        print(f"\n{t.name}: {t.status}: {t.detail}")
    if errors:
        print("\n'!' marks scenarios with failed requests: " + ", ".join(f"{n} {k}" for n, k in errors))
    busy = [
        (d["other_cpu_share"], t.name, k)
        for t in results
        for k, d in t.scenarios.items()
        if d.get("other_cpu_share", 0) > BUSY_SHARE
    ]
    if busy:
        share, name, key = max(busy)
        print(
            f"\nWARNING: other processes used up to {100 * share:.0f}% of the CPUs while measuring "
            f"({len(busy)} scenarios, worst: {name} {key}); the figures are not comparable with a quiet run."
        )

    report = {
        "benchmark": "fhir_crud",
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "wall_s": round((finished_at - started_at).total_seconds(), 1),
        "command": getattr(sys, "orig_argv", [sys.executable, *sys.argv]),
        "settings": {
            "targets": args.targets,
            "hub_serve_options": args.hub_extra_options,
            "hub_auth": args.hub_auth if args.hub_has_clients or args.hub_auth == "disabled" else "none",
            "hub_env": {"HUB_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_OUT_OF_REACH), **args.hub_env},
            "scenarios": [s.key for s in scenarios],
            "requests": args.requests,
            "duration_s": args.duration,
            "warmup": args.warmup,
            "seed": args.seed,
            "client": args.client,
            "body": args.body,
            "server_log_level": args.server_log_level,
            "wait_quiet_s": args.wait_quiet,
            "repeat": args.repeat,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "note": "load generator and servers share the same CPUs",
        },
        "git_commit": git_commit(),
        "targets": {
            t.name: {
                "status": t.status,
                "detail": t.detail,
                "startup_s": t.startup_s,
                "versions": t.versions,
                "scenarios": t.scenarios,
            }
            for t in results
        },
        "table": table,
        "interrupted": interrupted,
    }
    if not args.no_save:
        args.results_dir.mkdir(parents=True, exist_ok=True)
        path = args.results_dir / f"fhir_crud-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        print(f"\nresults written to {shown}")
    progress(f"fhir_crud: done in {report['wall_s']:.0f}s")
    return 130 if interrupted else 1 if problems or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
