"""The dashboard (``/dashboard``): server-rendered pages for administrators over the same services as
the admin API (:class:`hub.sync.admin.AdminViews`, :class:`hub.sync.actions.SyncActions`, the referral
services), each read or action in one transaction, scoped to the signed-in client's tenant.

Sign-in takes the client id and secret of an ``admin`` client of the hub and checks them exactly as
``POST /auth/token`` does (:meth:`hub.security.clients.ClientService.token`); the session is the
``hub_session`` cookie (:mod:`hub.dashboard.session`), recorded in the store at sign-in and deleted at
sign-out, so that a copied cookie dies with its session on every replica. Every request checks that
record and the client's revocation as the API checks bearer tokens (:mod:`hub.security.revocation`),
so revoking the client ends its sessions. Every
POST carries the session's CSRF token; actions answer 303 with a sealed notice. Pages show ids,
statuses, counts, times and error texts, never names or payloads. No script runs: the pages need
nothing but the static stylesheet, and their Content-Security-Policy allows nothing else.

The pages live beside this route table: :mod:`hub.dashboard.pages` (what every page shares: the HTML
route, the signed-in user, the CSRF check), :mod:`hub.dashboard.signin`, :mod:`hub.dashboard.overview`,
:mod:`hub.dashboard.messages` (messages, delivery jobs, dead letters, connectors) and
:mod:`hub.dashboard.referrals`, :mod:`hub.dashboard.documents` (the document intake's triage),
:mod:`hub.dashboard.billing` (claims by status, their amounts, the scrubber's findings and the analytics)
and :mod:`hub.dashboard.billing_actions` (build, scrub again, submit).
"""

from __future__ import annotations

from fastapi import APIRouter

from hub.dashboard import billing, billing_actions, documents, messages, overview, referrals, signin
from hub.dashboard.pages import DashboardRoute

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)

GET, POST = ["GET"], ["POST"]
router.add_api_route("/static/dashboard.css", signin.stylesheet, methods=GET)
router.add_api_route("/signin", signin.signin_form, methods=GET)
router.add_api_route("/signin", signin.signin, methods=POST)
router.add_api_route("/signout", signin.signout, methods=POST)
router.add_api_route("", overview.overview, methods=GET)
router.add_api_route("/messages", messages.messages, methods=GET)
router.add_api_route("/messages/{message_id}", messages.message, methods=GET)
router.add_api_route("/messages/{message_id}/replay", messages.replay, methods=POST)
router.add_api_route("/jobs/{job_id}/retry", messages.retry, methods=POST)
router.add_api_route("/jobs/{job_id}/discard", messages.discard, methods=POST)
router.add_api_route("/dead-letters", messages.dead_letters, methods=GET)
router.add_api_route("/dead-letters/{connector}/replay", messages.replay_dead, methods=POST)
router.add_api_route("/connectors", messages.connectors, methods=GET)
router.add_api_route("/connectors/{name}/test", messages.test_connector, methods=POST)
router.add_api_route("/referrals", referrals.referrals, methods=GET)
router.add_api_route("/documents", documents.documents, methods=GET)
router.add_api_route("/documents/{document_id}/match", documents.match, methods=POST)
router.add_api_route("/billing", billing.billing, methods=GET)
router.add_api_route("/billing/claims/{claim_id}", billing.claim, methods=GET)
router.add_api_route("/billing/build", billing_actions.build, methods=POST)
router.add_api_route("/billing/submit", billing_actions.submit, methods=POST)
router.add_api_route("/billing/claims/{claim_id}/scrub", billing_actions.scrub, methods=POST)
