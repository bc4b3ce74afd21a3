"""Rebuild the search index from the stored resources (``hub db reindex``).

The index tables (tokens, references, dates) are written with each resource; when the hub learns new
search parameters (a new release, a new resource type), resources stored before lack their rows and
do not match those parameters until they are reindexed. This walks the current resources in key
order, a batch per transaction (a crash resumes from the start harmlessly: replacing a resource's
rows is idempotent), and never changes a resource, its version or its history.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from hub.fhir import searchparams
from hub.store import repository
from hub.store.db import transaction
from hub.store.models import Resource

__all__ = ["ReindexReport", "reindex"]


@dataclass(frozen=True, slots=True)
class ReindexReport:
    resources: int
    by_type: dict[str, int]


def reindex(
    database_url: str,
    *,
    resource_type: str | None = None,
    tenant: str | None = None,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> ReindexReport:
    """Recompute the index rows of every current resource (of one type / tenant when given)."""
    done = 0
    by_type: dict[str, int] = {}
    after: tuple[str, str, str] | None = None
    while True:
        with transaction(database_url) as session:
            keys = repository.resource_keys(session, resource_type=resource_type, tenant=tenant, after=after,
                                            limit=batch)
            for key_tenant, key_type, key_id in keys:
                row = session.get(Resource, (key_tenant, key_type, key_id))
                if row is None or row.content is None:
                    continue
                values = searchparams.extract(key_type, json.loads(row.content))
                repository.replace_index(session, tenant=key_tenant, resource_type=key_type, resource_id=key_id,
                                         values=values)
                by_type[key_type] = by_type.get(key_type, 0) + 1
                done += 1
        if not keys:
            break
        after = keys[-1]
        if progress is not None:
            progress(done)
        if len(keys) < batch:
            break
    return ReindexReport(done, by_type)
