"""Parsing of FHIR search requests into store queries (``hub.store.repository.SearchQuery``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hub.errors import BadRequest, NotAcceptable
from hub.fhir.dates import date_range
from hub.fhir.searchparams import (
    RESULT_PARAMS,
    SearchParam,
    normalise_string,
    params_for,
)
from hub.kit import parse_reference
from hub.store.repository import Criterion, TokenMatch
from mappings.fhir.contact import normal_contact
from mappings.fhir.validation import Issue

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
SUMMARY_VALUES = {"count", "false"}


@dataclass
class ParsedSearch:
    criteria: list[Criterion] = field(default_factory=list)
    count: int | None = None
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=lambda: [("_lastUpdated", False)])
    includes: list[tuple[str, str, str | None]] = field(default_factory=list)  # (source type, param, target)
    summary_count: bool = False
    total: str | None = None
    #: parameters that were ignored (lenient handling); reported back in the Bundle
    ignored: list[Issue] = field(default_factory=list)
    #: the parameters that were applied, for self/next links
    applied: list[tuple[str, str]] = field(default_factory=list)


def _token_values(raw: str) -> list[TokenMatch]:
    out = []
    for value in _split(raw):
        if "|" in value:
            system, code = value.split("|", 1)
            out.append(TokenMatch(system[:255] or None, code[:255] or None, any_system=False))
        else:  # cut to the 255 characters the index keeps (searchparams.extract)
            out.append(TokenMatch(None, value[:255], any_system=True))
    return out


def _with_normal_contacts(tokens: list[TokenMatch]) -> list[TokenMatch]:
    """A contact value also in the comparable form it is indexed in (searchparams.contact_tokens):
    ``+1 (555) 010-2000`` finds ``15550102000``; without a system, a number is read as a phone one."""
    out = list(tokens)
    for t in tokens:
        system = t.system if not t.any_system else ("email" if "@" in (t.code or "") else "phone")
        normal = normal_contact(system, t.code)
        if normal is not None and normal != t.code:
            out.append(TokenMatch(t.system, normal, t.any_system))
    return out


def _split(raw: str) -> list[str]:
    """Split a parameter value on unescaped commas (``\\,`` is a literal comma)."""
    parts, current, escaped = [], [], False
    for char in raw:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p != ""]


def _date_values(name: str, raw: str) -> list[tuple[str, object, object]]:
    out = []
    for value in _split(raw):
        # a '+' of a time zone offset that was not percent-encoded arrives as a space
        value = value.strip().replace(" ", "+")
        prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
        text = value[2:] if value[:2] in DATE_PREFIXES else value
        try:
            low, high = date_range(text)
        except ValueError:
            raise BadRequest(
                f"Search parameter {name}: value is not a FHIR date (prefixes: {', '.join(DATE_PREFIXES)})",
                expression=name,
            ) from None
        out.append((prefix, low, high))
    return out


def _reference_values(param: SearchParam, raw: str, base_url: str, type_modifier: str | None) -> list:
    out: list[tuple[str | None, str]] = []
    for value in _split(raw):
        if value.startswith(base_url + "/"):
            value = value[len(base_url) + 1 :]
        parsed = parse_reference(value)
        if parsed:
            out.append(parsed)
        elif "/" not in value:
            target = type_modifier or (param.targets[0] if param.targets and len(param.targets) == 1 else None)
            out.append((target, value))
        else:
            raise BadRequest(f"Search parameter {param.name}: not a reference", expression=param.name)
    return out


def parse_search(
    resource_type: str,
    items: Sequence[tuple[str, str]],
    *,
    base_url: str,
    strict: bool,
    default_count: int,
    max_count: int,
) -> ParsedSearch:
    """Parse ``items`` (query string pairs). Unknown parameters raise under ``strict`` handling."""
    params = params_for(resource_type)
    parsed = ParsedSearch()

    def unknown(name: str, why: str) -> None:
        if strict:
            raise BadRequest(f"{why} (the request asked for strict handling)", expression=name)
        parsed.ignored.append(Issue("warning", "not-supported", f"{why}: ignored", name))

    for key, raw in items:
        name, _, modifier = key.partition(":")
        if name in RESULT_PARAMS:
            _result_param(resource_type, name, modifier, raw, parsed, unknown, max_count)
            continue
        if name in ("_id", "_lastUpdated") and modifier not in (("", "not") if name == "_id" else ("",)):
            unknown(key, f"Modifier :{modifier} is not supported on {name}")
            continue
        if (name in ("_id", "_lastUpdated") or name in params) and not _split(raw):
            continue  # a parameter without a value is ignored (it is no criterion)
        if name == "_id":
            parsed.criteria.append(Criterion(param="_id", kind="id", negate=modifier == "not", ids=_split(raw)))
        elif name == "_lastUpdated":
            dates = _date_values(name, raw)
            parsed.criteria.append(Criterion(param=name, kind="lastUpdated", dates=dates))  # type: ignore[arg-type]
        elif name in params:
            criterion = _criterion(params[name], modifier, raw, base_url, unknown)
            if criterion is None:
                continue
            parsed.criteria.append(criterion)
        else:
            unknown(key, f"Unknown search parameter {key!r} for {resource_type}")
            continue
        parsed.applied.append((key, raw))
    if parsed.count is None:
        parsed.count = default_count
    return parsed


def _criterion(param: SearchParam, modifier: str, raw: str, base_url: str, unknown) -> Criterion | None:  # type: ignore[no-untyped-def]
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise BadRequest(f"{param.name}:missing takes true or false", expression=param.name)
        return Criterion(param=param.name, kind=param.type, missing=raw == "true")
    if param.type == "token":
        if modifier not in ("", "not"):
            unknown(f"{param.name}:{modifier}", f"Modifier :{modifier} is not supported on {param.name}")
            return None
        tokens = _token_values(raw)
        if param.contact is not None:
            tokens = _with_normal_contacts(tokens)
        return Criterion(param=param.name, kind="token", negate=modifier == "not", tokens=tokens)
    if param.type == "string":
        if modifier not in ("", "exact"):
            unknown(f"{param.name}:{modifier}", f"Modifier :{modifier} is not supported on {param.name}")
            return None
        # :exact compares the text as written (case and accents matter), the default the normalised prefix
        values = [(v[:255] if modifier == "exact" else normalise_string(v), modifier == "exact") for v in _split(raw)]
        return Criterion(param=param.name, kind="string", strings=values)
    if param.type == "reference":
        type_modifier = modifier if modifier and modifier[0].isupper() else None
        if modifier and type_modifier is None:
            unknown(f"{param.name}:{modifier}", f"Modifier :{modifier} is not supported on {param.name}")
            return None
        refs = _reference_values(param, raw, base_url, type_modifier)
        return Criterion(param=param.name, kind="reference", references=refs)
    if modifier:
        unknown(f"{param.name}:{modifier}", f"Modifier :{modifier} is not supported on {param.name}")
        return None
    return Criterion(param=param.name, kind="date", dates=_date_values(param.name, raw))  # type: ignore[arg-type]


def _result_param(resource_type, name, modifier, raw, parsed: ParsedSearch, unknown, max_count) -> None:  # type: ignore[no-untyped-def]
    if name == "_count":
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest("_count must be a non-negative integer", expression="_count") from None
        if value < 0:
            raise BadRequest("_count must be a non-negative integer", expression="_count")
        parsed.count = min(value, max_count)
        parsed.applied.append(("_count", str(parsed.count)))
    elif name == "_offset":
        try:
            parsed.offset = min(max(0, int(raw)), 2**31 - 1)  # past any result; a database integer
        except ValueError:
            raise BadRequest("_offset must be a non-negative integer", expression="_offset") from None
    elif name == "_sort":
        sort = []
        for key in _split(raw):
            desc = key.startswith("-")
            key = key.lstrip("-")
            if key not in ("_lastUpdated", "_id"):
                unknown("_sort", f"Sorting by {key!r} is not supported (supported: _lastUpdated, _id)")
                return
            sort.append((key, desc))
        parsed.sort = sort
        parsed.applied.append(("_sort", raw))
    elif name == "_include":
        source, _, rest = raw.partition(":")
        param_name, _, target = rest.partition(":")
        params = params_for(source)
        if source != resource_type or (param_name != "*" and params.get(param_name, None) is None):
            unknown("_include", f"_include={raw} is not supported for {resource_type}")
            return
        if param_name != "*" and params[param_name].type != "reference":
            unknown("_include", f"_include={raw}: {param_name} is not a reference parameter")
            return
        parsed.includes.append((source, param_name, target or None))
        parsed.applied.append(("_include", raw))
    elif name == "_summary":
        if raw not in SUMMARY_VALUES:
            unknown("_summary", f"_summary={raw} is not supported (supported: count, false)")
            return
        parsed.summary_count = raw == "count"
        parsed.applied.append(("_summary", raw))
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise BadRequest("_total takes none, estimate or accurate", expression="_total")
        parsed.total = raw
        parsed.applied.append(("_total", raw))
    elif name == "_format":
        if "xml" in raw:
            raise NotAcceptable("Only JSON is supported (_format=json)", expression="_format")
    else:
        unknown(name, f"Result parameter {name} is not supported")
