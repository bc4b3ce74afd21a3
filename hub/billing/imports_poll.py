"""Polling the clearinghouses: every response file of an ``x12_billing`` connector is recorded in the
inbox and committed, THEN acknowledged (deleted or archived at the clearinghouse).

A crash between the commit and the acknowledgement leaves the file at the clearinghouse: the next
poll downloads it again, finds it in the inbox (same connector, same ``name:sha256[:16]``), applies
nothing and acknowledges it. A file whose sets cannot be applied is still recorded (and so
acknowledged): its raw content stays in the message store, with the reason.

The files of one poll are applied in the order the clearinghouse meant them (:func:`response_rank`):
TA1 and 999 (the file accepted) before the 277CA (each claim acknowledged) before the 835 (paid), so
a 999 is never read after the 277CA has already moved its claims past ``submitted``/``accepted``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from connectors import registry
from connectors.base import ConnectorError
from hub.billing import imports_queries as q
from hub.billing.imports import external_id_for, import_x12
from hub.billing.imports_result import ImportResult
from hub.settings import Settings
from hub.store import sync_repository as repo
from hub.sync.config import SyncConfig
from hub.unit_of_work import unit_of_work
from mappings.x12.reader import X12SyntaxError, separators_of

__all__ = ["BillingPoll", "billing_connectors", "poll_billing", "poll_billing_all", "poll_billing_named",
           "response_rank"]

log = logging.getLogger("hub.billing.poll")
KIND = "x12_billing"


@dataclass(slots=True)
class BillingPoll:
    """One poll of one clearinghouse connector."""

    connector: str
    ok: bool = True
    error: str | None = None
    files: list[ImportResult] = field(default_factory=list)
    acknowledged: int = 0
    not_acknowledged: int = 0

    @property
    def duplicates(self) -> int:
        return sum(1 for f in self.files if f.duplicate)

    def view(self) -> dict[str, Any]:
        return {"connector": self.connector, "ok": self.ok, "error": self.error, "fetched": len(self.files),
                "duplicates": self.duplicates, "acknowledged": self.acknowledged,
                "not_acknowledged": self.not_acknowledged, "files": [f.view() for f in self.files]}


#: GS01 -> the place of its file in a poll: acknowledgements, claim acknowledgements, remittances, the rest
_RANKS = {"FA": 0, "HN": 1, "HP": 2}


def response_rank(content: bytes) -> int:
    """0 for a TA1 or 999, 1 for a 277CA, 2 for an 835, 3 for anything else (a 271, unreadable files):
    read from the interchange's first TA1 or GS segment, with the separators its ISA declares."""
    text = content.removeprefix(b"\xef\xbb\xbf").decode("latin-1").lstrip()
    try:
        separators = separators_of(text)
    except X12SyntaxError:
        return 3
    for segment in text.split(separators.segment, 4)[1:4]:
        fields = segment.strip().split(separators.element)
        if fields[0] == "TA1":
            return 0
        if fields[0] == "GS" and len(fields) > 1:
            return _RANKS.get(fields[1].strip(), 3)
    return 3


def billing_connectors(settings: Settings) -> list[int]:
    """The ids of the enabled ``x12_billing`` connectors of every tenant."""
    with unit_of_work(settings, readonly=True) as session:
        return [c.id for c in q.enabled_billing_connectors(session)]


def poll_billing(settings: Settings, connector_id: int) -> BillingPoll | None:
    """Poll one clearinghouse connector once; None when it is gone, disabled or not ``x12_billing``."""
    with unit_of_work(settings, readonly=True) as session:
        instance = repo.connector_by_id(session, connector_id=connector_id)
        if instance is None or not instance.enabled or instance.kind != KIND:
            return None
        tenant, name = instance.tenant_id, instance.name
        config = SyncConfig(session, tenant=tenant, settings=settings).connector_config(instance)
    report = BillingPoll(name)
    connector: Any = registry.create(KIND, config)
    try:
        try:
            remote_files = connector.poll_responses()
        except ConnectorError as exc:
            log.warning("hub.billing.poll.failed", extra={"connector_id": connector_id, "error": str(exc)})
            report.ok, report.error = False, str(exc)
            return report
        for remote in sorted(remote_files, key=lambda r: response_rank(r.content)):  # stable: names within a rank
            try:
                with unit_of_work(settings) as session:  # committed before the clearinghouse forgets it
                    result = import_x12(session, settings, tenant=tenant, raw=remote.content, source=name,
                                        name=remote.name, connector_id=connector_id)
            except IntegrityError:  # a concurrent poll recorded the same file first: it is stored
                with unit_of_work(settings, readonly=True) as session:
                    earlier = repo.message_by_external_id(session, tenant=tenant, source=name,
                                                          external_id=external_id_for(remote.name, remote.content,
                                                                                      manual=False))
                if earlier is None:
                    raise
                result = ImportResult(earlier.id, remote.name, duplicate=True)
            report.files.append(result)
            try:
                connector.acknowledge(remote)
                report.acknowledged += 1
            except ConnectorError as exc:  # stored: the next poll downloads it again, as a duplicate
                report.not_acknowledged += 1
                log.warning("hub.billing.poll.ack_failed", extra={"connector_id": connector_id, "error": str(exc)})
    finally:
        connector.close()
    if report.files:
        log.info("hub.billing.poll.done", extra={"connector_id": connector_id, "documents": len(report.files)})
    return report


def poll_billing_named(settings: Settings, tenant: str, name: str) -> BillingPoll:
    """Poll the clearinghouse connector ``name`` of ``tenant`` now (admin API, CLI)."""
    with unit_of_work(settings, readonly=True) as session:
        instance = SyncConfig(session, tenant=tenant, settings=settings).get_connector(name)
        connector_id, kind = instance.id, instance.kind
    if kind != KIND:
        return BillingPoll(name, ok=False, error=f"connector {name!r} is not a clearinghouse ({KIND})")
    report = poll_billing(settings, connector_id)
    return report if report is not None else BillingPoll(name, ok=False, error="the connector is disabled")


def poll_billing_all(settings: Settings) -> int:
    """Poll every enabled clearinghouse connector once (the beat task); how many files were new."""
    new = 0
    for connector_id in billing_connectors(settings):
        try:
            report = poll_billing(settings, connector_id)
        except Exception as exc:  # one clearinghouse failing must not stop the others
            log.warning("hub.billing.poll.failed", extra={"connector_id": connector_id, "error": type(exc).__name__})
            continue
        if report is not None:
            new += sum(1 for f in report.files if not f.duplicate)
    return new
