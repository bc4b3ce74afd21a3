"""An enqueuer for the tests that records what the hub hands it instead of sending it to a broker."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["RecordingEnqueuer"]


class RecordingEnqueuer:
    """Records the job ids handed to ``deliver`` and the documents handed to ``intake``."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.taken_in: list[tuple[str, str]] = []  # (tenant, DocumentReference id) handed to the intake

    def deliver(self, job_ids: Iterable[int], *, countdown: float | None = None) -> int:
        ids = list(job_ids)
        self.sent.extend(ids)
        return len(ids)

    def intake(self, documents: Iterable[tuple[str, str]]) -> int:
        asked = list(documents)
        self.taken_in.extend(asked)
        return len(asked)
