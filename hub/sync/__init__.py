"""The sync engine: message store, routes, transactional outbox, delivery, retries, replay.

Data flow (see docs/adr/0002-sync-engine.md; the modules: docs/adr/0007-sync-engine-modules.md):
a FHIR write that matches routes stores a message and writes ``delivery_jobs`` in the same
transaction; job ids are enqueued only after commit; a Celery worker claims a job (lease), sends it
through its connector with an idempotency key, and records the outcome; failures retry with
exponential backoff and jitter, then dead-letter. The beat sweeper re-enqueues due jobs whose task
was lost, so the database, not the broker, is the truth.

One module per step, each class built from (session, tenant, settings, clock):
``config`` (:class:`~hub.sync.config.SyncConfig`: connectors and routes), ``inbox``
(:class:`~hub.sync.inbox.Inbox`: every message and event, for every intake), ``outbox``
(:class:`~hub.sync.outbox.Outbox`: a FHIR change or a raw send into delivery jobs), ``engine``
(:class:`~hub.sync.engine.DeliveryEngine`: claim, finish, backoff, order, sweep), ``delivery`` (one
attempt around the partner call), ``actions`` (:class:`~hub.sync.actions.SyncActions`: retry,
replay, purge), ``admin`` (the read views), ``confirmations`` (the deadline of the deliveries
``awaiting`` their partner's confirmation, ADR 0012), ``enqueue`` (publishing after commit), and the
intakes ``polling`` and ``inbound_webhook``.
"""
