"""What one delivery brings the EMR connector, and what one send learns on its way.

A delivery payload is a resource, or the hub's context Bundle (``collection``, no ``id``) whose first
entry is the changed resource, followed by the resources it references (:func:`unpack`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Delivery, PermanentError
from connectors.fhir_rest.cursor import RESOURCE_TYPE
from connectors.fhirclient import FHIR_ID, NOT_A_RESOURCE, json_object, resource_ref

__all__ = ["SendState", "derived_key", "has_type_and_id", "relative_reference", "unpack"]

_RELATIVE = re.compile(r"(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?")
_KEY_LIMIT = 255


@dataclass
class SendState:
    """What one ``send`` learns while resolving references (never shown: hub ids in counts only)."""

    delivery: Delivery
    context: Mapping[tuple[str, str], dict[str, Any]]
    writing: set[tuple[str, str]] = field(default_factory=set)  # (type, hub id) whose write is under way
    done: dict[tuple[str, str], str | None] = field(default_factory=dict)  # -> EMR id, None: logical
    used: set[tuple[str, str, str]] = field(default_factory=set)  # cache keys this send relied on
    resolved: int = 0
    from_cache: int = 0
    written: int = 0
    logical: int = 0
    #: what the EMR now holds from this send, as poll names it (``Type/<EMR id>/_history/<version>``)
    versions: list[str] = field(default_factory=list)


def relative_reference(text: str) -> tuple[str, str] | None:
    """(type, id) of a relative literal reference ``Type/id[/_history/v]``; None for anything else."""
    match = _RELATIVE.fullmatch(text)
    return (match["type"], match["id"]) if match else None


def unpack(payload: bytes) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    """(the resource to send, the resources it references by (type, hub id)) of a delivery payload:
    a resource, or the hub's context Bundle (``collection``, no ``id``, the resource first)."""
    document = json_object(payload)
    if (
        document is None
        or document.get("resourceType") != "Bundle"
        or document.get("type") != "collection"
        or "id" in document
    ):
        resource_ref(payload)  # PermanentError unless a resource with a type and an id
        assert document is not None
        return document, {}
    entries = document.get("entry")
    resources = [
        e["resource"]
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    if not resources or not has_type_and_id(resources[0]):
        raise PermanentError(NOT_A_RESOURCE + " (first entry of the context Bundle)")
    context = {(r["resourceType"], r["id"]): r for r in resources[1:] if has_type_and_id(r)}
    return resources[0], context


def has_type_and_id(resource: Mapping[str, Any]) -> bool:
    resource_type, resource_id = resource.get("resourceType"), resource.get("id")
    return (
        isinstance(resource_type, str)
        and RESOURCE_TYPE.fullmatch(resource_type) is not None
        and isinstance(resource_id, str)
        and FHIR_ID.fullmatch(resource_id) is not None
    )


def derived_key(idempotency_key: str, resource_type: str, hub_id: str) -> str:
    """The Idempotency-Key of a dependency write: the delivery's, plus what is written."""
    key = f"{idempotency_key}:{resource_type}/{hub_id}"
    if len(key) <= _KEY_LIMIT:
        return key
    return "dependency-" + hashlib.sha256(key.encode()).hexdigest()
