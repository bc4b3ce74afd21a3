"""The actions of the Billing page: build the claims of the finished visits, scrub one claim again, and
submit the ready claims through the tenant's ``x12_billing`` connectors: each one call of
:class:`hub.billing.service.BillingService`, as the admin API's ``POST /admin/api/billing/...`` make
it, in the audited boundary (:func:`hub.boundary.run`: the work and its AuditEvent in one transaction,
a failure audited on its own; the delivery jobs of a submission enqueued after the commit), answered
with a redirect to the page and its notice.

Only a client that may bill does them (:func:`may_bill`: the ``admin`` role, and scopes that read and
search ``Claim`` and ``ClaimResponse`` and write ``Claim``); the page shows the buttons to it alone,
and anyone else's POST is 403. The notices give counts, amounts, payer ids and claim numbers, never
a patient or a visit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date
from typing import TypeVar
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hub import boundary
from hub.billing.results import BuildResult, FileResult, ScrubResult
from hub.billing.service import BillingService
from hub.boundary import Audit, Caller
from hub.dashboard.billing import CLAIM_ID, NO_BILLING_RIGHTS, PAGE, may_bill
from hub.dashboard.pages import FormDep, User, UserDep, done
from hub.errors import HubError, NotFound
from hub.fhir.router import fhir_base
from hub.security.principal import Forbidden

T = TypeVar("T")
NO_CLEARINGHOUSE = ("No x12_billing connector with a billing profile is configured (or enabled) for this clinic: "
                    "nothing was submitted. Add one on the admin API (PUT /admin/api/connectors/NAME) first.")


def _failure(what: str) -> Callable[[BaseException], tuple[int, str]]:
    def failure(exc: BaseException) -> tuple[int, str]:
        status = getattr(exc, "status_code", 500)
        return (4 if status < 500 else 8), f"{what} HTTP {status}"

    return failure


def _caller(request: Request, user: User) -> Caller:
    return Caller(principal=user.principal, address=request.client.host if request.client else None,
                  base_url=fhir_base(request, user.settings), clock=user.clock)


def _audit(request: Request, claim_id: str | None) -> Audit:
    what = f"{request.method} {request.url.path}"
    return Audit(interaction="operation", resource_type="Claim", resource_id=claim_id, description=what,
                 failure=_failure(what))


async def _refuse_unless_may_bill(request: Request, user: User, claim_id: str | None = None) -> None:
    """403 (and its AuditEvent, outcome 4) unless the signed-in client may bill."""
    if may_bill(user):
        return

    def refuse(services: boundary.Work) -> None:
        raise Forbidden(NO_BILLING_RIGHTS)

    await run_in_threadpool(boundary.run, user.settings, user.tenant, _caller(request, user),
                            _audit(request, claim_id), refuse)


async def _bill(request: Request, user: User, claim_id: str | None, work: Callable[[BillingService], T]) -> T:
    """``work(service)`` for the signed-in client's tenant in the audited boundary."""
    await _refuse_unless_may_bill(request, user, claim_id)
    settings = user.settings

    def call(services: boundary.Work) -> T:
        # the service reads and writes the store as the hub itself, as for the admin API: may_bill is the door
        return work(BillingService(services.session, settings, user.tenant, user.clock))

    return await run_in_threadpool(boundary.run, settings, user.tenant, _caller(request, user),
                                   _audit(request, claim_id), call)


def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def build_notice(result: BuildResult) -> tuple[str, str]:
    claims = result.claims
    if not claims and not result.skipped:
        return "ok", "No finished visit with billable charges: no claim was built."
    blocked = sum(1 for c in claims if c.status == "blocked")
    ready = sum(1 for c in claims if c.status == "ready")
    text = (f"{len(claims)} claim(s) built: {result.count('created')} created, {result.count('updated')} updated, "
            f"{result.count('replacement')} replacement(s), {result.count('unchanged')} unchanged; "
            f"{ready} ready, {blocked} blocked.")
    if result.skipped:
        reasons = Counter(s.reason for s in result.skipped)
        text += f" {len(result.skipped)} visit(s) skipped: " + "; ".join(
            f"{reason} ({n})" for reason, n in reasons.most_common(3)) + ("; …" if len(reasons) > 3 else "") + "."
    return ("error" if result.skipped or blocked else "ok"), text


def scrub_notice(result: ScrubResult) -> tuple[str, str]:
    errors = sum(1 for f in result.findings if f.severity == "error")
    text = f"Claim scrubbed: {result.status}, {len(result.findings)} finding(s), {errors} error(s)."
    return ("error" if result.blocking else "ok"), text


def submit_notice(results: list[FileResult]) -> tuple[str, str]:
    if not results:
        return "ok", "No claim is ready to go out: nothing was submitted."
    sent = [r for r in results if r.status != "invalid"]
    invalid = [r for r in results if r.status == "invalid"]
    parts = [f"{len(sent)} 837P file(s) queued to the clearinghouse, "
             f"{sum(len(r.claim_ids) for r in sent)} claim(s) submitted, {_money(sum(r.charge_cents for r in sent))}"]
    parts += [f"payer {r.payer_id} via {r.connector}: {len(r.claim_ids)} claim(s), ISA13 {r.interchange_control}"
              for r in sent]
    parts += [f"payer {r.payer_id} via {r.connector}: the file failed validation, its {len(r.claim_ids)} claim(s) "
              f"stay ready ({'; '.join(r.issues[:2])})" for r in invalid]
    return ("error" if invalid else "ok"), "; ".join(parts) + "."


async def build(request: Request, user: UserDep, form: FormDep) -> Response:
    await _refuse_unless_may_bill(request, user)
    text = (form.get("through") or "").strip()
    try:
        through = date.fromisoformat(text) if text else None
    except ValueError:
        return done(PAGE, user, "error", "The date must be like 2026-03-31 (the last day of visits to bill).")
    try:
        result = await _bill(request, user, None, lambda svc: svc.build_claims(through=through))
    except (Forbidden, NotFound):
        raise
    except HubError as exc:
        return done(PAGE, user, "error", f"No claim was built: {exc}")
    return done(PAGE, user, *build_notice(result))


async def scrub(claim_id: str, request: Request, user: UserDep, form: FormDep) -> Response:
    if not CLAIM_ID.fullmatch(claim_id):
        raise NotFound("No such claim")
    page = f"{PAGE}/claims/{quote(claim_id, safe='')}"
    try:
        result = await _bill(request, user, claim_id, lambda svc: svc.scrub(claim_id))
    except (Forbidden, NotFound):  # another tenant's claim does not exist here
        raise
    except HubError as exc:
        return done(page, user, "error", f"The claim was not scrubbed: {exc}")
    return done(page, user, *scrub_notice(result))


async def submit(request: Request, user: UserDep, form: FormDep) -> Response:
    def work(svc: BillingService) -> list[FileResult] | None:
        return svc.submit() if svc.houses else None

    try:
        results = await _bill(request, user, None, work)
    except Forbidden:
        raise
    except HubError as exc:
        return done(PAGE, user, "error", f"Nothing was submitted: {exc}")
    if results is None:
        return done(PAGE, user, "error", NO_CLEARINGHOUSE)
    return done(PAGE, user, *submit_notice(results))
