"""The delivery pages of the dashboard: messages (filtered and paged, each with its delivery jobs),
dead letters by connector and the connectors, with their actions: replay a message or a connector's
dead letters, retry or discard a delivery job, test a connector."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from hub.dashboard.pages import MAX_INT, PAGE_SIZES, FormDep, UserDep, done, notice, render, run
from hub.errors import BadRequest, Conflict, HubError
from hub.sync import events as ev
from hub.sync.actions import SyncActions
from hub.sync.admin import AdminViews
from hub.sync.connectors import check_health


def _when(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be a date and time like 2026-03-02T09:30 (UTC)") from None


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value else default
    except ValueError:
        return default
    return min(max(number, low), high)


async def messages(request: Request, user: UserDep) -> Response:
    query = request.query_params
    filters = {k: (query.get(k) or "").strip()[:200]
               for k in ("status", "connector", "resource_type", "correlation_id", "since", "until")}
    limit = _int(query.get("limit"), 50, 1, 500)
    offset = _int(query.get("offset"), 0, 0, MAX_INT)
    error, page, names = None, {"total": 0, "items": []}, []
    try:
        since, until = _when("since", filters["since"]), _when("until", filters["until"])

        def work(session: Session) -> tuple[dict[str, Any], list[str]]:
            views = AdminViews(session, tenant=user.tenant)
            names = sorted(views.connector_names().values())
            return views.messages(
                status=filters["status"] or None, connector=filters["connector"] or None,
                correlation_id=filters["correlation_id"] or None, resource_type=filters["resource_type"] or None,
                since=since, until=until, limit=limit, offset=offset,
            ), names

        page, names = await run(user.settings, work)
    except HubError as exc:  # a filter the views refused: show the form again with the reason
        error = str(exc)
    kept = {k: v for k, v in filters.items() if v}
    if limit != 50:
        kept["limit"] = str(limit)

    def link(at: int) -> str:
        return "/dashboard/messages?" + urlencode({**kept, "offset": str(at)})

    previous = link(max(0, offset - limit)) if offset > 0 else None
    following = link(offset + limit) if offset + limit < page["total"] else None
    return render(request, "messages.html", status=400 if error else 200, page=page, filters=filters,
                  limit=limit, offset=offset, statuses=ev.MESSAGE_STATUSES, connectors=names,
                  page_sizes=PAGE_SIZES, previous=previous, following=following, error=error)


async def message(message_id: str, request: Request, user: UserDep) -> Response:
    view = await run(user.settings, lambda s: AdminViews(s, tenant=user.tenant).message(message_id))
    return render(request, "message.html", message=view, notice=notice(request, user),
                  retryable=(ev.DEAD, ev.RETRYING))


async def replay(message_id: str, user: UserDep, form: FormDep) -> Response:
    try:
        new_id = await run(user.settings, lambda s: SyncActions(
            s, tenant=user.tenant, settings=user.settings).replay_message(message_id).id)
    except Conflict as exc:
        return done(f"/dashboard/messages/{quote(message_id, safe='')}", user, "error", str(exc))
    return done(f"/dashboard/messages/{quote(new_id, safe='')}", user, "ok",
                 f"Replayed message {message_id} as this new message.")


async def retry(job_id: int, user: UserDep, form: FormDep) -> Response:
    if not 1 <= job_id <= MAX_INT:
        raise BadRequest("No such delivery job")

    def work(session: Session) -> tuple[str, str | None]:
        owner = AdminViews(session, tenant=user.tenant).job(job_id)["message_id"]  # 404 for another tenant
        try:
            SyncActions(session, tenant=user.tenant, settings=user.settings).retry_job(job_id)
        except Conflict as exc:
            return owner, str(exc)
        return owner, None

    message_id, refused = await run(user.settings, work)
    target = f"/dashboard/messages/{quote(message_id, safe='')}"
    if refused:
        return done(target, user, "error", refused)
    return done(target, user, "ok", f"Delivery job {job_id} will be tried again now.")


async def discard(job_id: int, user: UserDep, form: FormDep) -> Response:
    if not 1 <= job_id <= MAX_INT:
        raise BadRequest("No such delivery job")

    def work(session: Session) -> tuple[str, str | None]:
        owner = AdminViews(session, tenant=user.tenant).job(job_id)["message_id"]  # 404 for another tenant
        try:
            SyncActions(session, tenant=user.tenant, settings=user.settings).discard_job(
                job_id, reason=form.get("reason", ""), actor=user.principal.client_id)
        except (BadRequest, Conflict) as exc:
            return owner, str(exc)
        return owner, None

    message_id, refused = await run(user.settings, work)
    target = f"/dashboard/messages/{quote(message_id, safe='')}"
    if refused:
        return done(target, user, "error", refused)
    return done(target, user, "ok", f"Dead letter {job_id} is discarded: it will not be delivered.")


# ------------------------------------------------------------------ dead letters


async def dead_letters(request: Request, user: UserDep) -> Response:
    def work(session: Session) -> list[dict[str, Any]]:
        views = AdminViews(session, tenant=user.tenant)
        return [{"connector": c, "dead": views.jobs(dead="outstanding", connector=c["name"], limit=100)}
                for c in views.connectors()]

    groups = await run(user.settings, work)
    return render(request, "dead_letters.html", groups=groups, notice=notice(request, user))


async def replay_dead(connector: str, user: UserDep, form: FormDep) -> Response:
    replays = await run(user.settings, lambda s: SyncActions(
        s, tenant=user.tenant, settings=user.settings).replay_dead(connector=connector))
    text = (f"Replayed {len(replays)} message(s) with dead letters at {connector}." if replays
            else f"Nothing to replay at {connector}: its dead letters were replayed already.")
    return done("/dashboard/dead-letters", user, "ok", text)


# ------------------------------------------------------------------ connectors


async def connectors(request: Request, user: UserDep) -> Response:
    items = await run(user.settings, lambda s: AdminViews(s, tenant=user.tenant).connectors())
    return render(request, "connectors.html", connectors=items, with_test=True, notice=notice(request, user))


async def test_connector(name: str, user: UserDep, form: FormDep) -> Response:
    result = await run_in_threadpool(check_health, user.settings, user.tenant, name)
    text = f"Test of {name}: {'OK' if result['ok'] else 'FAILED'} in {result['duration_ms']} ms — {result['detail']}"
    return done("/dashboard/connectors", user, "ok" if result["ok"] else "error", text)
