"""All queries of the FHIR store. Keyword-only arguments; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, delete, func, insert, not_, or_, select, tuple_
from sqlalchemy.orm import Session

from hub.fhir.searchparams import IndexValues, normalise_string
from hub.store.models import (
    IdempotencyKey,
    Resource,
    ResourceVersion,
    SearchDate,
    SearchReference,
    SearchToken,
    Tenant,
)

# ---------------------------------------------------------------- tenants


def ensure_tenant(session: Session, *, tenant_id: str, name: str, now: datetime) -> None:
    if session.get(Tenant, tenant_id) is None:
        session.add(Tenant(id=tenant_id, name=name, created_at=now))
        session.flush()


def tenant_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Tenant.id).order_by(Tenant.id)))


# ---------------------------------------------------------------- resources


def get_resource(
    session: Session, *, tenant: str, resource_type: str, resource_id: str, for_update: bool = False
) -> Resource | None:
    stmt = select(Resource).where(
        Resource.tenant_id == tenant, Resource.resource_type == resource_type, Resource.id == resource_id
    )
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def get_resources(
    session: Session, *, tenant: str, keys: Iterable[tuple[str, str]]
) -> list[Resource]:
    """Current, not deleted resources for (type, id) pairs."""
    by_type: dict[str, set[str]] = {}
    for resource_type, resource_id in keys:
        by_type.setdefault(resource_type, set()).add(resource_id)
    if not by_type:
        return []
    conditions = [
        and_(Resource.resource_type == t, Resource.id.in_(sorted(ids))) for t, ids in by_type.items()
    ]
    stmt = select(Resource).where(Resource.tenant_id == tenant, Resource.deleted.is_(False), or_(*conditions))
    return list(session.scalars(stmt))


def get_version(
    session: Session, *, tenant: str, resource_type: str, resource_id: str, version_id: int
) -> ResourceVersion | None:
    return session.get(ResourceVersion, (tenant, resource_type, resource_id, version_id))


def save_version(
    session: Session,
    *,
    current: Resource | None,
    tenant: str,
    resource_type: str,
    resource_id: str,
    version_id: int,
    now: datetime,
    method: str,
    content: str | None,
) -> Resource:
    """Write a new current version plus its history row."""
    deleted = content is None
    if current is None:
        current = Resource(
            tenant_id=tenant,
            resource_type=resource_type,
            id=resource_id,
            version_id=version_id,
            last_updated=now,
            deleted=deleted,
            content=content,
        )
        session.add(current)
    else:
        current.version_id = version_id
        current.last_updated = now
        current.deleted = deleted
        current.content = content
    session.add(
        ResourceVersion(
            tenant_id=tenant,
            resource_type=resource_type,
            id=resource_id,
            version_id=version_id,
            last_updated=now,
            method=method,
            content=content,
        )
    )
    session.flush()
    return current


def replace_index(
    session: Session,
    *,
    tenant: str,
    resource_type: str,
    resource_id: str,
    values: IndexValues | None,
    fresh: bool = False,
) -> None:
    """Replace the search index rows of one resource (``None`` removes them: deleted resource).

    ``fresh``: the resource is new, so there is nothing to delete first.
    """
    for table in () if fresh else (SearchToken, SearchReference, SearchDate):
        session.execute(
            delete(table)
            .where(table.tenant_id == tenant, table.resource_type == resource_type, table.resource_id == resource_id)
            .execution_options(synchronize_session=False)
        )
    if values is None:
        return
    common = {"tenant_id": tenant, "resource_type": resource_type, "resource_id": resource_id}
    if values.tokens:
        session.execute(
            insert(SearchToken),
            [{**common, "param": p, "system": s, "code": c} for p, s, c in dict.fromkeys(values.tokens)],
        )
    if values.references:
        session.execute(
            insert(SearchReference),
            [
                {**common, "param": p, "target_type": t, "target_id": i}
                for p, t, i in dict.fromkeys(values.references)
            ],
        )
    if values.dates:
        session.execute(
            insert(SearchDate),
            [{**common, "param": p, "low": lo, "high": hi} for p, lo, hi in dict.fromkeys(values.dates)],
        )


# ---------------------------------------------------------------- history


def history(
    session: Session,
    *,
    tenant: str,
    resource_type: str | None,
    resource_id: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[ResourceVersion], int]:
    conditions: list[ColumnElement[bool]] = [ResourceVersion.tenant_id == tenant]
    if resource_type:
        conditions.append(ResourceVersion.resource_type == resource_type)
    else:  # the audit trail is not part of the data's history
        conditions.append(ResourceVersion.resource_type != "AuditEvent")
    if resource_id:
        conditions.append(ResourceVersion.id == resource_id)
    if since:
        conditions.append(ResourceVersion.last_updated >= since)
    total = session.scalar(select(func.count()).select_from(ResourceVersion).where(*conditions)) or 0
    stmt = (
        select(ResourceVersion)
        .where(*conditions)
        .order_by(  # a total order, so that _offset pages neither repeat nor skip versions
            ResourceVersion.last_updated.desc(),
            ResourceVersion.version_id.desc(),
            ResourceVersion.resource_type.asc(),
            ResourceVersion.id.asc(),
        )
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(stmt)), total


# ---------------------------------------------------------------- search


@dataclass(frozen=True, slots=True)
class TokenMatch:
    system: str | None
    code: str | None
    any_system: bool  # "code" alone matches any system; "|code" means no system


@dataclass(frozen=True, slots=True)
class Criterion:
    """One search parameter occurrence: its values are OR'd; criteria are AND'd."""

    param: str
    kind: str  # id | lastUpdated | token | string | reference | date
    negate: bool = False
    missing: bool | None = None
    tokens: Sequence[TokenMatch] = ()
    strings: Sequence[tuple[str, bool]] = ()  # (normalised value, False) or (text as written, True): :exact
    references: Sequence[tuple[str | None, str]] = ()  # (type or None, id)
    dates: Sequence[tuple[str, datetime, datetime]] = ()  # (prefix, low, high)
    ids: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class SearchQuery:
    tenant: str
    resource_type: str
    criteria: Sequence[Criterion] = ()
    sort: Sequence[tuple[str, bool]] = field(default_factory=lambda: [("_lastUpdated", False)])  # (key, desc)
    limit: int = 20
    offset: int = 0


def _date_condition(prefix: str, low: datetime, high: datetime, col_low, col_high) -> ColumnElement[bool]:  # type: ignore[no-untyped-def]
    if prefix == "eq":
        return and_(col_low >= low, col_high <= high)
    if prefix == "ne":
        return not_(and_(col_low >= low, col_high <= high))
    if prefix == "gt":
        return col_high > high
    if prefix == "lt":
        return col_low < low
    if prefix == "ge":
        return col_high >= low
    if prefix == "le":
        return col_low <= high
    if prefix == "sa":
        return col_low > high
    if prefix == "eb":
        return col_high < low
    raise ValueError(prefix)


def _match_ids(query: SearchQuery, criterion: Criterion) -> Select[tuple[str]]:
    if criterion.kind in ("token", "string"):
        table = SearchToken
    elif criterion.kind == "reference":
        table = SearchReference
    else:
        table = SearchDate
    base = select(table.resource_id).where(
        table.tenant_id == query.tenant, table.resource_type == query.resource_type, table.param == criterion.param
    )
    if criterion.missing is not None:
        return base
    options: list[ColumnElement[bool]] = []
    if criterion.kind == "token":
        for t in criterion.tokens:
            parts = []
            if t.code is not None:
                parts.append(SearchToken.code == t.code)
            if not t.any_system:
                parts.append(SearchToken.system.is_(None) if t.system is None else SearchToken.system == t.system)
            options.append(and_(*parts))
    elif criterion.kind == "string":
        for value, exact in criterion.strings:
            if exact:  # string rows keep the text as written in ``system`` (see searchparams.extract)
                options.append(and_(SearchToken.code == normalise_string(value), SearchToken.system == value))
            else:
                escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                options.append(SearchToken.code.like(f"{escaped}%", escape="\\"))
    elif criterion.kind == "reference":
        for target_type, target_id in criterion.references:
            cond = SearchReference.target_id == target_id
            if target_type:
                cond = and_(cond, SearchReference.target_type == target_type)
            options.append(cond)
    else:
        for prefix, low, high in criterion.dates:
            options.append(_date_condition(prefix, low, high, SearchDate.low, SearchDate.high))
    return base.where(or_(*options))


def _conditions(query: SearchQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        Resource.tenant_id == query.tenant,
        Resource.resource_type == query.resource_type,
        Resource.deleted.is_(False),
    ]
    for criterion in query.criteria:
        if criterion.kind == "id":
            cond: ColumnElement[bool] = Resource.id.in_(list(criterion.ids))
        elif criterion.kind == "lastUpdated":
            cond = or_(
                *(
                    _date_condition(p, lo, hi, Resource.last_updated, Resource.last_updated)
                    for p, lo, hi in criterion.dates
                )
            )
        else:
            subquery = _match_ids(query, criterion)
            if criterion.missing is not None:
                cond = Resource.id.not_in(subquery) if criterion.missing else Resource.id.in_(subquery)
            else:
                cond = Resource.id.in_(subquery)
        conditions.append(not_(cond) if criterion.negate else cond)
    return conditions


_SORT_COLUMNS = {"_lastUpdated": Resource.last_updated, "_id": Resource.id}


def search(session: Session, *, query: SearchQuery, with_total: bool = True) -> tuple[list[Resource], int | None]:
    conditions = _conditions(query)
    total = None
    if with_total:
        total = session.scalar(select(func.count()).select_from(Resource).where(*conditions)) or 0
    if query.limit == 0:
        return [], total
    order = [(_SORT_COLUMNS[key].desc() if desc else _SORT_COLUMNS[key].asc()) for key, desc in query.sort]
    order.append(Resource.id.asc())
    stmt = select(Resource).where(*conditions).order_by(*order).limit(query.limit).offset(query.offset)
    return list(session.scalars(stmt)), total


def count(session: Session, *, query: SearchQuery) -> int:
    return session.scalar(select(func.count()).select_from(Resource).where(*_conditions(query))) or 0


def outgoing_references(
    session: Session, *, tenant: str, resource_type: str, resource_ids: Sequence[str], params: Sequence[str]
) -> list[tuple[str | None, str]]:
    if not resource_ids or not params:
        return []
    stmt = select(SearchReference.target_type, SearchReference.target_id).where(
        SearchReference.tenant_id == tenant,
        SearchReference.resource_type == resource_type,
        SearchReference.resource_id.in_(list(resource_ids)),
        SearchReference.param.in_(list(params)),
    )
    return [(row[0], row[1]) for row in session.execute(stmt).all()]


# ---------------------------------------------------------------- idempotency keys


def get_idempotency_key(session: Session, *, tenant: str, key: str) -> IdempotencyKey | None:
    return session.get(IdempotencyKey, (tenant, key))


def save_idempotency_key(
    session: Session,
    *,
    tenant: str,
    key: str,
    request_hash: str,
    resource_type: str,
    resource_id: str,
    version_id: int,
    status: int,
    now: datetime,
) -> None:
    session.add(
        IdempotencyKey(
            tenant_id=tenant, key=key, request_hash=request_hash, resource_type=resource_type,
            resource_id=resource_id, version_id=version_id, status=status, created_at=now,
        )
    )
    session.flush()


def patients_of_requester(session: Session, *, tenant: str, requester: tuple[str, str]) -> set[str]:
    """``Patient/x`` of every current ServiceRequest whose requester is ``requester`` (index only)."""
    requested = select(SearchReference.resource_id).where(
        SearchReference.tenant_id == tenant,
        SearchReference.resource_type == "ServiceRequest",
        SearchReference.param == "requester",
        SearchReference.target_type == requester[0],
        SearchReference.target_id == requester[1],
    )
    rows = session.execute(
        select(SearchReference.target_id).where(
            SearchReference.tenant_id == tenant,
            SearchReference.resource_type == "ServiceRequest",
            SearchReference.param == "patient",
            SearchReference.resource_id.in_(requested),
        )
    )
    return {f"Patient/{row[0]}" for row in rows}


# ---------------------------------------------------------------- reindex


def resource_keys(
    session: Session, *, resource_type: str | None = None, tenant: str | None = None,
    after: tuple[str, str, str] | None = None, limit: int = 500,
) -> list[tuple[str, str, str]]:
    """(tenant, type, id) of current, not deleted resources in key order, after ``after`` (keyset paging)."""
    conditions = [Resource.deleted.is_(False)]
    if resource_type is not None:
        conditions.append(Resource.resource_type == resource_type)
    if tenant is not None:
        conditions.append(Resource.tenant_id == tenant)
    if after is not None:
        conditions.append(tuple_(Resource.tenant_id, Resource.resource_type, Resource.id) > tuple_(*after))
    stmt = (
        select(Resource.tenant_id, Resource.resource_type, Resource.id).where(*conditions)
        .order_by(Resource.tenant_id, Resource.resource_type, Resource.id).limit(limit)
    )
    return [(t, r, i) for t, r, i in session.execute(stmt)]
