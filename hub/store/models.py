"""Tables of the store. Every row carries ``tenant_id`` (the clinic organisation it belongs to).

Datetimes are stored as naive UTC on every backend so that SQLite and PostgreSQL compare alike.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Resource(Base):
    """The current version of each FHIR resource (deleted ones stay, flagged, for 410 Gone)."""

    __tablename__ = "resources"

    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.id"), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(DateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the JSON received (validated), with ``meta.versionId``/``meta.lastUpdated`` set by the hub
    content: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_resources_type_updated", "tenant_id", "resource_type", "last_updated"),)


class ResourceVersion(Base):
    """Every version of every resource: the history (``_history``, vread)."""

    __tablename__ = "resource_versions"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_updated: Mapped[datetime] = mapped_column(DateTime)
    method: Mapped[str] = mapped_column(String(8))  # POST | PUT | DELETE
    content: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_resource_versions_type_updated", "tenant_id", "resource_type", "last_updated"),)


class SearchToken(Base):
    """Token and string search values of current resources (codes, identifiers, names...)."""

    __tablename__ = "search_tokens"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code: Mapped[str] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_search_tokens_lookup", "tenant_id", "resource_type", "param", "code", "system"),
        Index("ix_search_tokens_owner", "tenant_id", "resource_type", "resource_id"),
    )


class SearchReference(Base):
    """Reference search values of current resources (subject, requester, focus...)."""

    __tablename__ = "search_references"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target_id: Mapped[str] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_search_references_lookup", "tenant_id", "resource_type", "param", "target_id", "target_type"),
        Index("ix_search_references_owner", "tenant_id", "resource_type", "resource_id"),
    )


class SearchDate(Base):
    """Date search values of current resources as closed UTC ranges [low, high]."""

    __tablename__ = "search_dates"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    low: Mapped[datetime] = mapped_column(DateTime)
    high: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_search_dates_lookup", "tenant_id", "resource_type", "param", "low", "high"),
        Index("ix_search_dates_owner", "tenant_id", "resource_type", "resource_id"),
    )


INDEX_TABLES = (SearchToken, SearchReference, SearchDate)
