"""Validation of FHIR R4 resources: structure by ``fhir.resources``, required bindings by us.

Pure: takes a parsed JSON value, returns :class:`Issue` objects whose ``expression`` is the FHIRPath
of the offending element. Messages never echo the submitted values (they may be PHI).
"""

from __future__ import annotations

import datetime
import decimal
import functools
import types
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mappings.fhir import SUPPORTED_TYPES, model_class
from mappings.fhir.bindings import DATATYPE_BINDINGS, Binding, bindings_for


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
    # fhir_core parses a string given for a complex element as JSON text, or names the python class
    "json_invalid": ("value", "Wrong JSON type: expected a JSON object"),
    "model_validation_format": ("value", "Wrong JSON type: expected a JSON object"),
}


def _fhirpath(root: str, loc: tuple[int | str, ...]) -> str:
    path = root
    if loc and loc[-1] == "root":  # fhir_core reports errors of a complex element at "<element>.root"
        loc = loc[:-1]
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier() or (part.startswith("_") and part[1:].isidentifier()):
            path += f".{part}"
        # other parts are pydantic internals (union branches, validators): not FHIR elements
    return path


def _known_model(resource_type: Any) -> Any:
    """The model class of a FHIR resource type name, or None (unknown names, non-strings)."""
    if not isinstance(resource_type, str) or not resource_type.isidentifier():
        return None
    try:
        return model_class(resource_type)
    except (ValueError, KeyError, ImportError, AttributeError):
        return None


def _structure_issues(resource_type: str, resource: dict[str, Any]) -> list[Issue]:
    issues = []
    contained = resource.get("contained")
    kept: list[int] = []
    if isinstance(contained, list):
        # fhir_core fails with a KeyError on a contained resource of an unknown type: report it here
        # and validate the resource without it
        for index, item in enumerate(contained):
            if isinstance(item, dict) and _known_model(item.get("resourceType")) is None:
                issues.append(
                    Issue(
                        "error",
                        "not-supported",
                        "A contained resource needs the resourceType of a FHIR resource",
                        f"{resource_type}.contained[{index}].resourceType",
                    )
                )
            else:
                kept.append(index)
        if len(kept) < len(contained):
            resource = dict(resource, contained=[contained[i] for i in kept])
    try:
        model_class(resource_type).model_validate(resource)
    except ValidationError as exc:
        for err in exc.errors(include_input=False, include_url=False):
            code, text = _PYDANTIC_CODES.get(err["type"], ("value", err["msg"]))
            loc = tuple(err["loc"])
            if len(loc) > 1 and loc[0] == "contained" and isinstance(loc[1], int) and loc[1] < len(kept):
                loc = ("contained", kept[loc[1]], *loc[2:])  # the index in the resource as sent
            issues.append(Issue("error", code, text, _fhirpath(resource_type, loc)))
    except Exception:  # some fhir_core validators raise plain errors; their text may quote the input
        issues.append(
            Issue("error", "structure", "The resource does not have the structure of FHIR R4", resource_type)
        )
    return issues


# ---------------------------------------------------------------- FHIR JSON representation
# fhir.resources validates in pydantic's lax mode: it accepts "true" and 1 for a boolean, "3" for an
# integer, "1.5" for a decimal, null, [] and {}, and python field names ("family__ext") for the
# JSON names ("_family"). The hub stores the JSON as sent, so these are checked here against the
# JSON representation rules (https://hl7.org/fhir/R4/json.html).


@dataclass(frozen=True, slots=True)
class _Field:
    kind: str  # boolean | integer | decimal | string | element | resource | other
    model: Any = None  # element model class (kind "element")
    is_list: bool = False


def _field_spec(annotation: Any) -> _Field:
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, types.UnionType):
            if len(args) != 1:  # Union[AnyUrl, str] (url) is a string; anything else is not checked
                return _Field("string" if str in args else "other", None, is_list)
            annotation = args[0]
        elif origin is list:
            is_list, annotation = True, args[0]
        elif origin is typing.Annotated:
            annotation = args[0]
        else:
            break
    if annotation is bool:
        return _Field("boolean", None, is_list)
    if annotation is int:
        return _Field("integer", None, is_list)
    if annotation is decimal.Decimal:
        return _Field("decimal", None, is_list)
    if annotation in (str, bytes, datetime.date, datetime.datetime, datetime.time, uuid.UUID):
        return _Field("string", None, is_list)
    get_model = getattr(annotation, "get_model_klass", None)
    if get_model is not None:
        model = get_model()
        if model.__name__ in ("Resource", "DomainResource"):
            return _Field("resource", None, is_list)
        return _Field("element", model, is_list)
    return _Field("other", None, is_list)


@functools.cache
def _json_fields(model: Any) -> dict[str, _Field]:
    """JSON name -> field of a model; python-only names map to kind ``python-name``."""
    fields: dict[str, _Field] = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if alias == "fhir_comments":  # accepted by fhir.resources, not part of FHIR R4 JSON
            fields[alias] = _Field("python-name")
            continue
        fields[alias] = _field_spec(info.annotation)
        if name != alias:
            fields.setdefault(name, _Field("python-name"))
    return fields


_JSON_TYPE_TEXT = {
    "boolean": "a JSON boolean (true or false)",
    "integer": "a JSON number without a fraction",
    "decimal": "a JSON number",
    "string": "a JSON string",
}


def _primitive_ok(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "decimal":
        return isinstance(value, int | decimal.Decimal) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return True


def _json_issues(model: Any, node: dict[str, Any], path: str) -> Iterator[Issue]:
    """JSON representation problems below ``node`` (an instance of ``model`` at ``path``), and the
    required bindings of the datatypes met on the way (``Identifier.use`` wherever it occurs)."""
    for binding in DATATYPE_BINDINGS.get(model.__name__, ()):
        yield from _binding_issues(path, node, binding)
    fields = _json_fields(model)
    for key, value in node.items():
        here = _fhirpath(path, (key,))
        spec = fields.get(key)
        if spec is None:
            continue  # an unknown element: the structure check reports it
        if spec.kind == "python-name":
            yield Issue("error", "structure", "Unknown element (not part of FHIR R4 for this type)", here)
            continue
        if value is None:
            yield Issue("error", "structure", "null is not allowed in FHIR JSON; leave the element out", here)
            continue
        if isinstance(value, list | dict) and not value:
            yield Issue("error", "structure", "Empty arrays and objects are not allowed in FHIR JSON", here)
            continue
        if spec.is_list and isinstance(value, list):
            items = [(f"{here}[{i}]", item) for i, item in enumerate(value)]
        else:
            items = [(here, value)]
        for where, item in items:
            if item is None:
                # null only as a placeholder in arrays of primitives and their "_x" extension arrays
                if spec.is_list and (spec.kind in _JSON_TYPE_TEXT or key.startswith("_")):
                    continue
                yield Issue("error", "structure", "null is not allowed here in FHIR JSON", where)
            elif spec.kind in _JSON_TYPE_TEXT:
                if not _primitive_ok(spec.kind, item):
                    expected = _JSON_TYPE_TEXT[spec.kind]
                    yield Issue("error", "value", f"Wrong JSON type: expected {expected}", where)
                elif isinstance(item, str) and "\x00" in item:
                    yield Issue("error", "value", "Strings may not contain the NUL character (U+0000)", where)
                elif item == "":
                    yield Issue("error", "value", "Empty strings are not allowed in FHIR JSON", where)
            elif isinstance(item, dict) and not item:
                yield Issue("error", "structure", "Empty objects are not allowed in FHIR JSON", where)
            elif spec.kind == "element" and isinstance(item, dict):
                yield from _json_issues(spec.model, item, where)
            elif spec.kind == "resource" and isinstance(item, dict):
                contained_model = _known_model(item.get("resourceType"))
                if contained_model is not None:
                    yield from _json_issues(contained_model, item, where)


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


def _is_code_in(code: Any, binding: Binding) -> bool:
    return isinstance(code, str) and code in binding.codes


def _binding_issues(resource_type: str, resource: dict[str, Any], binding: Binding) -> Iterator[Issue]:
    """Issues of one binding; ``resource_type`` is the root of the paths (``Type``, ``Type.contained[i]``)."""
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
        codings = value.get("coding") if isinstance(value, dict) else None
        codings = [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []
        if not any(
            c.get("system") == binding.system and _is_code_in(c.get("code"), binding) for c in codings
        ):
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
    # the submitted resourceType is not quoted back: it is client text like any other value
    if expected_type is not None and resource_type != expected_type:
        return [
            Issue(
                "error",
                "invalid",
                f"resourceType does not match the type of the endpoint ({expected_type})",
                "resourceType",
            )
        ]
    if resource_type not in SUPPORTED_TYPES:
        return [
            Issue(
                "error",
                "not-supported",
                f"resourceType is not one of the types this server supports ({', '.join(SUPPORTED_TYPES)})",
                "resourceType",
            )
        ]
    issues = _structure_issues(resource_type, resource)
    at_fault = {i.expression for i in issues}
    json_issues = _json_issues(model_class(resource_type), resource, resource_type)
    issues.extend(i for i in json_issues if i.expression not in at_fault)
    seen = {(i.expression, i.code) for i in issues}
    roots = [(resource_type, resource_type, resource)]
    contained = resource.get("contained")
    if isinstance(contained, list):  # contained resources are held to the same required bindings
        roots += [
            (item["resourceType"], f"{resource_type}.contained[{index}]", item)
            for index, item in enumerate(contained)
            if isinstance(item, dict) and item.get("resourceType") in SUPPORTED_TYPES
        ]
    for type_, root, node in roots:
        for binding in bindings_for(type_):
            for issue in _binding_issues(root, node, binding):
                if (issue.expression, issue.code) not in seen:
                    issues.append(issue)
    return issues
