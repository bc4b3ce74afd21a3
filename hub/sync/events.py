"""Names of message statuses, job statuses and events (the vocabulary of the admin views)."""

from __future__ import annotations

# message events
RECEIVED = "received"
TRANSLATED = "translated"
REJECTED = "rejected"
ROUTED = "routed"
QUEUED = "queued"
SENT = "sent"
ACKNOWLEDGED = "acknowledged"
FAILED = "failed"
DEAD_LETTERED = "dead-lettered"
REPLAYED = "replayed"
RETRIED = "retried"
DISCARDED = "discarded"  # an operator gave a dead letter up: it will never be delivered
DEFERRED = "deferred"

# job statuses
PENDING = "pending"
RUNNING = "running"
RETRYING = "retrying"
SUCCEEDED = "succeeded"
DEAD = "dead"
OPEN_JOB_STATUSES = (PENDING, RUNNING, RETRYING)
JOB_STATUSES = (PENDING, RUNNING, RETRYING, SUCCEEDED, DEAD)

# message statuses
MESSAGE_STATUSES = ("received", "rejected", "unrouted", "queued", "retrying", "delivered", "dead")
