"""FHIR AuditEvents for every access to PHI: who, what, when, from where, outcome."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

from hub.security.principal import Principal

INTERACTION_ACTION = {
    "read": "R", "vread": "R", "search-type": "E", "history-instance": "R", "history-type": "R",
    "history-system": "R", "create": "C", "update": "U", "delete": "D", "transaction": "E", "batch": "E",
    "validate": "E", "operation": "E",
}
CLIENT_SYSTEM = "https://therapy-hub.example/sid/client"


def audit_event(*, principal: Principal, interaction: str, now: datetime, outcome: int, address: str | None,
                resource_type: str | None = None, resource_id: str | None = None, query: str | None = None,
                description: str | None = None) -> dict[str, Any]:
    """outcome: 0 success, 4 minor failure (4xx), 8 serious failure (5xx)."""
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                             "code": "humanuser" if principal.role in ("referrer", "clinic") else "dataprocessor"}]},
        "who": {"identifier": {"system": CLIENT_SYSTEM, "value": principal.client_id}},
        "altId": principal.client_id,
        "requestor": True,
    }
    if principal.fhir_user:
        agent["who"]["reference"] = principal.fhir_user
    if address:
        agent["network"] = {"address": address, "type": "2"}
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": INTERACTION_ACTION.get(interaction, "E"),
        "recorded": now.isoformat(timespec="milliseconds") + "Z",
        "outcome": str(outcome),
        "agent": [agent],
        "source": {"observer": {"display": "therapy-hub"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "3"}]},
    }
    if description:
        event["outcomeDesc"] = description[:200]
    entity: dict[str, Any] = {}
    if resource_type and resource_id:
        entity["what"] = {"reference": f"{resource_type}/{resource_id}"}
    elif resource_type:
        entity["type"] = {"system": "http://hl7.org/fhir/resource-types", "code": resource_type}
    if query:
        entity["query"] = base64.b64encode(query.encode()).decode()
    if entity:
        event["entity"] = [entity]
    return event
