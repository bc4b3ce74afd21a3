"""Scenarios of bench/fhir_crud.py: runs of bench/loadgen.py against one target, and the result tables."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from fhir_crud_servers import Server, fetch_token, register_hub_client
from fhir_crud_support import (
    BUSY_SHARE,
    HUB_SCOPES,
    LOADGEN,
    LOADGEN_AUTH_ENV,
    REPO,
    cpu_seconds,
    machine_busy_seconds,
    postgres_backends_cpu,
    postgres_sessions,
    progress,
    wait_for_quiet_machine,
)

# ------------------------------------------------------------------ scenarios


@dataclass
class Scenario:
    op: str  # create | read
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.op} c={self.concurrency}"


@dataclass
class TargetResult:
    name: str
    status: str = "not run"  # ok | failed | skipped
    detail: str | None = None
    startup_s: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_loadgen(
    server: Server, scenario: Scenario, args: argparse.Namespace, database: str | None
) -> dict[str, Any]:
    """Run one scenario with bench/loadgen.py; add the CPU time the server (and its database) used."""
    command = [
        sys.executable,
        str(LOADGEN),
        "--base-url",
        server.base_url,
        "--scenario",
        scenario.op,
        "--concurrency",
        str(scenario.concurrency),
        "--requests",
        str(args.requests),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(args.seed),
        "--client",
        args.client,
        "--body",
        args.body,
        "--mark-phases",
    ]
    env = dict(os.environ)
    env.pop(LOADGEN_AUTH_ENV, None)
    if server.credentials is not None:
        env[LOADGEN_AUTH_ENV] = f"Bearer {fetch_token(server)}"  # fresh: tokens expire
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert server.proc is not None
    cpu_start = cpu_end = busy_start = busy_end = sessions_start = None
    pg_start: dict[int, float] = {}
    pg_end: dict[int, float] = {}
    other_stderr = []
    try:
        for line in proc.stderr:  # the loadgen marks the measured phase on stderr
            if line.startswith("@@measure-start"):
                cpu_start, busy_start = cpu_seconds(server.proc.pid), machine_busy_seconds()
                pg_start = postgres_backends_cpu(database) if database else {}
                sessions_start = postgres_sessions(args.postgres_admin_url, database) if database else None
            elif line.startswith("@@measure-end"):
                cpu_end, busy_end = cpu_seconds(server.proc.pid), machine_busy_seconds()
                pg_end = postgres_backends_cpu(database) if database else {}
            else:
                other_stderr.append(line.rstrip())
        stdout = proc.stdout.read()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # interrupted: do not leave the load generator running
            proc.terminate()
            proc.wait(timeout=10)
    sessions_end = postgres_sessions(args.postgres_admin_url, database) if database else None
    if server.proc.poll() is not None:
        raise RuntimeError(
            f"the server exited (code {server.proc.returncode}) during {scenario.key}\n{server.log_tail()}"
        )
    if code != 0:
        raise RuntimeError(f"loadgen exited with {code}: {' | '.join(other_stderr[-5:])}")
    result = json.loads(stdout)
    if other_stderr:
        result["loadgen_stderr"] = other_stderr[-10:]
    done = result["requests"] or 1
    server_cpu = pg_cpu = None
    if cpu_start is not None and cpu_end is not None:
        server_cpu = cpu_end - cpu_start
        result["server_cpu_s"] = round(server_cpu, 3)
        result["server_cpu_ms_per_request"] = round(1000 * server_cpu / done, 3)
    if database:
        # backends that closed during the phase are missing: a lower bound
        pg_cpu = sum(cpu - pg_start.get(pid, 0.0) for pid, cpu in pg_end.items())
        result["postgres_backends_cpu_s"] = round(pg_cpu, 3)
        result["postgres_backends_cpu_ms_per_request"] = round(1000 * pg_cpu / done, 3)
    if sessions_start is not None and sessions_end is not None:
        # connections the hub opened to PostgreSQL while measuring (pg_stat_database.sessions)
        result["postgres_sessions_opened"] = sessions_end - sessions_start
    if busy_start is not None and busy_end is not None and server_cpu is not None:
        # CPU the machine spent on anything but this server, its database backends and the loadgen
        other = (busy_end - busy_start) - server_cpu - (pg_cpu or 0.0) - result["client_cpu_s"]
        result["other_cpu_s"] = round(max(other, 0.0), 3)
        result["other_cpu_share"] = round(max(other, 0.0) / ((os.cpu_count() or 1) * result["duration_s"]), 3)
    return result


def report_scenario(name: str, scenario: Scenario, data: dict[str, Any]) -> None:
    lat = data["latency_ms"]
    flag = f"  ERRORS: {data['errors']} {data['status_counts']}" if data["errors"] else ""
    if data.get("postgres_sessions_opened"):
        flag += f"  [{data['postgres_sessions_opened']} new PostgreSQL connections]"
    if data.get("other_cpu_share", 0) > BUSY_SHARE:
        flag += f"  (busy machine: other processes used {100 * data['other_cpu_share']:.0f}% of the CPUs)"
    progress(
        f"{name}: {scenario.key} -> {data['throughput_rps']:.1f} req/s, "
        f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms "
        f"({data['requests']} requests in {data['duration_s']:.1f}s){flag}"
    )


def run_target(
    server: Server, scenarios: list[Scenario], args: argparse.Namespace, result: TargetResult
) -> None:
    try:
        if server.name.startswith("hub-") and args.hub_auth == "token" and args.hub_has_clients:
            server.credentials = register_hub_client(server)
            progress(f"{server.name}: registered OAuth2 client {server.credentials[0]} ({HUB_SCOPES})")
        progress(f"{server.name}: starting ({' '.join(server.command[-8:])})")
        server.start(timeout=args.startup_timeout)
        result.startup_s = round(server.started_s or 0, 2)
        progress(f"{server.name}: ready on {server.base_url} after {result.startup_s:.1f}s")
        for scenario in scenarios:
            attempts: list[dict[str, Any]] = []
            for attempt in range(1, args.repeat + 1):
                progress(
                    f"{server.name}: {scenario.key} — warm-up {args.warmup}, then up to {args.requests} "
                    f"requests or {args.duration:g}s" + (f" (attempt {attempt})" if attempt > 1 else "")
                )
                wait_for_quiet_machine(args.wait_quiet)
                data = run_loadgen(server, scenario, args, server.database)
                attempts.append(data)
                report_scenario(server.name, scenario, data)
                if data.get("other_cpu_share", 0) <= BUSY_SHARE:
                    break
            # keep the least disturbed attempt (all of them go to the JSON file)
            best = min(
                attempts, key=lambda d: (d["errors"] > 0, d.get("other_cpu_share", 0), -d["throughput_rps"])
            )
            if len(attempts) > 1:
                best = dict(
                    best, attempts=len(attempts), other_attempts=[d for d in attempts if d is not best]
                )
                progress(
                    f"{server.name}: {scenario.key}: keeping the least disturbed of {len(attempts)} attempts"
                )
            result.scenarios[scenario.key] = best
        result.status = "ok"
    except KeyboardInterrupt:
        result.status, result.detail = "interrupted", "interrupted (Ctrl-C)"
        raise
    except Exception as exc:  # keep going with the other targets; the report says what failed
        result.status = "failed"
        result.detail = str(exc)
        progress(f"{server.name}: FAILED: {exc}")
    finally:
        server.stop()
        if server.proc is not None and server.proc.returncode not in (0, None, -signal.SIGINT):
            progress(f"{server.name}: server exited with {server.proc.returncode}")
        if args.keep_logs:
            progress(f"{server.name}: server log at {server.log_path}")


# ------------------------------------------------------------------ report


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(targets: list[TargetResult], scenarios: list[Scenario]) -> str:
    baseline = next((t for t in targets if t.name == "fhirstarter"), None)
    hubs = [t for t in targets if t.name != "fhirstarter"]
    cell = 26
    header = ["scenario".ljust(12)]
    sub = ["".ljust(12)]
    for t in targets:
        header.append(t.name.center(cell))
        sub.append(f"{'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    if baseline is not None:
        for t in hubs:
            header.append(f"{t.name}/fs".rjust(18))
            sub.append("req/s ratio".rjust(18))
    lines = [" | ".join(header), " | ".join(sub)]
    lines.insert(1, "-" * len(lines[0]))
    for s in scenarios:
        row = [s.key.ljust(12)]
        for t in targets:
            data = t.scenarios.get(s.key)
            if data is None:
                row.append(("failed" if t.status == "failed" else t.status).center(cell))
                continue
            mark = "!" if data["errors"] else " "
            lat = data["latency_ms"]
            row.append(
                f"{data['throughput_rps']:>8.1f} {fmt(lat['p50'], '8.2f')} {fmt(lat['p99'], '8.2f')}"[
                    : cell - 1
                ]
                + mark
            )
        if baseline is not None:
            base = baseline.scenarios.get(s.key)
            for t in hubs:
                data = t.scenarios.get(s.key)
                if data and base and base["throughput_rps"]:
                    row.append(f"{data['throughput_rps'] / base['throughput_rps']:.2f}x".rjust(18))
                else:
                    row.append("-".rjust(18))
        lines.append(" | ".join(row))
    return "\n".join(lines)


def render_cpu_table(targets: list[TargetResult], scenarios: list[Scenario]) -> str:
    header = ["scenario".ljust(12)] + [t.name.rjust(16) for t in targets] + ["loadgen (client)".rjust(18)]
    lines = [" | ".join(header), "-" * len(" | ".join(header))]
    for s in scenarios:
        row = [s.key.ljust(12)]
        client = []
        for t in targets:
            data = t.scenarios.get(s.key) or {}
            text = fmt(data.get("server_cpu_ms_per_request"), ".2f")
            if data.get("postgres_backends_cpu_ms_per_request") is not None:
                text += f" +{data['postgres_backends_cpu_ms_per_request']:.2f}pg"
            row.append(text.rjust(16))
            if data.get("client_cpu_ms_per_request") is not None:
                client.append(data["client_cpu_ms_per_request"])
        row.append((f"{min(client):.2f}-{max(client):.2f}" if client else "-").rjust(18))
        lines.append(" | ".join(row))
    return "\n".join(lines)
