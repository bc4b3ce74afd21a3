"""Shared readers of the scripted HEP webhooks (see :mod:`.scenario`)."""

from __future__ import annotations

from typing import Any

from mappings.fhir import jsonio
from mappings.fhir.validation import validate_resource
from mappings.hep.events import HepEvent, parse_event
from mappings.hep.observations import replay_observations

from .scenario import delivered


def events_of(patient: str) -> list[HepEvent]:
    return [parse_event(raw) for raw in delivered(patient)]


def wire(resource: dict[str, Any]) -> dict[str, Any]:
    """What goes over the wire, parsed back (decimals stay Decimal)."""
    parsed: dict[str, Any] = jsonio.loads(jsonio.dumps(resource))
    return parsed


def assert_valid(resource: dict[str, Any]) -> None:
    issues = validate_resource(wire(resource))
    assert issues == [], [i.as_fhir() for i in issues]


def observations_of(events: list[HepEvent]) -> dict[str, dict[str, Any]]:
    return replay_observations(events)
