"""What billing reads from and writes to the FHIR store, through :class:`~hub.fhir.service.FhirService`
(so that a Claim it writes is routed like any write)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hub.errors import NotFound
from hub.fhir.service import FhirService
from hub.kit import parse_reference
from mappings.fhir import jsonio

__all__ = ["FOLLOWED", "StoreReader"]

#: the resource types a claim's content is read from (references to other types are not followed)
FOLLOWED = frozenset({"Patient", "RelatedPerson", "Coverage", "Organization", "Practitioner", "PractitionerRole",
                      "ServiceRequest", "CarePlan", "Encounter", "Condition"})
_PAGE = 200


def _references(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str):
            yield reference
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


class StoreReader:
    """Reads of one transaction, each resource read once."""

    def __init__(self, fhir: FhirService) -> None:
        self.fhir = fhir
        self._cache: dict[str, dict[str, Any] | None] = {}

    def read(self, reference: str | None) -> dict[str, Any] | None:
        """The current version of ``Type/id`` (None when it is not there or was deleted)."""
        if not reference:
            return None
        parsed = parse_reference(reference.split("/_history/")[0])
        if parsed is None:
            return None
        key = f"{parsed[0]}/{parsed[1]}"
        if key not in self._cache:
            try:
                stored = self.fhir.read(*parsed)
            except NotFound:
                self._cache[key] = None
            else:
                self._cache[key] = jsonio.loads(stored.content) if stored.content else None
        return self._cache[key]

    def forget(self, reference: str) -> None:
        self._cache.pop(reference, None)

    def search(self, resource_type: str, items: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Every match, page after page."""
        found: list[dict[str, Any]] = []
        while True:
            bundle = self.fhir.search(resource_type, [*items, ("_count", str(_PAGE)), ("_offset", str(len(found)))],
                                      strict=True)
            matches = [jsonio.loads(jsonio.dumps(e["resource"])) for e in bundle.get("entry", [])
                       if e.get("search", {}).get("mode") == "match"]
            found.extend(matches)
            if not matches or not any(link.get("relation") == "next" for link in bundle.get("link", [])):
                return found

    def closure(self, start: dict[str, Any], depth: int = 3) -> dict[str, dict[str, Any]]:
        """``Type/id`` -> resource of what ``start`` refers to, and what those refer to, ``depth`` levels
        deep, of the :data:`FOLLOWED` types only; missing ones are left out."""
        found: dict[str, dict[str, Any]] = {}
        frontier = [start]
        for _ in range(depth):
            following: list[dict[str, Any]] = []
            for resource in frontier:
                for reference in _references(resource):
                    parsed = parse_reference(reference.split("/_history/")[0])
                    if parsed is None or parsed[0] not in FOLLOWED:
                        continue
                    key = f"{parsed[0]}/{parsed[1]}"
                    if key in found:
                        continue
                    target = self.read(key)
                    if target is not None:
                        found[key] = target
                        following.append(target)
            frontier = following
        return found
