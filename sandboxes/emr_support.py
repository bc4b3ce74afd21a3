"""The sandbox EMR's SMART Backend Services pieces and conditional-write criteria, as plain functions.

Scopes and permissions, the token endpoint's records and refusals, the FHIR interaction a request
needs, ``identifier`` criteria of conditional writes and the relative references a body holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sandboxes.fhir_support import PREFIX, Problem, quote

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300  # SMART: exp no more than five minutes in the future

SCOPE = re.compile(r"(?P<context>system|user|patient)/(?P<type>\*|[A-Z][A-Za-z]{1,63})\.(?P<perms>\S+)")
_V2_PERMS = re.compile(r"c?r?u?d?s?")
_V1_PERMS = {"read": "rs", "write": "cud", "*": "cruds"}
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


# ------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TokenRequest:
    """One request to the token endpoint. ``error`` is the OAuth error code (None: token issued)."""

    client_id: str | None
    status: int
    error: str | None
    description: str | None
    scope: str | None
    received_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "status": self.status,
            "error": self.error,
            "description": self.description,
            "scope": self.scope,
            "received_at": self.received_at,
        }


@dataclass(frozen=True)
class Permission:
    resource_type: str  # a type or "*"
    perms: frozenset[str]

    def covers(self, other: Permission) -> bool:
        return self.resource_type in ("*", other.resource_type) and other.perms <= self.perms

    def allows(self, resource_type: str, needed: str) -> bool:
        return self.resource_type in ("*", resource_type) and set(needed) <= self.perms


@dataclass
class Client:
    client_id: str
    keys: dict[str | None, PublicKey]  # kid -> key; None: a key that answers to any kid
    scopes: frozenset[str]
    permissions: tuple[Permission, ...]


@dataclass(frozen=True)
class Grant:
    client_id: str
    scope: str
    permissions: tuple[Permission, ...]
    expires_at: float


@dataclass
class Window:
    started: float
    count: int = 0


class OAuthProblem(Exception):
    def __init__(self, status: int, error: str, description: str, headers: Mapping[str, str] | None = None):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = dict(headers or {})


def invalid_client(description: str) -> OAuthProblem:
    return OAuthProblem(401, "invalid_client", description)


def scope_permission(scope: str) -> Permission | None:
    """The permission of a ``system/`` scope; None for other contexts and non-resource scopes."""
    match = SCOPE.fullmatch(scope)
    if match is None or match["context"] != "system":
        return None
    perms = _V1_PERMS.get(match["perms"])
    if perms is None:
        perms = match["perms"]
        if not perms or not _V2_PERMS.fullmatch(perms):
            return None
    return Permission(match["type"], frozenset(perms))


def needed_permission(method: str, path: str, types: frozenset[str]) -> tuple[str, str, str] | None:
    """(resource type, SMART permissions needed, label) of a FHIR request; None: not type-level."""
    if not path.startswith(PREFIX + "/"):
        return None
    segments = [s for s in path[len(PREFIX) :].strip("/").split("/") if s]
    if not segments or segments[0] not in types:
        return None
    resource_type = segments[0]
    if method == "GET":
        return (resource_type, "s", "search") if len(segments) == 1 else (resource_type, "r", "read")
    if method == "POST" and len(segments) == 1:
        return resource_type, "c", "create"
    if method == "PUT":
        return resource_type, "cu", "update"
    if method == "DELETE":
        return resource_type, "d", "delete"
    return None


def conditional_criteria(query: str, what: str) -> list[tuple[str | None, str]]:
    """``identifier`` criteria of a conditional interaction as (system or None, value)."""
    params = parse_qsl(query, keep_blank_values=True)
    if not params:
        raise Problem(400, "invalid", f"{what} needs identifier criteria")
    unknown = sorted({name for name, _ in params if name != "identifier"})
    if unknown:
        raise Problem(
            400, "not-supported", f"{what} supports identifier only (not {', '.join(map(quote, unknown))})"
        )
    return [_split_token(value, what) for _, value in params]


def _split_token(text: str, what: str) -> tuple[str | None, str]:
    """``system|value`` with FHIR escapes -> (system, value); ``value`` -> (None, value)."""
    parts: list[str] = [""]
    escaped = False
    for char in text:
        if escaped:
            parts[-1] += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|" and len(parts) == 1:
            parts.append("")
        elif char in ",|$":
            raise Problem(
                400, "not-supported", f"{what}: unescaped {char!r} (several values are not supported)"
            )
        else:
            parts[-1] += char
    if escaped:
        raise Problem(400, "value", f"{what}: a trailing backslash")
    value = parts[-1]
    if not value:
        raise Problem(400, "value", f"{what}: an identifier criterion needs a value")
    return (parts[0], value) if len(parts) == 2 else (None, value)


def matches_identifier(resource: Mapping[str, Any], system: str | None, value: str) -> bool:
    """An exact match: ``system`` None matches any system, "" only identifiers without one."""
    identifiers = resource.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if not isinstance(identifier, dict) or identifier.get("value") != value:
            continue
        if system is None or (identifier.get("system") or "") == system:
            return True
    return False


_RELATIVE_REFERENCE = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


def literal_references(node: Any, path: str) -> Iterator[tuple[str, str, str]]:
    """(element path, type, id) of each relative literal reference, ``contained`` and narrative skipped."""
    if isinstance(node, list):
        for item in node:
            yield from literal_references(item, path)
    elif isinstance(node, dict):
        text = node.get("reference")
        match = _RELATIVE_REFERENCE.fullmatch(text) if isinstance(text, str) else None
        if match is not None:
            yield path, match[1], match[2]
        for key, value in node.items():
            if key not in ("contained", "text", "reference"):
                yield from literal_references(value, f"{path}.{key}")


def token_form(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthProblem(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthProblem(400, "invalid_request", "the body is not a form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthProblem(400, "invalid_request", f"parameter {quote(name)} repeated")
        form[name] = value
    return form


