"""The sync engine: message store, routes, transactional outbox, delivery, retries, replay.

Data flow (see docs/adr/0002-sync-engine.md):
a FHIR write that matches routes stores a message and writes ``delivery_jobs`` in the same
transaction; job ids are enqueued only after commit; a Celery worker claims a job (lease), sends it
through its connector with an idempotency key, and records the outcome; failures retry with
exponential backoff and jitter, then dead-letter. The beat sweeper re-enqueues due jobs whose task
was lost, so the database, not the broker, is the truth.
"""
