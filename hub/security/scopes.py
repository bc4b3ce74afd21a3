"""SMART App Launch scopes, v2 (``system/ServiceRequest.cruds``) and v1 (``system/*.read``).

A scope grants interactions on a resource type: c(reate) r(ead) u(pdate) d(elete) s(earch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCOPE = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|c?r?u?d?s?)$")
V1 = {"read": "rs", "write": "cud", "*": "cruds"}


@dataclass(frozen=True, slots=True)
class Scope:
    context: str
    resource_type: str  # or "*"
    permissions: frozenset[str]


def parse_scopes(text: str) -> list[Scope]:
    out = []
    for token in text.split():
        match = _SCOPE.match(token)
        if not match or not match.group(3):
            continue
        context, resource_type, perms = match.groups()
        out.append(Scope(context, resource_type, frozenset(V1.get(perms, perms))))
    return out


def invalid_scopes(text: str) -> list[str]:
    return [t for t in text.split() if not _SCOPE.match(t) or t.endswith(".")]


def allows(scopes: list[Scope], resource_type: str, permission: str) -> bool:
    return any(
        (s.resource_type in ("*", resource_type)) and permission in s.permissions for s in scopes
    )


def narrow(requested: str, granted: str) -> str:
    """The requested scopes that the client's granted scopes cover (all of them when none asked)."""
    if not requested.strip():
        return granted
    grants = parse_scopes(granted)
    keep = []
    for scope in parse_scopes(requested):
        targets = [scope.resource_type] if scope.resource_type != "*" else ["*"]
        if all(
            any(g.resource_type in ("*", t) and scope.permissions <= g.permissions for g in grants) for t in targets
        ):
            permissions = "".join(sorted(scope.permissions, key="cruds".index))
            keep.append(f"{scope.context}/{scope.resource_type}.{permissions}")
    return " ".join(keep)
