"""Load generator for the FHIR CRUD benchmark: one scenario against one FHIR base URL.

Runs in its own process (``bench/fhir_crud.py`` starts it as a subprocess, so that client and
server do not share an interpreter) and prints one JSON object with the results on stdout.
Diagnostics go to stderr.

Closed loop: ``--concurrency`` worker tasks on one asyncio loop, each with its own keep-alive
HTTP/1.1 connection, each sending one request at a time. A scenario is bounded twice: it stops
after ``--requests`` measured requests or ``--duration`` seconds, whichever comes first. Before
measuring, ``--warmup`` requests of the same kind open the connections and warm the server's code
paths. The ``read`` scenario first creates ``--seed`` resources (not measured) and then reads them
round-robin.

Two clients:

* ``raw`` (default): a minimal HTTP/1.1 client on asyncio streams (Content-Length and chunked
  bodies, keep-alive). It costs about a tenth of the CPU per request of httpx, which matters when
  client and server share two cores.
* ``httpx``: ``httpx.AsyncClient`` with a pool of ``--concurrency`` keep-alive connections. Kept as
  a cross-check; on a small machine it saturates before the servers do (see bench/README.md).

An ``Authorization`` header can be given in the environment variable ``LOADGEN_AUTHORIZATION``
(e.g. ``Bearer <token>``; not on the command line, where other users could read it).

Only loopback base URLs are accepted: this tool is for local benchmarks.

Example::

    .venv/bin/python bench/loadgen.py --base-url http://127.0.0.1:8000/fhir \\
        --scenario create --concurrency 32 --requests 2000 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

FHIR_JSON = "application/fhir+json"
AUTH_ENV = "LOADGEN_AUTHORIZATION"  # e.g. "Bearer <token>": sent as the Authorization header

Reply = tuple[int, dict[str, str], bytes]


def service_request(kind: str = "plain") -> dict[str, Any]:
    """A small ServiceRequest, valid in FHIR R4 and R4B (what both servers accept).

    ``plain`` carries no category. ``referral`` adds the SNOMED category of a physical therapy
    referral, which the hub treats as an incoming referral (it also opens a referral Task in the same
    transaction); fhirstarter treats both alike.
    """
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/bench-patient-1"},
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1", "value": "BENCH-1"}],
        "code": {
            "coding": [
                {"system": "http://snomed.info/sct", "code": "91251008", "display": "Physical therapy"}
            ]
        },
        "authoredOn": "2024-05-01T10:00:00Z",
    }
    if kind == "referral":
        resource["category"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "91251008"}]}]
    return resource


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list (pct in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil(n * pct / 100), at least 1
    return sorted_values[int(rank) - 1]


def check_loopback(base_url: str) -> None:
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if parts.scheme != "http" or not ok:
        raise SystemExit(f"loadgen: refusing {base_url!r}: only http:// on loopback (127.0.0.1) is allowed")


# ------------------------------------------------------------------ clients


class Connection(Protocol):
    async def request(self, method: str, path: str, body: bytes | None = None) -> Reply: ...

    async def close(self) -> None: ...


class TransportError(Exception):
    pass


class RawConnection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int, prefix: str, timeout: float, extra: dict[str, str]) -> None:
        self.host, self.port, self.prefix, self.timeout = host, port, prefix, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        fixed = f"Host: {host}:{port}\r\nAccept: {FHIR_JSON}\r\nUser-Agent: fhir-crud-bench\r\n"
        fixed += "".join(f"{name}: {value}\r\n" for name, value in extra.items())
        self.fixed = fixed.encode()

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes | None = None) -> Reply:
        try:
            return await asyncio.wait_for(self._request(method, path, body), self.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            await self.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def _request(self, method: str, path: str, body: bytes | None) -> Reply:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode() + self.fixed
        if body is not None:
            head += f"Content-Type: {FHIR_JSON}\r\nContent-Length: {len(body)}\r\n".encode()
        self.writer.write(head + b"\r\n" + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            content = b""
        elif "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                if size == 0:
                    while (await self.reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            content = b"".join(chunks)
        else:  # body delimited by the end of the connection
            content = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, content

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


class HttpxConnection:
    """A view on a shared httpx.AsyncClient (its pool holds the keep-alive connections)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def request(self, method: str, path: str, body: bytes | None = None) -> Reply:
        import httpx

        headers = {"Content-Type": FHIR_JSON} if body is not None else None
        try:
            response = await self.client.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content

    async def close(self) -> None:
        pass


# ------------------------------------------------------------------ scenarios


class Runner:
    def __init__(self, resource_type: str, body_kind: str) -> None:
        self.resource_type = resource_type
        self.body = json.dumps(service_request(body_kind), separators=(",", ":")).encode()
        self.ids: list[str] = []
        self.statuses: Counter[str] = Counter()
        self.error_samples: list[str] = []

    def note_error(self, text: str) -> None:
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])

    async def create(self, conn: Connection, _i: int) -> bool:
        status, _, content = await conn.request("POST", f"/{self.resource_type}", self.body)
        self.statuses[str(status)] += 1
        if status in (200, 201):
            return True
        self.note_error(f"POST -> {status}: {content[:300]!r}")
        return False

    async def seed(self, conn: Connection, _i: int) -> bool:
        status, headers, content = await conn.request("POST", f"/{self.resource_type}", self.body)
        if status not in (200, 201):
            raise RuntimeError(f"seeding failed: POST -> {status}: {content[:300]!r}")
        new_id = json.loads(content).get("id") if content else None
        if not new_id:  # fall back on Location: .../Type/id[/_history/n]
            parts = headers.get("location", "").rstrip("/").split("/")
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            new_id = parts[-1] if parts else None
        if not new_id:
            raise RuntimeError("seeding failed: the create response carries no id (body or Location)")
        self.ids.append(new_id)
        return True

    async def read(self, conn: Connection, i: int) -> bool:
        rid = self.ids[i % len(self.ids)]
        status, _, content = await conn.request("GET", f"/{self.resource_type}/{rid}")
        self.statuses[str(status)] += 1
        if status == 200:
            return True
        self.note_error(f"GET {rid} -> {status}: {content[:300]!r}")
        return False


Op = Callable[[Connection, int], Awaitable[bool]]


async def drive(
    op: Op,
    conns: list[Connection],
    count: int,
    duration: float | None,
    latencies: list[float] | None,
    runner: Runner,
) -> tuple[int, int, float]:
    """Run ``op`` ``count`` times (or until ``duration`` elapses), one task per connection.

    Returns (requests completed, failed requests, wall seconds); appends latencies (seconds).
    """
    issued = 0
    errors = 0
    start = time.perf_counter()
    deadline = start + duration if duration else None
    perf = time.perf_counter

    async def worker(conn: Connection) -> None:
        nonlocal issued, errors
        while issued < count and (deadline is None or perf() < deadline):
            i = issued
            issued += 1
            t0 = perf()
            try:
                ok = await op(conn, i)
            except TransportError as exc:
                ok = False
                runner.statuses["transport-error"] += 1
                runner.note_error(str(exc))
            t1 = perf()
            if latencies is not None:
                latencies.append(t1 - t0)
            if not ok:
                errors += 1

    await asyncio.gather(*(worker(conn) for conn in conns))
    return issued, errors, time.perf_counter() - start


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    parts = urlsplit(args.base_url.rstrip("/"))
    host, port, prefix = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    extra = {"Authorization": os.environ[AUTH_ENV]} if os.environ.get(AUTH_ENV) else {}
    httpx_client = None
    if args.client == "httpx":
        import httpx

        limits = httpx.Limits(
            max_connections=args.concurrency, max_keepalive_connections=args.concurrency, keepalive_expiry=120
        )
        httpx_client = httpx.AsyncClient(
            base_url=args.base_url.rstrip("/"),
            limits=limits,
            timeout=httpx.Timeout(args.timeout),
            headers={"Accept": FHIR_JSON, **extra},
        )
        conns: list[Connection] = [HttpxConnection(httpx_client) for _ in range(args.concurrency)]
    else:
        conns = [RawConnection(host, port, prefix, args.timeout, extra) for _ in range(args.concurrency)]

    runner = Runner(args.resource_type, args.body)
    try:
        if args.scenario == "read":
            await drive(
                runner.seed, conns[: min(args.concurrency, 8)], args.seed, args.duration, None, runner
            )
            if not runner.ids:
                raise RuntimeError(f"seeding created no resource: {runner.error_samples[:1]}")
            status, _, content = await conns[0].request("GET", f"/{args.resource_type}/{runner.ids[0]}")
            if status != 200 or json.loads(content).get("id") != runner.ids[0]:
                raise RuntimeError(f"read-back check failed: {status} {content[:300]!r}")
            op: Op = runner.read
        else:
            op = runner.create

        if args.warmup:
            _, warm_errors, _ = await drive(op, conns, args.warmup, args.duration, None, runner)
            if warm_errors:
                print(
                    f"loadgen: {warm_errors} failed warm-up requests: {runner.error_samples[:1]}",
                    file=sys.stderr,
                )
        runner.statuses.clear()
        runner.error_samples.clear()

        latencies: list[float] = []
        if args.mark_phases:
            print("@@measure-start", file=sys.stderr, flush=True)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        done, errors, elapsed = await drive(op, conns, args.requests, args.duration, latencies, runner)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        if args.mark_phases:
            print("@@measure-end", file=sys.stderr, flush=True)
    finally:
        for conn in conns:
            await conn.close()
        if httpx_client is not None:
            await httpx_client.aclose()

    latencies.sort()
    ms = [v * 1000.0 for v in latencies]
    client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)

    def r3(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "scenario": args.scenario,
        "base_url": args.base_url,
        "resource_type": args.resource_type,
        "body": args.body,
        "body_bytes": len(runner.body),
        "authorization": bool(extra),
        "client": args.client,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "seeded": len(runner.ids),
        "requests": done,
        "errors": errors,
        "status_counts": dict(runner.statuses),
        "error_samples": runner.error_samples,
        "duration_s": round(elapsed, 4),
        "stopped_by": "requests" if done >= args.requests else "duration",
        "throughput_rps": round((done - errors) / elapsed, 2) if elapsed > 0 else 0.0,
        "latency_ms": {
            "min": r3(ms[0] if ms else None),
            "mean": r3(sum(ms) / len(ms) if ms else None),
            "p50": r3(percentile(ms, 50)),
            "p90": r3(percentile(ms, 90)),
            "p99": r3(percentile(ms, 99)),
            "max": r3(ms[-1] if ms else None),
        },
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_ms_per_request": round(1000 * client_cpu / done, 3) if done else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Closed-loop HTTP load generator for FHIR create/read; prints JSON results on stdout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--base-url", required=True, help="FHIR base URL on loopback, e.g. http://127.0.0.1:8000/fhir"
    )
    parser.add_argument(
        "--scenario", choices=["create", "read"], required=True, help="interaction to measure"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="keep-alive connections = requests in flight"
    )
    parser.add_argument("--requests", type=int, default=2000, help="measured requests (upper bound)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measuring time limit in seconds (upper bound)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="unmeasured requests before measuring (at most --duration seconds)",
    )
    parser.add_argument(
        "--seed", type=int, default=100, help="resources created before a read (at most --duration seconds)"
    )
    parser.add_argument(
        "--body",
        choices=["plain", "referral"],
        default="plain",
        help="ServiceRequest to create: plain, or with a physical therapy referral category",
    )
    parser.add_argument("--resource-type", default="ServiceRequest", help="FHIR resource type in the URLs")
    parser.add_argument(
        "--client", choices=["raw", "httpx"], default="raw", help="HTTP client implementation"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    parser.add_argument(
        "--mark-phases",
        action="store_true",
        help="print '@@measure-start' and '@@measure-end' lines on stderr around the measured phase "
        "(fhir_crud.py samples the server's CPU time there)",
    )
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.requests < 1 or args.duration <= 0 or args.seed < 1 or args.warmup < 0:
        parser.error("--concurrency, --requests and --seed must be >= 1, --duration > 0, --warmup >= 0")
    check_loopback(args.base_url)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop  # the event loop the servers use too (uvicorn[standard])
    except ImportError:
        result = asyncio.run(main_async(args))
    else:
        result = uvloop.run(main_async(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
