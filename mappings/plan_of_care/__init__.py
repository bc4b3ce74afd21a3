"""Plan of care for the referral loop: therapist input -> FHIR CarePlan Bundle -> certification PDF.

* :mod:`.model` -- the typed input (:class:`PlanOfCare`) and what is read back (:class:`PlanSummary`);
* :mod:`.fhir` -- :func:`build_plan_of_care` (a transaction Bundle); :mod:`.summary` --
  :func:`plan_summary` (the plan read back); :mod:`.ending` -- the end of a plan
  (:func:`end_care_plan`, :func:`end_goal`, :func:`end_plan_request`); :mod:`.codes` -- the code
  systems and tables they share;
* :mod:`.pdf` -- :func:`render_plan_pdf` (the page the referring physician signs) and
  :func:`plan_document_reference` (that PDF as a FHIR DocumentReference).

Pure like every mapping: no I/O, no settings, no clock, no random ids.
"""

from mappings.fhir.ids import deterministic_id
from mappings.plan_of_care.ending import end_care_plan, end_goal, end_plan_request
from mappings.plan_of_care.fhir import build_plan_of_care
from mappings.plan_of_care.model import (
    Activity,
    Amount,
    Diagnosis,
    Goal,
    Measure,
    PlanIdentifier,
    PlanOfCare,
    PlanSummary,
)
from mappings.plan_of_care.pdf import (
    Attestation,
    ClinicBlock,
    plan_code,
    plan_document_reference,
    render_plan_pdf,
    signed_document_reference,
)
from mappings.plan_of_care.summary import PlanBundleError, plan_summary

__all__ = [
    "Activity",
    "Attestation",
    "ClinicBlock",
    "Amount",
    "Diagnosis",
    "Goal",
    "Measure",
    "PlanBundleError",
    "PlanIdentifier",
    "PlanOfCare",
    "PlanSummary",
    "build_plan_of_care",
    "deterministic_id",
    "end_care_plan",
    "end_goal",
    "end_plan_request",
    "plan_code",
    "plan_document_reference",
    "plan_summary",
    "render_plan_pdf",
    "signed_document_reference",
]
