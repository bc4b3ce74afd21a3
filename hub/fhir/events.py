"""The change event of the FHIR store: one per write, handed to what reacts to writes
(the referral workflow, routing into the outbox)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Change:
    """A committed-to-be write of the FHIR store."""

    resource_type: str
    resource_id: str
    version_id: int
    interaction: str  # create | update | delete
    resource: dict[str, Any] | None
    content: str | None
    #: the JSON of the version this write replaced (None for a create)
    previous: str | None = None
