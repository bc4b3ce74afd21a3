"""Deterministic resource ids: the same business key always names the same resource.

A mapping that turns a message or a document into FHIR resources gives each one the id
:func:`deterministic_id` derives from its type and business identifier, so that a replayed or revised
input lands on the resources the first one created.
"""

from __future__ import annotations

import uuid

__all__ = ["NAMESPACE", "deterministic_id"]

#: the uuid5 namespace of every id the mappings derive
NAMESPACE = uuid.UUID("6f1c1e0a-7a0c-4f57-9d43-3b8e2b6c1d11")


def deterministic_id(resource_type: str, system: str, value: str, scope: str | None = None) -> str:
    """uuid5 over type + identifier system + value (+ ``scope``, e.g. the sender, when given)."""
    return str(uuid.uuid5(NAMESPACE, f"{resource_type}|{system}|{value}" + (f"|{scope}" if scope else "")))
