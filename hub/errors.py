"""Domain errors. Each has an HTTP status and FHIR IssueType code; one handler renders them.

On ``/fhir`` an error becomes an ``OperationOutcome``; elsewhere a JSON problem document
(RFC 9457) that carries the same issues. Messages never contain patient data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
