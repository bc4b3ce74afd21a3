"""A real HTTP server for the interop tests: uvicorn in a background thread on 127.0.0.1.

The app is the production ``create_app(settings)`` over the ``settings`` fixture of
``tests/conftest.py`` (so every test runs on SQLite and on PostgreSQL, on empty tables), wrapped in
a recorder that keeps each request and response, so tests can check what a client library really
sent and that every body the server produced conforms.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from hub.app import create_app
from hub.settings import Settings

STARTUP_TIMEOUT = 10.0


@dataclass
class Exchange:
    """One HTTP request/response pair as seen by the server."""

    method: str
    path: str
    query: str
    request_headers: dict[str, str]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Recorder:
    """ASGI middleware that records every HTTP exchange (before the client can see the response)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"].decode("latin-1"),
            request_headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        )
        self.exchanges.append(exchange)

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                exchange.headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])
                }
            elif message["type"] == "http.response.body":
                exchange.body += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, recording_send)


@dataclass
class LiveServer:
    root: str  # http://127.0.0.1:PORT
    recorder: Recorder

    @property
    def fhir_base(self) -> str:
        return f"{self.root}/fhir"

    @property
    def exchanges(self) -> list[Exchange]:
        return [e for e in self.recorder.exchanges if e.path != "/healthz"]


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    # Bind the socket here (port 0: the kernel picks a free one) and hand it to uvicorn, so no
    # other process can take the port between choosing and listening.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    recorder = Recorder(create_app(settings))
    config = uvicorn.Config(
        recorder,
        host="127.0.0.1",
        port=port,
        log_config=None,  # leave the process's logging alone (pytest's caplog, other tests)
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)  # not in the main thread: it installs no signal handlers
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="hub-live-server", daemon=True
    )
    thread.start()
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(trust_env=False, timeout=2.0) as probe:
            while True:
                if not thread.is_alive():
                    raise RuntimeError("the live server thread died during startup")
                if server.started:
                    try:
                        if probe.get(f"{root}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the live server did not answer /healthz within {STARTUP_TIMEOUT} s")
                time.sleep(0.02)
        yield LiveServer(root, recorder)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "the live server did not shut down"
