"""The statuses of a claim (``billing_claims.status``, ADR 0013) and the groups of them that the
billing service, its analytics and the dashboard count by, in one place below them all.

The definitions the Billing page states:

* **billed**: the charges of the claims sent to the clearinghouse (:data:`SENT_STATUSES`);
* **paid**: what the payers paid, over every claim (a reversal's negative amounts included);
* **denial rate**: the claims denied in full among those the payer decided (:data:`ADJUDICATED_STATUSES`);
  a partially paid claim is decided, not denied (its denied lines are counted as denials by CARC);
* **days to payment**: from submission to payment of the claims paid in full or in part
  (:data:`PAID_STATUSES`).
"""

from __future__ import annotations

__all__ = ["ADJUDICATED_STATUSES", "CLAIM_STATUSES", "DENIAL_STATUSES", "PAID_STATUSES", "SENT_STATUSES"]

#: every status of a claim, in the order it moves
CLAIM_STATUSES = ("draft", "blocked", "ready", "submitted", "accepted", "rejected", "acknowledged",
                  "payer_rejected", "paid", "partially_paid", "denied", "reversed")
#: a claim in one of these went out to the clearinghouse: its charge counts as billed
SENT_STATUSES = CLAIM_STATUSES[CLAIM_STATUSES.index("submitted"):]
#: the payer decided these: the denominator of the denial rate
ADJUDICATED_STATUSES = ("paid", "partially_paid", "denied")
#: the payer paid these (in full or in part): the claims of days to payment
PAID_STATUSES = ("paid", "partially_paid")
#: the payer denied these, or some of their lines: their ClaimResponse gives the denials by CARC
DENIAL_STATUSES = ("denied", "partially_paid")
