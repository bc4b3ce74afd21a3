"""The change events of the FHIR store: one per write, kept in order in the transaction's
:class:`ChangeLog` and handed, after the write that raised them, to what reacts to writes
(routing into the outbox, then the referral and plan-of-care workflow).

Order (see docs/adr/0008-explicit-workflow.md): a top-level store operation (create, update,
delete, one Bundle entry) records its change and, when it is done, drains the log: each event in
turn is given to the reactions of the store that wrote it. A write a reaction makes is recorded at
the end of the log and drained in its turn, after the event that caused it. So a write and the
writes it causes are routed in the order they happened, and a rule that refuses a change raises
from the operation that made it, in the same transaction.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

#: session.info key of the transaction's change log
LOG_KEY = "hub.fhir.changes"

Reaction = Callable[["Change"], object]


@dataclass(frozen=True, slots=True)
class Change:
    """A committed-to-be write of the FHIR store."""

    resource_type: str
    resource_id: str
    version_id: int
    interaction: str  # create | update | delete
    resource: dict[str, Any] | None
    content: str | None
    #: the JSON of the version this write replaced (None for a create)
    previous: str | None = None


class ChangeLog:
    """The ordered change events of one transaction that still wait for their reactions."""

    def __init__(self) -> None:
        self._pending: deque[tuple[Change, Callable[[Change], None]]] = deque()
        self._draining = False

    @classmethod
    def of(cls, session: Session) -> ChangeLog:
        """The log of ``session``'s transaction (every store on the session shares it)."""
        log = session.info.get(LOG_KEY)
        if log is None:
            log = session.info[LOG_KEY] = cls()
        return log

    @property
    def draining(self) -> bool:
        """True while reactions run: a write made now waits its turn at the end of the log."""
        return self._draining

    def __len__(self) -> int:
        return len(self._pending)

    def record(self, change: Change, react: Callable[[Change], None]) -> None:
        self._pending.append((change, react))

    def discard(self) -> None:
        """Forget what waits: the operation that recorded it failed (its transaction or savepoint
        is rolled back)."""
        self._pending.clear()

    def drain(self) -> None:
        """Run the reactions of every waiting event, oldest first, until none waits (the events the
        reactions record included). On an error the rest is discarded and the error raised."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._pending:
                change, react = self._pending.popleft()
                react(change)
        except BaseException:
            self._pending.clear()
            raise
        finally:
            self._draining = False


__all__ = ["Change", "ChangeLog", "LOG_KEY", "Reaction"]
