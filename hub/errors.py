"""Domain errors. Each has an HTTP status and FHIR IssueType code; one handler renders them.

On ``/fhir`` an error becomes an ``OperationOutcome``; elsewhere a JSON problem document
(RFC 9457) that carries the same issues. Messages never contain patient data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mappings.fhir.validation import Issue


class HubError(Exception):
    status_code = 400
    code = "invalid"
    title = "Bad request"

    def __init__(
        self,
        diagnostics: str = "",
        *,
        expression: str | None = None,
        issues: Sequence[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics or self.title)
        self.headers = headers or {}
        if issues:
            self.issues = list(issues)
        else:
            self.issues = [Issue("error", self.code, diagnostics or self.title, expression)]

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(HubError):
    pass


class InvalidResource(HubError):
    title = "The resource is not valid FHIR R4"


class NotFound(HubError):
    status_code = 404
    code = "not-found"
    title = "Not found"


class UnsupportedType(HubError):
    status_code = 404
    code = "not-supported"
    title = "Resource type not supported"


class Gone(HubError):
    status_code = 410
    code = "deleted"
    title = "The resource was deleted"


class Conflict(HubError):
    status_code = 409
    code = "conflict"
    title = "Conflict"


class PreconditionFailed(HubError):
    status_code = 412
    code = "conflict"
    title = "Precondition failed"


class PayloadTooLarge(HubError):
    status_code = 413
    code = "too-costly"
    title = "Request body too large"


class UnsupportedMediaType(HubError):
    status_code = 415
    code = "not-supported"
    title = "Unsupported media type"


class NotAcceptable(HubError):
    status_code = 406
    code = "not-supported"
    title = "Not acceptable"


class MethodNotAllowed(HubError):
    status_code = 405
    code = "not-supported"
    title = "Method not allowed"


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue.as_fhir() for issue in issues]}


def information_outcome(text: str) -> dict[str, Any]:
    return operation_outcome([Issue("information", "informational", text)])


def describe(exc: Exception, limit: int | None = None) -> str:
    """A one-line reason (FHIRPath: message; ...) for the message store; never payload content."""
    issues = list(getattr(exc, "issues", []))[:limit]
    return "; ".join(f"{i.expression or '-'}: {i.diagnostics}" for i in issues) or str(exc)


# ------------------------------------------------------------------ the documented error shapes


class ProblemIssue(BaseModel):
    """One issue of a problem: an OperationOutcome issue (FHIR IssueType code, diagnostics, FHIRPath)."""

    model_config = ConfigDict(extra="allow")

    severity: str
    code: str
    diagnostics: str | None = None
    expression: list[str] | None = None


class Problem(BaseModel):
    """The JSON problem document (RFC 9457, ``application/problem+json``) of an error outside ``/fhir``."""

    type: str = Field(examples=["about:blank"])
    status: int
    title: str
    issues: list[ProblemIssue]


class OperationOutcomeOut(BaseModel):
    """An error on ``/fhir``: a FHIR R4 ``OperationOutcome`` (``application/fhir+json``)."""

    model_config = ConfigDict(extra="allow")

    resourceType: str = Field(examples=["OperationOutcome"])  # noqa: N815 - the FHIR element name
    issue: list[ProblemIssue]


class OAuthErrorOut(BaseModel):
    """An error of the token endpoint (RFC 6749 section 5.2)."""

    error: str = Field(examples=["invalid_client"])
    error_description: str | None = None


_ERRORS = {400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
           409: "Conflict"}


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its nested models inlined (the OpenAPI document has no ``$defs``)."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


def documented(model: type[BaseModel], media_type: str, statuses: Sequence[int]) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for the error statuses ``statuses``, each a ``model`` in ``media_type``."""
    schema = _inline(model)
    return {status: {"description": _ERRORS.get(status, "Error"), "content": {media_type: {"schema": schema}}}
            for status in statuses}


#: the errors of the JSON APIs outside /fhir (admin, referrals, client management)
PROBLEMS = documented(Problem, "application/problem+json", (400, 401, 403, 404, 409))
#: the errors of /fhir
OUTCOMES = documented(OperationOutcomeOut, "application/fhir+json", (400, 401, 403, 404, 409))
