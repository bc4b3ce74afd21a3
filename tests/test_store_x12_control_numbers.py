"""hub.store.billing_repository.allocate_control_numbers: X12 control numbers that never repeat per
tenant, sender id and kind, across transactions and concurrent workers, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from sqlalchemy import select, update

from hub.settings import Settings
from hub.store.billing_repository import MAX_CONTROL_NUMBER, ControlNumbers, allocate_control_numbers
from hub.store.db import transaction
from hub.store.models import X12ControlNumber
from hub.store.repository import ensure_tenant

NOW = datetime(2026, 12, 4, 3, 0)
SENDER = "ZZ:THERAPYHUB"


@pytest.fixture
def url(settings: Settings) -> str:
    with transaction(settings.database_url) as session:
        for tenant in ("clinic-a", "clinic-b"):
            ensure_tenant(session, tenant_id=tenant, name=tenant, now=NOW)
    return settings.database_url


def allocate(url: str, tenant: str = "clinic-a", sender: str = SENDER, count: int = 1) -> ControlNumbers:
    with transaction(url) as session:
        return allocate_control_numbers(session, tenant=tenant, sender=sender, count=count, now=NOW)


def test_numbers_start_at_one_and_advance_per_kind(url: str) -> None:
    first = allocate(url)
    assert (first.interchange, first.group, first.transactions) == (1, 1, (1,))
    assert (first.isa13, first.gs06, first.st02) == ("000000001", "1", ("0001",))
    second = allocate(url, count=3)
    assert (second.interchange, second.group, second.transactions) == (2, 2, (2, 3, 4))
    third = allocate(url)
    assert (third.interchange, third.group, third.transactions) == (3, 3, (5,))
    with transaction(url) as session:
        rows = {r.kind: r.last for r in session.scalars(select(X12ControlNumber))}
    assert rows == {"interchange": 3, "group": 3, "transaction": 5}


def test_each_tenant_and_sender_counts_alone(url: str) -> None:
    allocate(url, count=2)
    allocate(url, count=2)
    assert allocate(url, sender="ZZ:OTHER").interchange == 1
    assert allocate(url, tenant="clinic-b").transactions == (1,)
    assert allocate(url).interchange == 3


def test_a_rolled_back_allocation_is_given_again(url: str) -> None:
    allocate(url)
    with pytest.raises(RuntimeError), transaction(url) as session:
        assert allocate_control_numbers(session, tenant="clinic-a", sender=SENDER).interchange == 2
        raise RuntimeError("the interchange was not recorded")
    assert allocate(url).interchange == 2


def test_numbers_wrap_after_999999999(url: str) -> None:
    allocate(url)
    with transaction(url) as session:
        session.execute(update(X12ControlNumber).values(last=MAX_CONTROL_NUMBER - 2))
    numbers = allocate(url, count=4)
    assert numbers.interchange == MAX_CONTROL_NUMBER - 1
    assert numbers.transactions == (MAX_CONTROL_NUMBER - 1, MAX_CONTROL_NUMBER, 1, 2)
    assert numbers.st02[-2:] == ("0001", "0002") and len(numbers.isa13) == 9
    after = allocate(url)
    assert (after.interchange, after.transactions) == (MAX_CONTROL_NUMBER, (3,))
    assert allocate(url).interchange == 1  # never 0, never ten digits


def test_bad_counts_and_senders_are_refused(url: str) -> None:
    with transaction(url) as session:
        with pytest.raises(ValueError, match="count"):
            allocate_control_numbers(session, tenant="clinic-a", sender=SENDER, count=0)
        with pytest.raises(ValueError, match="sender"):
            allocate_control_numbers(session, tenant="clinic-a", sender="")


def test_concurrent_allocations_never_share_a_number(url: str) -> None:
    rounds = 25
    barrier = threading.Barrier(2)
    results: list[list[ControlNumbers]] = [[], []]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(rounds):  # each in its own transaction, as two delivery workers would
                results[index].append(allocate(url, count=2))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    everything = results[0] + results[1]
    assert sorted(n.interchange for n in everything) == list(range(1, 2 * rounds + 1))
    assert sorted(n.group for n in everything) == list(range(1, 2 * rounds + 1))
    assert sorted(t for n in everything for t in n.transactions) == list(range(1, 4 * rounds + 1))


def test_a_second_allocation_waits_for_the_first_transaction(url: str) -> None:
    """While one transaction holds the sender's counters, another allocation for that sender waits
    and then continues after the first one's numbers (never the same numbers from a stale read)."""
    allocate(url)
    holding, release = threading.Event(), threading.Event()
    got: dict[str, ControlNumbers] = {}

    def first() -> None:
        with transaction(url) as session:
            got["first"] = allocate_control_numbers(session, tenant="clinic-a", sender=SENDER)
            holding.set()
            release.wait(timeout=60)

    def second() -> None:
        got["second"] = allocate(url)

    one = threading.Thread(target=first)
    one.start()
    assert holding.wait(timeout=60)
    two = threading.Thread(target=second)
    two.start()
    two.join(timeout=0.5)
    assert two.is_alive() and "second" not in got  # blocked behind the first transaction
    release.set()
    one.join(timeout=60)
    two.join(timeout=60)
    assert got["first"].interchange == 2 and got["second"].interchange == 3
    assert allocate(url, sender="ZZ:OTHER").interchange == 1
