"""FastAPI dependencies: settings, tenant, and the unit of work (one request = one transaction)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from hub.settings import Settings, get_settings
from hub.store.db import transaction

SettingsDep = Annotated[Settings, Depends(get_settings)]


def current_tenant(settings: SettingsDep) -> str:
    """The caller's tenant. Until authentication lands every caller works in the default tenant."""
    return settings.default_tenant


TenantDep = Annotated[str, Depends(current_tenant)]


def get_clock() -> Callable[[], datetime]:
    """The clock of the request (naive UTC). Tests override this dependency to inject time."""
    from hub.fhir.searchparams import utcnow

    return utcnow


ClockDep = Annotated[Callable[[], datetime], Depends(get_clock)]


@contextmanager
def unit_of_work(settings: Settings) -> Iterator[Session]:
    """One transaction; after it commits, the delivery jobs it wrote are enqueued (outbox)."""
    from hub.sync.enqueue import enqueue_committed

    with transaction(settings.database_url) as session:
        yield session
    enqueue_committed(settings, session)
