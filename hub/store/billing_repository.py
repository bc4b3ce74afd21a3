"""Queries of billing: the X12 control numbers the hub gives out.

An interchange (ISA13), its functional group (GS06) and each transaction set (ST02) carry a control
number that the receiver uses to detect duplicates and to tie its acknowledgments (TA1, 999, 277CA)
back to what was sent, so a number must not repeat for the same sender. They are counted per
tenant, sender id and kind in ``x12_control_numbers`` and given out by one ``UPDATE ... RETURNING``
per kind: on PostgreSQL that statement takes the counter's row lock, so a concurrent allocation for
the same sender waits until this transaction ends and then continues from the number it left; on
SQLite the writer lock of the transaction (``BEGIN IMMEDIATE``) serialises them. Allocations for
different senders or tenants never wait for each other.

The numbers are the transaction's: if it rolls back, they are given out again. Allocate them in the
transaction that records the interchange to send (the outbox), and send only after it committed.
Numbers run 1 .. 999,999,999 (nine digits, as ISA13 needs) and then wrap to 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from hub.kit import utcnow
from hub.store.models import X12ControlNumber

__all__ = ["CONTROL_NUMBER_KINDS", "MAX_CONTROL_NUMBER", "ControlNumbers", "allocate_control_numbers"]

#: the largest control number: ISA13 is exactly nine digits; GS06 and ST02 allow as many
MAX_CONTROL_NUMBER = 999_999_999
#: the counters of one sender, in the order they are locked (always the same order: no deadlock)
CONTROL_NUMBER_KINDS = ("interchange", "group", "transaction")
#: the most transaction sets one allocation may number (one functional group)
MAX_TRANSACTIONS = 999_999


@dataclass(frozen=True, slots=True)
class ControlNumbers:
    """The control numbers of one interchange holding one functional group of transaction sets."""

    interchange: int
    group: int
    transactions: tuple[int, ...]

    @property
    def isa13(self) -> str:
        """ISA13: exactly nine digits, zero-padded."""
        return f"{self.interchange:09d}"

    @property
    def gs06(self) -> str:
        """GS06 (and GE02): 1 to 9 digits, without padding."""
        return str(self.group)

    @property
    def st02(self) -> tuple[str, ...]:
        """ST02 (and SE02) of each transaction set: 4 to 9 characters, zero-padded to at least 4."""
        return tuple(f"{number:04d}" for number in self.transactions)


def _take(session: Session, *, tenant: str, sender: str, kind: str, count: int, now: datetime) -> list[int] | None:
    """Advance one counter by ``count`` and return the numbers it passed over (wrapping after MAX);
    None when the sender has no counters yet."""
    counter = X12ControlNumber.__table__.c
    new_last = (counter.last + count - 1) % MAX_CONTROL_NUMBER + 1
    statement = (
        update(X12ControlNumber)
        .where(counter.tenant_id == tenant, counter.sender == sender, counter.kind == kind)
        .values(last=new_last, updated_at=now)
        .returning(counter.last)
        .execution_options(synchronize_session=False)
    )
    last = session.execute(statement).scalar_one_or_none()
    if last is None:
        return None
    first = (int(last) - count) % MAX_CONTROL_NUMBER  # the number before the first one given (0 = MAX)
    return [(first + i) % MAX_CONTROL_NUMBER + 1 for i in range(count)]


def _ensure_counters(session: Session, *, tenant: str, sender: str, now: datetime) -> None:
    """Create the sender's counters if they do not exist yet (a concurrent creator wins; no error)."""
    rows = [{"tenant_id": tenant, "sender": sender, "kind": kind, "last": 0, "updated_at": now}
            for kind in CONTROL_NUMBER_KINDS]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(pg_insert(X12ControlNumber).values(rows).on_conflict_do_nothing(
            index_elements=["tenant_id", "sender", "kind"]))
    elif dialect == "sqlite":
        session.execute(sqlite_insert(X12ControlNumber).values(rows).on_conflict_do_nothing(
            index_elements=["tenant_id", "sender", "kind"]))
    else:  # pragma: no cover - the hub runs on SQLite and PostgreSQL
        raise NotImplementedError(f"control numbers on {dialect}")


def allocate_control_numbers(session: Session, *, tenant: str, sender: str, count: int = 1,
                             now: datetime | None = None) -> ControlNumbers:
    """The next interchange and group control numbers of ``sender`` (the interchange sender id, e.g.
    ``ZZ:THERAPYHUB``) in ``tenant``, and ``count`` transaction set numbers for that group.

    Never the same number twice for the same tenant, sender and kind (until the counter wraps after
    999,999,999), also when several workers allocate at once; see the module docstring for the
    locking and for what a rollback means.
    """
    if not 1 <= count <= MAX_TRANSACTIONS:
        raise ValueError(f"count must be between 1 and {MAX_TRANSACTIONS} transaction sets")
    if not sender or len(sender) > 64:
        raise ValueError("sender must be 1 to 64 characters")
    when = now or utcnow()
    numbers: list[list[int]] = []
    for kind, how_many in zip(CONTROL_NUMBER_KINDS, (1, 1, count), strict=True):
        taken = _take(session, tenant=tenant, sender=sender, kind=kind, count=how_many, now=when)
        if taken is None:  # the sender's first interchange: create its counters (all three at once)
            _ensure_counters(session, tenant=tenant, sender=sender, now=when)
            taken = _take(session, tenant=tenant, sender=sender, kind=kind, count=how_many, now=when)
        if taken is None:  # pragma: no cover - the row was just created or found
            raise RuntimeError("the control number counters could not be created")
        numbers.append(taken)
    (interchange,), (group,), transactions = numbers
    return ControlNumbers(interchange=interchange, group=group, transactions=tuple(transactions))
