"""The document intake on the dashboard: the received documents that matched nothing (triage), and
matching one by hand to its certification Task (:func:`hub.documents.intake.match_document`, as
``POST /admin/api/documents/{id}/match`` does), audited. The page shows ids, channel, dates, size and
the reason only: never the document, its sender or its patient."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from hub.dashboard.pages import FormDep, T, User, UserDep, done, notice, render, run
from hub.documents.intake import match_document, triage_documents
from hub.errors import BadRequest, HubError
from hub.fhir.router import fhir_base
from hub.security.audit import audit_event
from hub.security.policy import AccessPolicy
from hub.services import fhir_service

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
PAGE = "/dashboard/documents"


def _audited(request: Request, user: User, interaction: str, resource_id: str | None,
             work: Callable[[Any], T] | None, *, outcome: int = 0) -> Callable[[Session], T | None]:
    """``work(fhir)`` under the signed-in client's policy and its AuditEvent, in one transaction;
    ``work`` None: the AuditEvent alone (of a failed action, with its ``outcome``)."""
    base = fhir_base(request, user.settings)
    address = request.client.host if request.client else None

    def job(session: Session) -> T | None:
        fhir = fhir_service(session, user.settings, user.tenant, base, user.clock,
                            policy=AccessPolicy(user.principal, session=session, tenant=user.tenant))
        result = work(fhir) if work is not None else None
        fhir.record_audit(audit_event(principal=user.principal, interaction=interaction, now=fhir.clock(),
                                      outcome=outcome, address=address, resource_type="DocumentReference",
                                      resource_id=resource_id, description=f"{request.method} {request.url.path}"))
        return result

    return job


async def documents(request: Request, user: UserDep) -> Response:
    items = await run(user.settings, _audited(request, user, "search-type", None, triage_documents))
    return render(request, "documents.html", documents=items, notice=notice(request, user))


async def match(document_id: str, user: UserDep, form: FormDep, request: Request) -> Response:
    task = (form.get("task") or "").strip()
    if not _ID.fullmatch(document_id):
        raise BadRequest("No such document")
    if not _ID.fullmatch(task):
        return done(PAGE, user, "error", "Enter the id of the certification Task this document answers.")
    try:
        await run(user.settings, _audited(request, user, "operation", document_id,
                                          lambda fhir: match_document(fhir, document_id, task_id=task)))
    except HubError as exc:
        await run(user.settings, _audited(request, user, "operation", document_id, None, outcome=4))
        return done(PAGE, user, "error", str(exc))
    return done(PAGE, user, "ok", f"Document {quote(document_id, safe='')} completed certification Task {task}.")
