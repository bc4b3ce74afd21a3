"""Identifiers of FHIR resources as the EMR connector writes and polls them: the key identifier a
resource is written by, and identifier systems mapped between the hub's and the EMR's names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["IDENTIFIER_KEYS", "identifier_of", "key_identifier", "map_identifier_systems"]

#: the elements holding Identifiers whose ``system`` is mapped, anywhere in a resource
IDENTIFIER_KEYS = frozenset({"identifier", "requisition", "groupIdentifier", "valueIdentifier"})


def map_identifier_systems(value: Any, mapping: Mapping[str, str]) -> Any:
    """A copy of ``value`` with the ``system`` of every Identifier (see IDENTIFIER_KEYS) mapped."""
    if isinstance(value, list):
        return [map_identifier_systems(v, mapping) for v in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key in IDENTIFIER_KEYS:
            item = _map_identifiers(item, mapping)
        result[key] = map_identifier_systems(item, mapping)
    return result


def _map_identifiers(value: Any, mapping: Mapping[str, str]) -> Any:
    if isinstance(value, list):
        return [_map_identifiers(v, mapping) for v in value]
    if isinstance(value, dict):
        system = value.get("system")
        if isinstance(system, str) and system in mapping:
            return {**value, "system": mapping[system]}
    return value


def key_identifier(identifiers: Any, mapped: Mapping[str, str]) -> tuple[str, str] | None:
    """The identifier a resource is written by (hub system, value), or None."""
    usable = [
        (i["system"], i["value"])
        for i in (identifiers if isinstance(identifiers, list) else [])
        if isinstance(i, dict)
        and isinstance(i.get("system"), str)
        and i["system"]
        and isinstance(i.get("value"), str)
        and i["value"]
    ]
    for system, value in usable:
        if system in mapped:
            return system, value
    return usable[0] if usable else None


def identifier_of(identifiers: Any, system: str) -> tuple[str, str] | None:
    """(system, value) of the first identifier with ``system`` and a value, or None."""
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if isinstance(identifier, dict) and identifier.get("system") == system:
            value = identifier.get("value")
            if isinstance(value, str) and value:
                return system, value
    return None
