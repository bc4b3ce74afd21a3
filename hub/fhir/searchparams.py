"""The search parameters the hub supports, and extraction of their values from resources.

Values are extracted once, on write, into index tables (tokens, references, dates), so a search on
an indexed parameter is an index lookup, never a scan of the JSON.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from hub.fhir.dates import MAX_DATE, MIN_DATE, date_range
from hub.kit import parse_reference
from mappings.fhir.contact import normal_contact

ParamType = Literal["token", "string", "reference", "date"]

R4_SP = "http://hl7.org/fhir/SearchParameter/"


@dataclass(frozen=True, slots=True)
class SearchParam:
    name: str
    type: ParamType
    paths: tuple[str, ...]
    #: for references: the only resource types this parameter points to (None = any)
    targets: tuple[str, ...] | None = None
    definition: str = ""
    documentation: str = ""
    #: token parameters over ContactPoints: the system they keep ("*" any, "phone", "email"); their
    #: values are indexed as written and in comparable form (:func:`mappings.fhir.contact.normal_contact`)
    contact: str | None = None


@dataclass(frozen=True, slots=True)
class IndexValues:
    #: (param, system, code); for string parameters (param, exact text, normalised text)
    tokens: list[tuple[str, str | None, str]] = field(default_factory=list)
    references: list[tuple[str, str | None, str]] = field(default_factory=list)  # (param, type, id)
    dates: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # (param, low, high)


def _p(name: str, type_: ParamType, *paths: str, targets: tuple[str, ...] | None = None, doc: str = "",
       contact: str | None = None) -> SearchParam:
    return SearchParam(name, type_, paths, targets, documentation=doc, contact=contact)


def _telecom(path: str = "telecom") -> list[SearchParam]:
    """``telecom``, ``phone`` and ``email`` (R4): numbers match whatever their punctuation."""
    return [
        _p("telecom", "token", path, contact="*", doc="The value in any kind of contact"),
        _p("phone", "token", path, contact="phone", doc="A value in a phone contact"),
        _p("email", "token", path, contact="email", doc="A value in an email contact"),
    ]


PATIENT = ("Patient",)
IDENTIFIER = _p("identifier", "token", "identifier", doc="A business identifier (system|value)")


def _subject(path: str) -> list[SearchParam]:
    return [
        _p("subject", "reference", path, doc="Who the resource is about"),
        _p("patient", "reference", path, targets=PATIENT, doc="The patient the resource is about"),
    ]


_PERSON = [
    IDENTIFIER,
    _p("name", "string", "name", doc="A portion of the name"),
    _p("family", "string", "name.family", doc="A portion of the family name"),
    _p("given", "string", "name.given", doc="A portion of a given name"),
    _p("gender", "token", "gender"),
    *_telecom(),
    _p("active", "token", "active"),
]

SEARCH_PARAMS: dict[str, list[SearchParam]] = {
    "Patient": _PERSON
    + [
        _p("birthdate", "date", "birthDate"),
        _p("organization", "reference", "managingOrganization", targets=("Organization",)),
        _p("general-practitioner", "reference", "generalPractitioner"),
    ],
    "Practitioner": list(_PERSON),
    "PractitionerRole": [
        IDENTIFIER,
        _p("practitioner", "reference", "practitioner", targets=("Practitioner",)),
        _p("organization", "reference", "organization", targets=("Organization",)),
        _p("role", "token", "code"),
        _p("specialty", "token", "specialty"),
        _p("active", "token", "active"),
        _p("location", "reference", "location", targets=("Location",)),
        *_telecom(),
    ],
    "Organization": [
        IDENTIFIER,
        _p("name", "string", "name", "alias"),
        _p("type", "token", "type"),
        _p("active", "token", "active"),
        _p("partof", "reference", "partOf", targets=("Organization",)),
    ],
    "ServiceRequest": [
        IDENTIFIER,
        *_subject("subject"),
        _p("status", "token", "status"),
        _p("intent", "token", "intent"),
        _p("priority", "token", "priority"),
        _p("category", "token", "category"),
        _p("code", "token", "code"),
        _p("requester", "reference", "requester"),
        _p("performer", "reference", "performer"),
        _p("authored", "date", "authoredOn"),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
        _p("based-on", "reference", "basedOn"),
    ],
    "Task": [
        IDENTIFIER,
        _p("subject", "reference", "for"),
        _p("patient", "reference", "for", targets=PATIENT),
        _p("status", "token", "status"),
        _p("business-status", "token", "businessStatus"),
        _p("intent", "token", "intent"),
        _p("code", "token", "code"),
        _p("focus", "reference", "focus"),
        _p("owner", "reference", "owner"),
        _p("requester", "reference", "requester"),
        _p("based-on", "reference", "basedOn"),
        _p("part-of", "reference", "partOf", targets=("Task",)),
        _p("authored-on", "date", "authoredOn"),
        _p("modified", "date", "lastModified"),
        _p("period", "date", "executionPeriod"),
    ],
    "CarePlan": [
        IDENTIFIER,
        *_subject("subject"),
        _p("status", "token", "status"),
        _p("intent", "token", "intent"),
        _p("category", "token", "category"),
        _p("date", "date", "period"),
        _p("condition", "reference", "addresses", targets=("Condition",)),
        _p("goal", "reference", "goal", targets=("Goal",)),
        _p("based-on", "reference", "basedOn", targets=("CarePlan",)),
        _p("activity-reference", "reference", "activity.reference"),
    ],
    "Goal": [
        IDENTIFIER,
        *_subject("subject"),
        _p("lifecycle-status", "token", "lifecycleStatus"),
        _p("achievement-status", "token", "achievementStatus"),
        _p("category", "token", "category"),
        _p("target-date", "date", "target.dueDate"),
        _p("start-date", "date", "startDate"),
    ],
    "Condition": [
        IDENTIFIER,
        *_subject("subject"),
        _p("code", "token", "code"),
        _p("clinical-status", "token", "clinicalStatus"),
        _p("category", "token", "category"),
        _p("onset-date", "date", "onsetDateTime", "onsetPeriod"),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
    ],
    "Coverage": [
        IDENTIFIER,
        _p("beneficiary", "reference", "beneficiary", targets=PATIENT),
        _p("patient", "reference", "beneficiary", targets=PATIENT),
        _p("status", "token", "status"),
        _p("payor", "reference", "payor"),
        _p("subscriber", "reference", "subscriber"),
        _p("type", "token", "type"),
    ],
    "Encounter": [
        IDENTIFIER,
        *_subject("subject"),
        _p("status", "token", "status"),
        _p("class", "token", "class"),
        _p("type", "token", "type"),
        _p("date", "date", "period"),
        _p("participant", "reference", "participant.individual"),
        _p("service-provider", "reference", "serviceProvider", targets=("Organization",)),
        _p("based-on", "reference", "basedOn"),
        _p("episode-of-care", "reference", "episodeOfCare"),
    ],
    "Appointment": [
        IDENTIFIER,
        _p("patient", "reference", "participant.actor", targets=PATIENT),
        _p("actor", "reference", "participant.actor"),
        _p("practitioner", "reference", "participant.actor", targets=("Practitioner",)),
        _p("location", "reference", "participant.actor", targets=("Location",)),
        _p("status", "token", "status"),
        _p("date", "date", "start"),
        _p("service-type", "token", "serviceType"),
        _p("appointment-type", "token", "appointmentType"),
        _p("reason-code", "token", "reasonCode"),
        _p("based-on", "reference", "basedOn"),
        _p("part-status", "token", "participant.status"),
    ],
    "Observation": [
        IDENTIFIER,
        *_subject("subject"),
        _p("status", "token", "status"),
        _p("code", "token", "code"),
        _p("category", "token", "category"),
        _p("date", "date", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
        _p("based-on", "reference", "basedOn"),
        _p("performer", "reference", "performer"),
    ],
    "DocumentReference": [
        IDENTIFIER,
        *_subject("subject"),
        _p("status", "token", "status"),
        _p("type", "token", "type"),
        _p("category", "token", "category"),
        _p("date", "date", "date"),
        _p("author", "reference", "author"),
        _p("related", "reference", "context.related"),
        _p("encounter", "reference", "context.encounter"),
    ],
    "Communication": [
        IDENTIFIER,
        *_subject("subject"),
        _p("status", "token", "status"),
        _p("category", "token", "category"),
        _p("sender", "reference", "sender"),
        _p("recipient", "reference", "recipient"),
        _p("based-on", "reference", "basedOn"),
        _p("part-of", "reference", "partOf"),
        _p("sent", "date", "sent"),
        _p("received", "date", "received"),
    ],
    "Composition": [
        _p("identifier", "token", "identifier"),
        *_subject("subject"),
        _p("status", "token", "status"),
        _p("type", "token", "type"),
        _p("date", "date", "date"),
        _p("author", "reference", "author"),
    ],
    "AuditEvent": [
        _p("date", "date", "recorded"),
        _p("entity", "reference", "entity.what"),
        _p("agent", "reference", "agent.who"),
        _p("altid", "token", "agent.altId"),
        _p("subtype", "token", "subtype"),
        _p("action", "token", "action"),
        _p("outcome", "token", "outcome"),
        _p("patient", "reference", "entity.what", targets=PATIENT),
    ],
    "Location": [
        IDENTIFIER,
        _p("name", "string", "name", "alias"),
        _p("status", "token", "status"),
        _p("type", "token", "type"),
        _p("address", "string", "address"),
        _p("organization", "reference", "managingOrganization", targets=("Organization",)),
        _p("partof", "reference", "partOf", targets=("Location",)),
    ],
    # billing (issue #14)
    "ChargeItem": [
        IDENTIFIER,
        *_subject("subject"),
        _p("code", "token", "code"),
        _p("context", "reference", "context"),
        _p("occurrence", "date", "occurrenceDateTime", "occurrencePeriod"),
        _p("performer-actor", "reference", "performer.actor"),
        _p("entered-date", "date", "enteredDate"),
    ],
    "Claim": [
        IDENTIFIER,
        _p("patient", "reference", "patient", targets=PATIENT),
        _p("status", "token", "status"),
        _p("use", "token", "use"),
        _p("created", "date", "created"),
        _p("encounter", "reference", "item.encounter", targets=("Encounter",)),
        _p("provider", "reference", "provider"),
        _p("insurer", "reference", "insurer", targets=("Organization",)),
        _p("care-team", "reference", "careTeam.provider"),
        _p("facility", "reference", "facility", targets=("Location",)),
    ],
    "ClaimResponse": [
        IDENTIFIER,
        _p("patient", "reference", "patient", targets=PATIENT),
        _p("status", "token", "status"),
        _p("request", "reference", "request", targets=("Claim",)),
        _p("outcome", "token", "outcome"),
        _p("created", "date", "created"),
        _p("insurer", "reference", "insurer", targets=("Organization",)),
        _p("disposition", "string", "disposition"),
        _p("payment-date", "date", "payment.date"),
        _p("requestor", "reference", "requestor"),
        _p("use", "token", "use"),
    ],
    "CoverageEligibilityRequest": [
        IDENTIFIER,
        _p("patient", "reference", "patient", targets=PATIENT),
        _p("status", "token", "status"),
        _p("created", "date", "created"),
        _p("provider", "reference", "provider"),
    ],
    "CoverageEligibilityResponse": [
        IDENTIFIER,
        _p("patient", "reference", "patient", targets=PATIENT),
        _p("status", "token", "status"),
        _p("created", "date", "created"),
        _p("request", "reference", "request", targets=("CoverageEligibilityRequest",)),
        _p("outcome", "token", "outcome"),
        _p("insurer", "reference", "insurer", targets=("Organization",)),
        _p("requestor", "reference", "requestor"),
        _p("disposition", "string", "disposition"),
    ],
    "Provenance": [
        _p("target", "reference", "target"),
        _p("patient", "reference", "target", targets=PATIENT),
        _p("agent", "reference", "agent.who"),
        _p("recorded", "date", "recorded"),
        _p("entity", "reference", "entity.what"),
    ],
}

#: parameters every type supports, handled by the resources table itself
COMMON_PARAMS = {"_id": "token", "_lastUpdated": "date"}

#: result parameters (control the result, not the match)
RESULT_PARAMS = {"_count", "_sort", "_include", "_summary", "_total", "_offset", "_format", "_elements", "_revinclude"}


def params_for(resource_type: str) -> dict[str, SearchParam]:
    return {p.name: p for p in SEARCH_PARAMS.get(resource_type, [])}


# ---------------------------------------------------------------- value extraction


def _walk(node: Any, parts: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, parts)
        return
    if not parts:
        yield node
        return
    if isinstance(node, dict) and parts[0] in node:
        yield from _walk(node[parts[0]], parts[1:])


def normalise_string(value: str) -> str:
    """Case- and accent-insensitive form used by string search."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()[:255]


def _tokens(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value["coding"] or []:
                yield from _tokens(coding)
        elif "code" in value and isinstance(value["code"], str):
            yield value.get("system"), value["code"]
        elif "value" in value and isinstance(value["value"], str):  # Identifier, ContactPoint
            yield value.get("system"), value["value"]


def contact_tokens(param: SearchParam, value: Any) -> Iterator[tuple[str | None, str]]:
    """The index tokens of one ContactPoint: (system, value as written) and (system, comparable form)."""
    if not isinstance(value, dict) or not isinstance(value.get("value"), str):
        return
    system = value.get("system")
    if param.contact not in ("*", system):
        return
    yield system, value["value"]
    normal = normal_contact(system, value["value"])
    if normal is not None and normal != value["value"]:
        yield system, normal


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state",
                    "postalCode", "country"):
            item = value.get(key)
            if isinstance(item, str):
                yield item
            elif isinstance(item, list):
                yield from (i for i in item if isinstance(i, str))


def _references(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        parsed = parse_reference(value["reference"])
        if parsed:
            yield parsed


def _dates(value: Any) -> Iterator[tuple[datetime, datetime]]:
    try:
        if isinstance(value, str):
            yield date_range(value)
        elif isinstance(value, dict) and ("start" in value or "end" in value):
            low = date_range(value["start"])[0] if value.get("start") else MIN_DATE
            high = date_range(value["end"])[1] if value.get("end") else MAX_DATE
            yield low, high
    except ValueError:
        return


def extract(resource_type: str, resource: dict[str, Any]) -> IndexValues:
    """Every index value of ``resource`` for the search parameters of its type."""
    out = IndexValues()
    for param in SEARCH_PARAMS.get(resource_type, []):
        for path in param.paths:
            for value in _walk(resource, path.split(".")):
                if param.type == "token" and param.contact is not None:
                    out.tokens.extend((param.name, s[:255] if s else s, c[:255])
                                      for s, c in contact_tokens(param, value))
                elif param.type == "token":
                    # the columns hold 255 characters; search values are cut the same way (search._token_values)
                    out.tokens.extend((param.name, s[:255] if s else s, c[:255]) for s, c in _tokens(value))
                elif param.type == "string":
                    # code: the normalised form (default, prefix search); system: the text as written (:exact)
                    out.tokens.extend((param.name, s[:255], normalise_string(s)) for s in _strings(value))
                elif param.type == "reference":
                    for target_type, target_id in _references(value):
                        if param.targets is None or target_type in param.targets:
                            out.references.append((param.name, target_type, target_id))
                else:
                    out.dates.extend((param.name, low, high) for low, high in _dates(value))
    return out
