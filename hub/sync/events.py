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
#: something a person should look at, nothing was changed (a partner that reports a failure of a
#: delivery it had confirmed)
WARNING = "warning"

# job statuses
PENDING = "pending"
RUNNING = "running"
RETRYING = "retrying"
#: the partner accepted the send, its confirmation (a fax status, a Direct MDN) is to follow by the
#: job's ``confirm_by`` (ADR 0012); not open: it neither waits to be sent nor holds its order
AWAITING = "awaiting"
SUCCEEDED = "succeeded"
DEAD = "dead"
OPEN_JOB_STATUSES = (PENDING, RUNNING, RETRYING)
#: not finished: sent again, or about to be (open), or its outcome still to come (awaiting)
IN_FLIGHT_JOB_STATUSES = (*OPEN_JOB_STATUSES, AWAITING)
JOB_STATUSES = (PENDING, RUNNING, RETRYING, AWAITING, SUCCEEDED, DEAD)

# message statuses
MESSAGE_STATUSES = ("received", "rejected", "unrouted", "queued", "retrying", "awaiting", "delivered", "dead")
