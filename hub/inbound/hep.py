"""HEP vendor webhooks: ``POST /inbound/{tenant}/hep/{connector}`` (adherence, outcomes, program events).

The tenant's ``hep`` connector of that name holds the webhook secret
(:class:`connectors.hep.HepConfig`). The signature (``X-HEP-Signature``, :func:`connectors.hep.verify_webhook`)
is checked first: a missing, malformed, wrong or stale signature, or a name that is no enabled hep
connector (the same work with a stand-in secret), is ``401`` and stores nothing -- as the fax
webhook: an unsigned body is nobody's message, and keeping it would let anyone fill the store.

Then, in one unit of work, the raw event is stored (:meth:`hub.sync.inbox.Inbox.record_inbound`,
deduped by the vendor's event id: a repeat is answered ``200`` ``duplicate`` and applies nothing),
tied to ``Patient/<patient.external_id>`` (``messages.resource_type``/``resource_id``: the
patient's HEP history is these messages, see :func:`patient_events`), and parsed
(:func:`mappings.hep.events.parse_event`):

* a signed body that is no HEP event -> kept as ``rejected``, ``400``;
* no Patient with that id in the tenant -> kept as ``rejected`` (visible in the message list), ``422``;
* else its Observations (:func:`mappings.hep.observations.event_observations`, deterministic ids)
  are written with PUT, so a replayed or re-sent session updates the same resources. An outcome
  event recomputes, from *all* the patient's stored outcome events in ``occurred_at`` order
  (:func:`mappings.hep.observations.replay_observations`), every outcome Observation (its
  better/worse interpretation against the score before it) and the Goals of the event's CarePlan
  (:func:`mappings.hep.outcomes.update_goal`): a late or out-of-order event lands where it belongs.
  A Goal is written only when it changes; its version history is the status history.

Answered ``200`` after the commit. Writes go through the FHIR store under the connector's inbound
policy (:class:`hub.security.inbound.InboundPolicy`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from connectors.hep import HepConfig, SignatureError, verify_webhook
from connectors.hep.signature import TOLERANCE_SECONDS
from hub.errors import HubError
from hub.fhir.service import FhirService
from hub.security.inbound import InboundPolicy
from hub.services import fhir_service
from hub.settings import Settings
from hub.store import repository as resource_repo
from hub.store import sync_repository as repo
from hub.sync import events as ev
from hub.sync.config import SyncConfig
from hub.sync.inbound_webhook import SignatureRefused
from hub.sync.inbox import Inbox
from hub.sync.outbox import ORIGIN_KEY
from hub.unit_of_work import unit_of_work
from mappings.fhir.jsonio import dumps
from mappings.hep.events import HepEvent, HepEventError, OutcomeRecorded, parse_event
from mappings.hep.observations import event_observations, replay_observations
from mappings.hep.outcomes import update_goal

__all__ = ["CHANNEL", "EVENT_PREFIX", "apply_event", "care_plan_goals", "patient_events", "receive_hep_webhook",
           "stored_content"]

CHANNEL = "hep"
KIND = "hep"
#: the ``messages.event`` of a stored HEP webhook starts with it (``hep.session.completed``...)
EVENT_PREFIX = "hep."


def _stand_in_secret(settings: Settings, tenant: str, connector: str) -> str:
    seed = f"{settings.secret_key.get_secret_value()}\n{tenant}\n{connector}".encode()
    return hashlib.sha256(b"inbound-hep-stand-in\n" + seed).hexdigest()


def _json(resource: dict[str, Any]) -> dict[str, Any]:
    """Decimal values as JSON numbers (the mappings keep Decimal)."""
    result: dict[str, Any] = json.loads(dumps(resource))
    return result


def patient_events(session: Any, settings: Settings, *, tenant: str, patient_id: str) -> list[HepEvent]:
    """The HEP events stored for ``Patient/<patient_id>`` (accepted ones only), parsed again from the
    message store; duplicates are not stored, so each event id appears once."""
    inbox = Inbox(session, tenant=tenant, settings=settings)
    found: list[HepEvent] = []
    for message in repo.inbound_messages_about(session, tenant=tenant, resource_type="Patient",
                                               resource_id=patient_id, event_prefix=EVENT_PREFIX):
        raw = inbox.payload(message)
        if raw is None:  # erased by retention
            continue
        try:
            found.append(parse_event(raw))
        except HepEventError:
            continue
    return found


def _patient_known(fhir: FhirService, patient_id: str) -> bool:
    try:
        fhir.read("Patient", patient_id)
    except HubError:  # NotFound, Gone, an id that is no FHIR id: no such patient here
        return False
    return True


def receive_hep_webhook(settings: Settings, *, tenant: str, connector: str, body: bytes,
                        headers: dict[str, str], now: float | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) for one vendor webhook; raises :class:`SignatureRefused` (401) before
    storing anything. ``headers`` have lower-case names; ``now``: unix time (default: the clock)."""
    with unit_of_work(settings) as session:
        instance = repo.connector_by_name(session, tenant=tenant, name=connector)
        known = instance is not None and instance.kind == KIND and instance.enabled
        config: dict[str, Any] = {}
        if known and instance is not None:
            config = SyncConfig(session, tenant=tenant, settings=settings).connector_config(instance)
        connector_id = instance.id if known and instance is not None else None
    hep_config: HepConfig | None = None
    if known:
        try:
            hep_config = HepConfig.model_validate(config)
        except ValidationError:
            hep_config = None
    secret = (hep_config.webhook_secret.get_secret_value() if hep_config is not None
              else _stand_in_secret(settings, tenant, connector))
    moment = time.time() if now is None else now
    try:
        tolerance = hep_config.webhook_tolerance_seconds if hep_config is not None else TOLERANCE_SECONDS
        event_id = verify_webhook(secret, headers, body, now=moment, tolerance_seconds=tolerance)
    except SignatureError as exc:
        raise SignatureRefused(f"HEP webhook refused ({exc.reason})") from None
    if hep_config is None or connector_id is None:
        raise SignatureRefused("HEP webhook refused (bad_signature)")
    try:
        event: HepEvent | None = parse_event(body)
        error = None
    except HepEventError as exc:
        event, error = None, str(exc)
    with unit_of_work(settings) as session:
        session.info[ORIGIN_KEY] = connector_id  # nothing it causes is routed back to the vendor
        inbox = Inbox(session, tenant=tenant, settings=settings)
        earlier = repo.message_by_external_id(session, tenant=tenant, source=connector, external_id=event_id)
        if earlier is not None:
            return 200, {"message": earlier.id, "status": earlier.status, "duplicate": True}
        kind = f"{EVENT_PREFIX}{event.type}" if event is not None else f"{EVENT_PREFIX}invalid"
        message = inbox.record_inbound(source=connector, external_id=event_id, raw=body, event=kind)
        if event is None:
            inbox.mark_rejected(message, f"not a HEP event: {error}")
            return 400, {"message": message.id, "status": message.status, "duplicate": False,
                         "error": message.error}
        policy = InboundPolicy.for_config(tenant=tenant, source=connector, channel=CHANNEL, config=config)
        fhir = fhir_service(session, settings, tenant, settings.fhir_base or "/fhir", policy=policy)
        patient_id = event.patient.external_id
        if not _patient_known(fhir, patient_id):
            inbox.mark_rejected(message, "patient.external_id: no Patient with this id in the tenant")
            return 422, {"message": message.id, "status": message.status, "duplicate": False,
                         "error": message.error}
        message.resource_type, message.resource_id = "Patient", patient_id
        session.flush()
        written = apply_event(session, settings, fhir, event, tenant=tenant, patient_id=patient_id,
                              now_unix=moment)
        message.status = "unrouted"  # stored and applied; nothing to route
        inbox.event(message, ev.TRANSLATED, detail=f"{event.type}: {written} resources written")
        session.flush()
        return 200, {"message": message.id, "status": message.status, "duplicate": False, "written": written}


def apply_event(session: Any, settings: Settings, fhir: FhirService, event: HepEvent, *, tenant: str,
                patient_id: str, now_unix: float) -> int:
    """Write what ``event`` changes (see the module docstring); how many resources were written."""
    if not isinstance(event, OutcomeRecorded):
        return _put_all(fhir, event_observations(event))
    # one outcome of a patient at a time: a concurrent one waits here until this one committed, then
    # reads it among the stored events (PostgreSQL; SQLite serialises its writers anyway)
    resource_repo.get_resource(session, tenant=tenant, resource_type="Patient", resource_id=patient_id,
                               for_update=True)
    outcomes = [e for e in patient_events(session, settings, tenant=tenant, patient_id=patient_id)
                if isinstance(e, OutcomeRecorded)]
    if not any(e.event_id == event.event_id for e in outcomes):
        outcomes.append(event)
    observations = list(replay_observations(outcomes).values())
    written = _put_all(fhir, observations)
    if event.program is None:
        return written
    now = datetime.fromtimestamp(now_unix, UTC)
    for goal in care_plan_goals(fhir, event.program.external_id):
        updated = update_goal(goal, observations, now=now)
        if _json(updated) != _clean(goal):
            fhir.update("Goal", str(goal["id"]), _json(updated))
            written += 1
    return written


def stored_content(stored: Any) -> dict[str, Any]:
    """The JSON of a stored resource version (:class:`hub.fhir.stored.Stored`)."""
    found: dict[str, Any] = json.loads(stored.content or "{}")
    return found


def _clean(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def _put_all(fhir: FhirService, resources: Iterable[dict[str, Any]]) -> int:
    count = 0
    for resource in resources:
        body = _json(resource)
        fhir.update(body["resourceType"], body["id"], body)
        count += 1
    return count


def care_plan_goals(fhir: FhirService, care_plan_id: str) -> list[dict[str, Any]]:
    """The Goals the CarePlan names (those the store has), as stored (without ``meta``)."""
    try:
        plan = stored_content(fhir.read("CarePlan", care_plan_id))
    except HubError:  # no such plan (or not readable): no goals to update
        return []
    goals: list[dict[str, Any]] = []
    for ref in plan.get("goal") or []:
        reference = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(reference, str) or not reference.startswith("Goal/"):
            continue
        try:
            goals.append(_clean(stored_content(fhir.read("Goal", reference.split("/", 1)[1]))))
        except HubError:
            continue
    return goals
