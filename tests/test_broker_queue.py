"""The embedded broker's task queue exists before the embedded worker starts (``hub serve``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hub.broker import CeleryEnqueuer


def _queues(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [name for (name,) in db.execute("SELECT name FROM kombu_queue")]


def test_declare_creates_the_queue_once_so_worker_and_publisher_do_not_race_to_insert_it(tmp_path: Path) -> None:
    path = tmp_path / "broker.sqlite"
    enqueuer = CeleryEnqueuer(f"sqla+sqlite:///{path}", queue="therapy-test")
    enqueuer.declare()
    assert _queues(path) == ["therapy-test"]
    enqueuer.declare()  # a second hub serve on the same broker: no unique-key error, still one row
    assert _queues(path) == ["therapy-test"]
