"""What the referral endpoints answer: the views of :mod:`hub.referrals` (a referral Task, an
obligation Task, a plan of care), named. FHIR values are passed on as the store holds them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DeliveryOut(BaseModel):
    channel: str = Field(description="fax, Direct, FHIR, HL7 or webhook: the connector kind it went by")
    status: str = Field(description="the delivery job's status: pending, running, retrying, awaiting "
                        "(sent, the partner's confirmation to follow), succeeded or dead")
    at: str | None = Field(description="when that status was reached")


class DocumentOut(BaseModel):
    document: str = Field(description="plan-of-care or progress-report")
    task: str = Field(description="Task/id: the obligation Task that sends it")
    care_plan: str
    status: str | None = Field(description="the obligation Task's status")
    deliveries: list[DeliveryOut]


class ReferralOut(BaseModel):
    task: str = Field(description="Task/id: the Task that tracks the referral")
    service_request: str | None
    patient: str | None
    requester: str | None
    owner: str | None
    status: str | None
    business_status: str | None
    status_reason: str | None
    last_modified: str | None
    version: str | None = Field(description="The Task's meta.versionId")
    documents: list[DocumentOut] = Field(default_factory=list,
                                         description="What was sent to the referrer about it, and how")


class DischargeOut(ReferralOut):
    feedback: str = Field(description="Composition/id: the feedback sent to the referrer")


class ObligationOut(BaseModel):
    task: str
    kind: str | None = Field(description="certification, recertification or progress-report")
    care_plan: str | None
    owner: str | None
    status: str | None
    due: str | None
    overdue: bool
    business_status: str | None
    status_reason: str | None
    description: str | None
    document: str | None = Field(default=None, description="plan-of-care or progress-report")
    deliveries: list[DeliveryOut] = Field(default_factory=list,
                                          description="The channels it went by and their statuses")


class PlanOut(BaseModel):
    care_plan: str
    revision: int
    document: str = Field(description="DocumentReference/id: the plan sent for certification")
    return_code: str
    obligations: list[ObligationOut]
