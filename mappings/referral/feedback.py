"""The BSeR-style referral feedback of a discharged referral: :func:`feedback_composition` and the
``Task.output`` that points at it (:func:`task_output_for_feedback`). Pure, as :mod:`.task_state`."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mappings.fhir.ids import deterministic_id
from mappings.referral.task_state import fhir_datetime

LOINC = "http://loinc.org"
XHTML_NS = "http://www.w3.org/1999/xhtml"
BSER_CODE_SYSTEM = "http://hl7.org/fhir/us/bser/CodeSystem/bser"
BSER_FEEDBACK_PROFILE = "http://hl7.org/fhir/us/bser/StructureDefinition/BSeR-ReferralFeedbackComposition"


#: Composition.type of the feedback document: LOINC 11488-4 "Consult note", as in the BSeR (STU2)
#: referral feedback examples (the BSeR profile itself does not fix a type)
FEEDBACK_TYPE = {"system": LOINC, "code": "11488-4", "display": "Consult note"}
#: section codes: the BSeR feedback summary (whose focus is the ServiceRequest), then the LOINC codes of
#: the C-CDA Goals section and Health Status Evaluations and Outcomes section
SUMMARY_SECTION = {
    "system": BSER_CODE_SYSTEM,
    "code": "RSRFS",
    "display": "CompositionSectionReferralServiceRequestFeedbackSummary",
}
GOALS_SECTION = {"system": LOINC, "code": "61146-7", "display": "Goals"}
OUTCOME_SECTION = {"system": LOINC, "code": "11383-7", "display": "Patient problem outcome"}


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """A Goal or Observation the feedback refers to, with the line the narrative shows for it."""

    reference: str
    text: str


def _reference(ref: str) -> dict[str, str]:
    return {"reference": ref}


def _div(*paragraphs: str, items: Sequence[str] = ()) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs if p)
    if items:
        body += "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
    return f'<div xmlns="{XHTML_NS}">{body or "<p>None.</p>"}</div>'


def _section(
    title: str, code: Mapping[str, str], text: str | None, entries: Sequence[FeedbackEntry]
) -> dict[str, Any]:
    section: dict[str, Any] = {
        "title": title,
        "code": {"coding": [dict(code)]},
        "text": {"status": "generated", "div": _div(text or "", items=[e.text for e in entries])},
    }
    if entries:
        section["entry"] = [_reference(e.reference) for e in entries]
    return section


def feedback_composition(
    *,
    service_request_ref: str,
    patient_ref: str,
    author_ref: str,
    now: datetime,
    summary: str,
    goals: Sequence[FeedbackEntry] = (),
    outcome: str | None = None,
    observations: Sequence[FeedbackEntry] = (),
    title: str = "Referral feedback",
) -> dict[str, Any]:
    """A BSeR-style referral feedback Composition (status final) for the referral
    ``service_request_ref``, written by ``author_ref`` (the treating therapist's PractitionerRole).

    Sections, each with an XHTML narrative: the episode ``summary`` (BSeR ``RSRFS``, focus the
    ServiceRequest), the ``goals`` (entries: Goals) and the ``outcome`` (entries: Observations,
    e.g. outcome measures at discharge). One feedback per referral: the id is uuid5 over the
    ServiceRequest, so a corrected feedback replaces the first.
    """
    composition_id = deterministic_id("Composition", service_request_ref, "referral-feedback")
    summary_section = _section("Summary of episode", SUMMARY_SECTION, summary, ())
    summary_section["focus"] = _reference(service_request_ref)
    return {
        "resourceType": "Composition",
        "id": composition_id,
        "meta": {"profile": [BSER_FEEDBACK_PROFILE]},
        "text": {"status": "generated", "div": _div(title, summary)},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{composition_id}"},
        "status": "final",
        "type": {"coding": [dict(FEEDBACK_TYPE)]},
        "subject": _reference(patient_ref),
        "date": fhir_datetime(now),
        "author": [_reference(author_ref)],
        "title": title,
        "section": [
            summary_section,
            _section("Goals", GOALS_SECTION, None, goals),
            _section("Outcome", OUTCOME_SECTION, outcome, observations),
        ],
    }


def task_output_for_feedback(composition_ref: str) -> dict[str, Any]:
    """The Task.output that points at the feedback (added when the Task completes).

    BSeR points ``output.valueReference`` at the feedback *document Bundle*; the hub points at the
    Composition it stores (a Bundle of type document can be assembled from it when sent).
    """
    return {
        "type": {"coding": [dict(FEEDBACK_TYPE)], "text": "Referral feedback"},
        "valueReference": _reference(composition_ref),
    }
