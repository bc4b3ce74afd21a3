"""Validation of FHIR R4 resources: structure by ``fhir.resources``, required bindings by us.

Pure: takes a parsed JSON value, returns :class:`Issue` objects whose ``expression`` is the FHIRPath
of the offending element. Messages never echo the submitted values (they may be PHI).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mappings.fhir import SUPPORTED_TYPES, model_class
from mappings.fhir.bindings import Binding, bindings_for


@dataclass(frozen=True, slots=True)
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # an IssueType code: invalid, structure, required, value, code-invalid, not-supported...
    diagnostics: str
    expression: str | None = None

    def as_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = [self.expression]
        return out


_PYDANTIC_CODES = {
    "missing": ("required", "Required element is missing"),
    "extra_forbidden": ("structure", "Unknown element (not part of FHIR R4 for this type)"),
}


def _fhirpath(root: str, loc: tuple[int | str, ...]) -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier() or (part.startswith("_") and part[1:].isidentifier()):
            path += f".{part}"
        # other parts are pydantic internals (union branches, validators): not FHIR elements
    return path


def _structure_issues(resource_type: str, resource: dict[str, Any]) -> list[Issue]:
    try:
        model_class(resource_type).model_validate(resource)
    except ValidationError as exc:
        issues = []
        for err in exc.errors(include_input=False, include_url=False):
            code, text = _PYDANTIC_CODES.get(err["type"], ("value", err["msg"]))
            issues.append(Issue("error", code, text, _fhirpath(resource_type, tuple(err["loc"]))))
        return issues
    except (ValueError, TypeError) as exc:  # some fhir_core validators raise plain errors
        return [Issue("error", "value", str(exc).splitlines()[0][:200], resource_type)]
    return []


def _walk(node: Any, parts: list[str], path: str) -> Iterator[tuple[str, Any, bool]]:
    """Yield (fhirpath, value, present) for every element at ``parts`` below ``node``."""
    if not parts:
        yield path, node, True
        return
    if not isinstance(node, dict):
        return
    head, rest = parts[0], parts[1:]
    if head not in node:
        if not rest:
            yield f"{path}.{head}", None, False
        return
    child = node[head]
    if isinstance(child, list):
        for index, item in enumerate(child):
            yield from _walk(item, rest, f"{path}.{head}[{index}]")
    else:
        yield from _walk(child, rest, f"{path}.{head}")


def _binding_issues(resource_type: str, resource: dict[str, Any], binding: Binding) -> Iterator[Issue]:
    for expression, value, present in _walk(resource, binding.path.split("."), resource_type):
        if not present:
            if binding.required and "." not in binding.path:
                yield Issue("error", "required", "Required element is missing", expression)
            continue
        if binding.system is None:
            if isinstance(value, str) and value not in binding.codes:
                yield Issue(
                    "error",
                    "code-invalid",
                    f"Code is not in the required value set ({', '.join(sorted(binding.codes))})",
                    expression,
                )
            continue
        codings = value.get("coding", []) if isinstance(value, dict) else []
        if not any(c.get("system") == binding.system and c.get("code") in binding.codes for c in codings):
            yield Issue(
                "error",
                "code-invalid",
                f"CodeableConcept needs a coding from {binding.system} "
                f"({', '.join(sorted(binding.codes))})",
                expression,
            )


def validate_resource(resource: Any, expected_type: str | None = None) -> list[Issue]:
    """All the problems of ``resource`` (empty list when it is a valid R4 resource the hub serves)."""
    if not isinstance(resource, dict):
        return [Issue("error", "structure", "A FHIR resource must be a JSON object")]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return [Issue("error", "required", "resourceType is missing", "resourceType")]
    if expected_type is not None and resource_type != expected_type:
        return [
            Issue(
                "error",
                "invalid",
                f"resourceType {resource_type!r} does not match the endpoint type {expected_type!r}",
                "resourceType",
            )
        ]
    if resource_type not in SUPPORTED_TYPES:
        return [Issue("error", "not-supported", f"Resource type {resource_type!r} is not supported", "resourceType")]
    issues = _structure_issues(resource_type, resource)
    seen = {(i.expression, i.code) for i in issues}
    for binding in bindings_for(resource_type):
        for issue in _binding_issues(resource_type, resource, binding):
            if (issue.expression, issue.code) not in seen:
                issues.append(issue)
    return issues
