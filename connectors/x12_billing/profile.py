"""The billing profile of a clearinghouse connector: who bills, who submits, which payers, at what price.

The optional ``billing`` section of :class:`~connectors.x12_billing.config.X12BillingConfig`::

    billing:
      organization: Organization/clinic        # the billing provider in the FHIR store (NPI, EIN, address)
      submitter: {name, etin, contact_name, contact_phone, receiver_name, receiver_id, usage}
      payers:                                  # clearinghouse payer id -> how it is billed
        "00430": {name: Medicare Part B, filing_indicator: MB}
        ACME1: {name: Acme Health, filing_indicator: CI, rules: {units_rule: per-code, kx_thresholds: []}}
      fee_schedule: {"97110": "45.00", "97162": "180.00"}
      default: true                            # also takes the payers no connector lists
      rules: {...}                             # the rules of payers listed without their own

Rules default to Medicare's (:class:`~mappings.billing.model.PayerRules`: the CMS 8-minute rule, the
KX thresholds per year with PT and SLP counted together, the NCCI therapy pairs).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from mappings.billing.model import FilingIndicator, PayerRules, Submitter

__all__ = ["BillingProfile", "PayerProfile"]

_CODE = r"^[A-Z0-9]{5}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PayerProfile(_Section):
    """One payer as the clearinghouse knows it (its payer id is the key of ``payers``)."""

    name: Annotated[str, Field(min_length=1, max_length=60)]
    filing_indicator: FilingIndicator = "MB"
    #: this payer's scrubber rules; None: the profile's ``rules``
    rules: PayerRules | None = None


class BillingProfile(_Section):
    #: the billing provider, ``Organization/<id>`` in the FHIR store, with NPI, EIN and address
    organization: Annotated[str, Field(pattern=r"^Organization/[A-Za-z0-9\-.]{1,64}$")]
    submitter: Submitter
    #: clearinghouse payer id (NM109 of 2010BB, the Coverage payor's identifier) -> the payer
    payers: dict[Annotated[str, Field(min_length=1, max_length=80)], PayerProfile] = Field(default_factory=dict)
    #: CPT/HCPCS code -> the clinic's charge per unit (used when a ChargeItem has no priceOverride)
    fee_schedule: dict[Annotated[str, Field(pattern=_CODE)], Annotated[Decimal, Field(ge=0, decimal_places=2)]] = (
        Field(default_factory=dict))
    #: this connector also bills the payers that no billing profile lists
    default: bool = False
    #: the rules of payers without their own (and of unlisted payers): Medicare's by default
    rules: PayerRules = PayerRules()

    def takes(self, payer_id: str) -> bool:
        """Whether claims to ``payer_id`` are listed here (a default profile takes the others too)."""
        return payer_id in self.payers

    def rules_for(self, payer_id: str) -> PayerRules:
        payer = self.payers.get(payer_id)
        return payer.rules if payer is not None and payer.rules is not None else self.rules
