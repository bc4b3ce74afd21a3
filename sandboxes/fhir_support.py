"""What the sandbox FHIR server and the sandbox EMR share: answers, errors, FHIR dates and search tokens."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from mappings.fhir import jsonio

PREFIX = "/fhir"
FHIR_JSON = "application/fhir+json"

#: What the sandbox EMR stores unless told otherwise (``resource_types=``); others get 404.
DEFAULT_RESOURCE_TYPES: tuple[str, ...] = (
    "AllergyIntolerance",
    "Appointment",
    "Binary",
    "CarePlan",
    "CareTeam",
    "Claim",
    "ClaimResponse",
    "Communication",
    "CommunicationRequest",
    "Composition",
    "Condition",
    "Consent",
    "Coverage",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Endpoint",
    "EpisodeOfCare",
    "ExplanationOfBenefit",
    "Goal",
    "HealthcareService",
    "Location",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "ServiceRequest",
    "Task",
)


RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
RESOURCE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_DATE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


@dataclass(frozen=True)
class Reply:
    """One answer: status, headers, body; ``outcome`` is what the request log records."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    outcome: str = "ok"


class Problem(Exception):
    """An error answer: becomes an OperationOutcome."""

    def __init__(self, status: int, code: str, diagnostics: str, headers: Mapping[str, str] | None = None):
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.headers = dict(headers or {})


def format_instant(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_instant(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("last_updated must be timezone-aware")
        return value.astimezone(UTC)
    lo, _ = _date_range(value)
    return lo


def order_key(resource: Mapping[str, Any]) -> tuple[datetime, str]:
    return as_instant(resource["meta"]["lastUpdated"]), resource["id"]


def _date_range(value: str) -> tuple[datetime, datetime]:
    """The interval [lo, hi) a FHIR date/dateTime/instant covers, by its precision (UTC if no zone)."""
    match = _DATE.fullmatch(value)
    if match is None:
        raise ValueError("not a FHIR date")
    year = int(match["year"])
    month, day = int(match["month"] or 1), int(match["day"] or 1)
    hour, minute, second = int(match["hour"] or 0), int(match["minute"] or 0), int(match["second"] or 0)
    fraction = match["fraction"] or ""
    zone = match["zone"]
    tz = UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    lo = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    if match["month"] is None:
        hi = lo.replace(year=year + 1)
    elif match["day"] is None:
        hi = lo.replace(year=year + month // 12, month=month % 12 + 1)
    elif match["hour"] is None:
        hi = lo + timedelta(days=1)
    elif match["second"] is None:
        hi = lo + timedelta(minutes=1)
    elif not fraction:
        hi = lo + timedelta(seconds=1)
    else:
        hi = lo + timedelta(microseconds=10 ** max(0, 6 - len(fraction)))
    return lo.astimezone(UTC), hi.astimezone(UTC)


def date_filter(raw: str) -> Any:
    prefix, value = (raw[:2], raw[2:]) if raw[:2] in _PREFIXES else ("eq", raw)
    try:
        lo, hi = _date_range(value)
    except ValueError:
        raise Problem(400, "value", f"_lastUpdated: {quote(raw)} is not a FHIR date") from None
    tests = {
        "eq": lambda t: lo <= t < hi,
        "ge": lambda t: t >= lo,
        "gt": lambda t: t >= hi,
        "le": lambda t: t < hi,
        "lt": lambda t: t < lo,
    }
    if prefix not in tests:
        raise Problem(400, "not-supported", f"_lastUpdated prefix {prefix} is not supported")
    return tests[prefix]


def identifier_token(value: str) -> tuple[str | None, str | None]:
    """``system|value`` -> (system, value); ``|value`` -> ("", value); ``value`` -> (None, value)."""
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    return system, code or None


def has_identifier(resource: Mapping[str, Any], system: str | None, value: str | None) -> bool:
    identifiers = resource.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if not isinstance(identifier, dict):
            continue
        if system is not None and (identifier.get("system") or "") != system:
            continue
        if value is not None and identifier.get("value") != value:
            continue
        return True
    return False


def single_param(params: Sequence[tuple[str, str]], name: str, default: str) -> str:
    values = [v for n, v in params if n == name]
    if len(values) > 1:
        raise Problem(400, "value", f"{name} may appear once")
    return values[0] if values else default


def non_negative_param(params: Sequence[tuple[str, str]], name: str, default: int) -> int:
    raw = single_param(params, name, str(default))
    if not raw.isdigit() or len(raw) > 9:
        raise Problem(400, "value", f"{name} must be a non-negative integer")
    return int(raw)


def quote(value: str) -> str:
    return repr(value[:64])


def outcome_issue(severity: str, code: str, diagnostics: str) -> dict[str, str]:
    return {"severity": severity, "code": code, "diagnostics": diagnostics}


def json_reply(status: int, value: Any) -> Reply:
    return Reply(status, {"Content-Type": FHIR_JSON + "; charset=utf-8"}, jsonio.dumpb(value))


def plain_reply(status: int, value: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A control-endpoint answer (plain JSON)."""
    return Reply(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(value).encode())


def outcome_reply(problem: Problem) -> Reply:
    entry = outcome_issue("error", problem.code, problem.diagnostics)
    reply = json_reply(problem.status, {"resourceType": "OperationOutcome", "issue": [entry]})
    return replace(reply, headers={**reply.headers, **problem.headers}, outcome="error")


