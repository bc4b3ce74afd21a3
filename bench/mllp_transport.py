"""Our MLLP transport (connectors.hl7v2.mllp) next to python-hl7's asyncio one (hl7.mllp), on 127.0.0.1.

Serves the same acknowledging handler with both servers and sends each the same awkward byte
streams over a raw socket (a frame split into 1-byte writes, noise before the start block, a frame
over the size limit followed by a good one, a frame restarted mid-way, a sender that stops
mid-frame), then times the clients against a peer that never answers and the cost per message of
a blocking send (what a Celery task does) with each client. Prints what each side answered.

    .venv/bin/python bench/mllp_transport.py [--messages 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hl7.mllp import InvalidBlockError, open_hl7_connection, start_hl7_server  # noqa: E402

from connectors.hl7v2.mllp import MllpClient, MllpClientError, MllpServerThread, frame  # noqa: E402

LIMIT = 1024  # the size limit both servers get
STALL_SECONDS = 1.0  # our read_timeout; python-hl7 has none


def message(control_id: str, filler: int = 0) -> bytes:
    msh = f"MSH|^~\\&|BENCH|CLINIC|HUB|HUB|20260101120000||ADT^A04^ADT_A01|{control_id}|P|2.5.1"
    pid = "PID|1||MRN1^^^CLINIC^MR||Doe^Jane" + ("X" * filler)
    return f"{msh}\r{pid}\r".encode()


def ack_for(raw: bytes, code: str = "AA") -> bytes:
    fields = raw.split(b"\r", 1)[0].split(b"|")
    control_id = fields[9].decode() if len(fields) > 9 else ""
    msh = f"MSH|^~\\&|HUB|HUB|BENCH|CLINIC|20260101120000||ACK|A{control_id}|P|2.5.1"
    return f"{msh}\rMSA|{code}|{control_id}\r".encode()


# ---------------------------------------------------------------------------------------- servers


async def _ours_handler(raw: bytes) -> bytes:
    return ack_for(raw)


class Hl7LibServer:
    """start_hl7_server with the loop a careful user would write around readblock()."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _client(self, reader, writer) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                try:
                    block = await reader.readblock()
                except (InvalidBlockError, ValueError):  # no start block / over the limit: refuse, go on
                    writer.writeblock(ack_for(b"", "AR"))
                    await writer.drain()
                    continue
                except asyncio.IncompleteReadError:
                    return
                writer.writeblock(ack_for(block))
                await writer.drain()
        finally:
            writer.close()

    def __enter__(self) -> Hl7LibServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_hl7_server(self._client, "127.0.0.1", 0, limit=LIMIT), self._loop
        )
        self._server = future.result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def ours() -> MllpServerThread:
    return MllpServerThread(
        _ours_handler, host="127.0.0.1", port=0, read_timeout=STALL_SECONDS, idle_timeout=30.0,
        max_message_bytes=LIMIT,
    )


# ------------------------------------------------------------------------------------ raw streams


def answers(port: int, chunks: list[bytes], wait: float = 2.5) -> tuple[list[str], str]:
    """Send ``chunks`` (one write each), then read for ``wait`` s: (MSA-1|MSA-2 of each answer, end state)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
            if len(chunk) == 1:
                time.sleep(0.0005)
        sock.settimeout(0.2)
        data, state, deadline = b"", "still open", time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                more = sock.recv(65536)
            except TimeoutError:
                continue
            if not more:
                state = f"closed after {wait - (deadline - time.monotonic()):.1f}s"
                break
            data += more
    found = []
    for block in data.split(b"\x1c\r"):
        for segment in block.split(b"\r"):
            if segment.startswith(b"MSA|"):
                parts = segment.decode().split("|")
                found.append(f"{parts[1]}:{parts[2] or '-'}")
    return found, state


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def scenarios() -> dict[str, Callable[[int], tuple[list[str], str]]]:
    good = frame(message("GOOD1"))
    return {
        "frame split into 1-byte writes": lambda p: answers(p, [bytes([b]) for b in good], wait=1.0),
        "noise before the start block": lambda p: answers(p, [b"GET / HTTP/1.0\r\n\r\n" + good], wait=1.0),
        f"frame over {LIMIT} bytes in one write, then a good one": lambda p: answers(
            p, [frame(message("BIG1", filler=4 * LIMIT)) + good], wait=1.0
        ),
        f"frame of 64 KiB in 4 KiB writes (limit {LIMIT}), then a good one": lambda p: answers(
            p, [*_chunks(frame(message("BIG2", filler=64 * 1024)), 4096), good], wait=1.0
        ),
        "frame restarted mid-way": lambda p: answers(
            p, [b"\x0b" + message("LOST1")[:40] + good], wait=1.0
        ),
        "sender stops mid-frame": lambda p: answers(p, [b"\x0b" + message("HALF1")[:40]], wait=3.0),
    }


# ---------------------------------------------------------------------------------------- clients


class SilentPeer:
    """Accepts and reads, never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self._conns.append(conn)

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self.sock.close()
        self._thread.join(5)


async def _lib_exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await open_hl7_connection("127.0.0.1", port, limit=LIMIT * 16)
    try:
        writer.writeblock(raw)
        await writer.drain()
        return await reader.readblock()
    finally:
        writer.close()
        await writer.wait_closed()


def silent_peer() -> dict[str, str]:
    peer = SilentPeer()
    results = {}
    try:
        client = MllpClient("127.0.0.1", peer.port, timeout=1.0)
        started = time.monotonic()
        try:
            client.exchange(message("SILENT1"))
            results["ours"] = "answered?!"
        except MllpClientError as exc:
            results["ours"] = f"MllpClientError(timeout={exc.timeout}) after {time.monotonic() - started:.2f}s"
        finally:
            client.close()
        started = time.monotonic()
        try:
            asyncio.run(asyncio.wait_for(_lib_exchange(peer.port, message("SILENT2")), 3.0))
            results["hl7.mllp"] = "answered?!"
        except TimeoutError:
            results["hl7.mllp"] = (
                f"still waiting after {time.monotonic() - started:.2f}s"
                " (stopped by our outer wait_for; it has no timeout of its own)"
            )
    finally:
        peer.close()
    return results


def _rate(count: int, elapsed: float) -> str:
    return f"{count / elapsed:,.0f} msg/s, {1000 * elapsed / count:.2f} ms each"


def blocking_rate(port: int, count: int) -> dict[str, str]:
    """Messages/s of a blocking send as a Celery task makes it: ours keeps the connection open;
    python-hl7's needs an event loop, and its connection cannot outlive the loop of one call."""
    results = {}
    client = MllpClient("127.0.0.1", port, timeout=5.0)
    started = time.monotonic()
    for i in range(count):
        client.exchange(message(f"R{i}"))
    elapsed = time.monotonic() - started
    client.close()
    results["ours (MllpClient, kept connection)"] = _rate(count, elapsed)
    started = time.monotonic()
    for i in range(count):
        asyncio.run(_lib_exchange(port, message(f"L{i}")))
    elapsed = time.monotonic() - started
    results["hl7.mllp (asyncio.run + connection per message)"] = (
        _rate(count, elapsed)
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        reader, writer = asyncio.run_coroutine_threadsafe(
            open_hl7_connection("127.0.0.1", port, limit=LIMIT * 16), loop
        ).result(5)

        async def one(raw: bytes) -> bytes:
            writer.writeblock(raw)
            await writer.drain()
            return await reader.readblock()

        started = time.monotonic()
        for i in range(count):
            asyncio.run_coroutine_threadsafe(one(message(f"K{i}")), loop).result(5)
        elapsed = time.monotonic() - started
        writer.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    results["hl7.mllp (loop thread of our own, kept connection)"] = (
        _rate(count, elapsed)
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    logging.getLogger("connectors.hl7v2.mllp").setLevel(logging.ERROR)  # frame errors are expected here
    print(f"servers (size limit {LIMIT} bytes; ours: read_timeout {STALL_SECONDS:g}s)")
    with ours() as our_server, Hl7LibServer() as lib_server:
        for name, run in scenarios().items():
            mine, mine_state = run(our_server.port)
            theirs, their_state = run(lib_server.port)
            print(f"  {name}")
            print(f"    ours:     answers {mine or 'none'}; connection {mine_state}")
            print(f"    hl7.mllp: answers {theirs or 'none'}; connection {their_state}")
        print("client against a peer that never answers (ours: timeout 1s)")
        for name, result in silent_peer().items():
            print(f"  {name}: {result}")
        print(f"blocking client, {args.messages} messages to our server")
        for name, result in blocking_rate(our_server.port, args.messages).items():
            print(f"  {name}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
