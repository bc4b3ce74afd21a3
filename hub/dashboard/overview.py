"""The dashboard's overview (``/dashboard``): the connectors, the messages of the last 24 hours by
status, the referrals by status with their obligations due and overdue, and the claims that need a
look (blocked by the scrubber, rejected, denied)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from hub.dashboard.billing import NO_BILLING_SCOPE, billing_work, sees_billing
from hub.dashboard.pages import UserDep, notice, render, run
from hub.dashboard.referrals import NO_REFERRAL_SCOPE, referral_work, sees_referrals
from hub.store.billing_views import tenant_totals
from hub.sync import events as ev
from hub.sync.admin import AdminViews

#: the claim statuses the overview counts: what a billing manager has to act on
ATTENTION = ("blocked", "rejected", "payer_rejected", "denied")


async def overview(request: Request, user: UserDep) -> Response:
    since = user.now - timedelta(hours=24)

    def work(session: Session) -> dict[str, Any]:
        views = AdminViews(session, tenant=user.tenant)
        counts = {s: views.messages(status=s, since=since, limit=1)["total"] for s in ev.MESSAGE_STATUSES}
        return {"connectors": views.connectors(), "counts": counts}

    def referrals(plans: Any) -> dict[str, Any]:
        return {"referrals": plans.list_referrals(), "obligations": plans.certifications()}

    data = await run(user.settings, work)
    loop = (await run(user.settings, referral_work(request, user, referrals)) if sees_referrals(user)
            else {"referrals": [], "obligations": []})
    claims = (await run(user.settings, billing_work(request, user, "search-type", None,
                                                    lambda s, _: tenant_totals(s, tenant=user.tenant)))
              if sees_billing(user) else None)
    by_status = Counter(r["status"] or "unknown" for r in loop["referrals"])
    overdue = sum(1 for o in loop["obligations"] if o["overdue"])
    return render(request, "overview.html", connectors=data["connectors"], counts=data["counts"],
                  total=sum(data["counts"].values()), since=since.isoformat(timespec="seconds"),
                  referrals=sorted(by_status.items()), referral_total=len(loop["referrals"]),
                  due=len(loop["obligations"]) - overdue, overdue=overdue, notice=notice(request, user),
                  referrals_hidden=None if sees_referrals(user) else NO_REFERRAL_SCOPE,
                  claims=claims, attention=ATTENTION, billing_hidden=None if claims is not None else NO_BILLING_SCOPE)
