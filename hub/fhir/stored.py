"""What the FHIR store hands back: one stored version of a resource, the result of a write, and the
small rules of ids, types, instants and ETags that every part of the store shares."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from hub.errors import BadRequest, UnsupportedType
from hub.store.models import Resource, ResourceVersion
from mappings.fhir import SUPPORTED_TYPES

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def instant(value: datetime) -> str:
    """FHIR instant (UTC, microseconds) of a naive UTC datetime."""
    return value.isoformat(timespec="microseconds") + "Z"


def etag(version_id: int) -> str:
    return f'W/"{version_id}"'


def parse_etag(value: str) -> int | None:
    match = re.fullmatch(r'\s*(?:W/)?"?(\d+)"?\s*', value)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of a resource as stored."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    content: str | None  # None: deleted

    @classmethod
    def of(cls, row: Resource | ResourceVersion) -> Stored:
        return cls(row.resource_type, row.id, row.version_id, row.last_updated, row.content)

    @property
    def location(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"

    @property
    def etag(self) -> str:
        return etag(self.version_id)


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: Stored
    status: int  # 200 updated/exists, 201 created


def check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED_TYPES:
        raise UnsupportedType(f"Resource type {resource_type!r} is not supported by this server")


def check_id(resource_id: str) -> None:
    if not ID_PATTERN.match(resource_id):
        raise BadRequest("Resource id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'", expression="id")


__all__ = ["ID_PATTERN", "Stored", "WriteResult", "check_id", "check_type", "etag", "instant", "parse_etag"]
