"""What the billing admin API (``/admin/api/billing``) takes and answers. No patient names: a claim
is its ids, codes, amounts and dates of service."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class BuildIn(BaseModel):
    through: date | None = Field(default=None, description="Bill the visits that started on or before this date")


class SubmitIn(BaseModel):
    connector: str | None = Field(default=None, max_length=100,
                                  description="Only the claims of this x12_billing connector (default: all)")


class FindingOut(BaseModel):
    rule: str
    severity: str
    line: int | None
    message: str
    fix: str


class ClaimOut(BaseModel):
    claim_id: str
    patient_control_number: str
    encounter_id: str | None
    status: str
    status_detail: str | None
    payer_id: str
    discipline: str | None
    frequency_code: str
    charge: str | None = Field(description="Total charge, dollars with two decimals")
    paid: str | None
    service_from: date | None
    service_to: date | None
    findings: int = Field(description="How many findings the scrubber made")
    errors: int = Field(description="How many of them keep the claim from going out")
    file_message_id: str | None
    interchange_control: int | None
    transaction_control: int | None
    payer_claim_number: str | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None


class ClaimDetail(ClaimOut):
    finding_list: list[FindingOut]


class BuiltOut(BaseModel):
    claim_id: str
    patient_control_number: str
    encounter_id: str
    status: str
    action: str = Field(description="created | updated | unchanged | replacement")
    errors: int
    warnings: int


class SkippedOut(BaseModel):
    encounter_id: str
    reason: str


class BuildOut(BaseModel):
    claims: list[BuiltOut]
    skipped: list[SkippedOut]


class ScrubOut(BaseModel):
    claim_id: str
    status: str
    blocking: bool
    findings: list[FindingOut]


class FileOut(BaseModel):
    status: str = Field(description="queued (a delivery job), written (export) or invalid (nothing went out)")
    connector: str
    payer_id: str
    message_id: str | None
    claim_ids: list[str]
    patient_control_numbers: list[str]
    charge: str
    interchange_control: int | None
    group_control: int | None
    transaction_control: int | None
    job_ids: list[int]
    path: str | None
    issues: list[str]
