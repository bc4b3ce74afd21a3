"""The hub's small general tools, below every other module of ``hub``: the clock and FHIR
literal references. It imports nothing of the hub."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


def utcnow() -> datetime:
    """Now, as the naive UTC datetime the store keeps."""
    return datetime.now(UTC).replace(tzinfo=None)


def parse_reference(reference: str) -> tuple[str, str] | None:
    """``("Patient", "123")`` from a relative or absolute literal reference; None for others."""
    if reference.startswith("#") or reference.startswith("urn:"):
        return None
    match = _REFERENCE.search(reference)
    return (match.group(1), match.group(2)) if match else None


__all__ = ["parse_reference", "utcnow"]
