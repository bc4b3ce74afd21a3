"""What a delivery carries besides the changed resource, for connectors that ask (``context``).

A FHIR REST partner wants the resource alone; an HL7 v2 partner cannot take "Patient/123" and must
get the patient's names and identifiers in PID, the referrer's NPI in PRD, the visit's location in
AIL. A connector class says what it needs with ``context: ClassVar[frozenset[str]]``:

* ``"references"`` - the payload becomes a ``collection`` Bundle: the changed resource (the version
  routed, exactly as stored) first, then the resources it references and the ones those reference
  (two levels), as they are now, of the same tenant, at most :data:`MAX_CONTEXT` of them. A
  reference to something not in the store (or deleted) is left out: the connector decides what it
  can send without it.
* ``"documents"`` - the payload also carries (after what ``"references"`` adds, or as a
  ``collection`` Bundle of its own) the DocumentReferences whose ``context.related`` names the
  CarePlan that the changed Task is about (its ``focus``): the plan's certification page, for a
  connector that sends the plan itself (a fax). Newest first, at most :data:`MAX_DOCUMENTS`.
* ``"previous"`` - :attr:`connectors.base.Delivery.previous` carries what THIS partner was last
  sent about the same resource (the payload of its last successful delivery; None when it never
  got one), so that e.g. SIU tells a new booking (S12) from a reschedule (S13), and never speaks
  of an update to a partner that missed the booking (a dead letter, a route added later).

It is built when the job is claimed, not when it is routed: a retry a day later sends the patient's
current address, and nothing more is kept per job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from connectors import registry
from hub.kit import parse_reference
from hub.store import repository
from hub.store.repository import Criterion, SearchQuery

__all__ = ["CONTEXT_DOCUMENTS", "CONTEXT_PREVIOUS", "CONTEXT_REFERENCES", "MAX_CONTEXT", "MAX_DOCUMENTS",
           "context_wanted", "with_documents", "with_references"]

CONTEXT_REFERENCES = "references"
CONTEXT_PREVIOUS = "previous"
CONTEXT_DOCUMENTS = "documents"
#: most DocumentReferences of the focus CarePlan added to a delivery
MAX_DOCUMENTS = 5
#: most resources added to a delivery beside the changed one
MAX_CONTEXT = 50
DEPTH = 2


def context_wanted(kind: str) -> frozenset[str]:
    """What the connector kind asks for (nothing for an unknown kind: the send will say why)."""
    try:
        cls = registry.get(kind)
    except Exception:  # noqa: BLE001 - an unknown kind fails at send time with a ConfigError
        return frozenset()
    return frozenset(getattr(cls, "context", frozenset()))


def _references(node: Any, base: str) -> Iterator[tuple[str, str]]:
    """(type, id) of the references to this hub's resources: relative ones, or absolute under
    ``base``; another server's ``https://.../Patient/5`` is not our Patient/5."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                local = value[len(base) + 1:] if value.startswith(base + "/") else value
                if "://" in local or local.startswith(("urn:", "#")):
                    continue
                parsed = parse_reference(local)
                if parsed is not None:
                    yield parsed
            elif key not in ("text", "contained"):
                yield from _references(value, base)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item, base)


def with_references(session: Session, *, tenant: str, base: str, payload: bytes) -> bytes:
    """``payload`` (one resource) as a collection Bundle with what it references; a Bundle (or what
    is not a resource) is returned as it is."""
    try:
        focus = json.loads(payload)
    except ValueError:
        return payload
    if not isinstance(focus, dict) or focus.get("resourceType") in (None, "Bundle") or not focus.get("id"):
        return payload
    seen = {(str(focus["resourceType"]), str(focus["id"]))}
    entries = [_entry(base, focus)]
    level = [focus]
    for _ in range(DEPTH):
        wanted: list[tuple[str, str]] = []
        for resource in level:
            for key in _references(resource, base):
                if key not in seen and len(seen) <= MAX_CONTEXT:  # seen counts the focus too
                    seen.add(key)
                    wanted.append(key)
        if not wanted:
            break
        rows = repository.get_resources(session, tenant=tenant, keys=wanted)
        found = {(r.resource_type, r.id): json.loads(r.content) for r in rows if r.content}
        level = [found[key] for key in wanted if key in found]  # in the order they are referenced
        entries.extend(_entry(base, resource) for resource in level)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return json.dumps(bundle, separators=(",", ":")).encode("utf-8")


def with_documents(session: Session, *, tenant: str, base: str, payload: bytes) -> bytes:
    """``payload`` (a Task, or a Bundle with a Task first) with the DocumentReferences related to the
    Task's focus CarePlan appended; anything else is returned as it is."""
    try:
        document = json.loads(payload)
    except ValueError:
        return payload
    if not isinstance(document, dict):
        return payload
    if document.get("resourceType") == "Bundle":
        entries = document.get("entry") if isinstance(document.get("entry"), list) else []
        focus = entries[0].get("resource") if entries and isinstance(entries[0], dict) else None
    else:
        focus = document
        entries = [_entry(base, document)] if document.get("id") else []
    if not isinstance(focus, dict) or focus.get("resourceType") != "Task" or not entries:
        return payload
    plan = focus.get("focus", {}).get("reference") if isinstance(focus.get("focus"), dict) else None
    local = plan[len(base) + 1:] if isinstance(plan, str) and plan.startswith(base + "/") else plan
    parsed = parse_reference(local) if isinstance(local, str) and "://" not in local else None
    if parsed is None or parsed[0] != "CarePlan":
        return payload
    query = SearchQuery(tenant=tenant, resource_type="DocumentReference",
                        criteria=[Criterion(param="related", kind="reference", references=[parsed])],
                        sort=[("_lastUpdated", True)], limit=MAX_DOCUMENTS)
    rows, _ = repository.search(session, query=query, with_total=False)
    present = {(e.get("resource") or {}).get("id") for e in entries[1:] if isinstance(e, dict)
               and (e.get("resource") or {}).get("resourceType") == "DocumentReference"}
    added = [json.loads(r.content) for r in rows if r.content and r.id not in present]
    if not added and document.get("resourceType") == "Bundle":
        return payload
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [*entries, *(_entry(base, resource) for resource in added)]}
    return json.dumps(bundle, separators=(",", ":")).encode("utf-8")


def _entry(base: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}", "resource": resource}
