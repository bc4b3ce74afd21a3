"""Two certifications signed only on paper in ``hub demo``: one back by fax, one back by Direct.

After the physical therapy episode, Dr. Okafor refers the same patient for occupational therapy and
for speech therapy. The clinic accepts both and writes their plans of care; each certification Task
goes to the referrer by fax and by Direct (the demo's certification routes), and nobody signs it
through the API. The referrer's office signs the occupational therapy plan on paper and faxes back
a scanned, image-only page (the fax vendor sandbox's receive webhook); the speech therapy plan
comes back signed as a reply to its Direct message (the sandbox HISP to ``hub direct``). The hub's
document intake, run after each channel's commit, matches each page to its plan and completes the
certification Task; the demo waits for that (bounded, saying what it waits for) and shows, per
channel, the document, the intake outcome and the Task.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from hub.demo_channels import CLINIC_FAX, FAX_PATH, ChannelError, Channels
from hub.documents.intake import intake_state

__all__ = ["INTAKE_SECONDS", "PaperCertification", "paper_loops"]

#: how long the demo waits for the intake to complete both certifications
INTAKE_SECONDS = 90.0
#: how often the wait says what it is still waiting for
PROGRESS_SECONDS = 3.0


@dataclass
class PaperCertification:
    """One referral whose certification is signed on paper and returned on ``channel``."""

    discipline: str
    what: str
    channel: str  # "fax" or "Direct"
    reason: dict[str, str]
    activities: list[dict[str, Any]]
    care_plan: str = ""
    task: str = ""

    def referral(self, patient: dict[str, Any], coverage: dict[str, str], contacts: dict[str, str]) -> dict[str, Any]:
        return {"identifier": {"system": "urn:oid:2.16.840.1.113883.3.9999.1",
                               "value": f"DEMO-{int(time.time())}-{self.discipline}"},
                "discipline": self.discipline, "patient": patient,
                "referrer": {"npi": "1234567893", "family": "Okafor", "given": ["Chidi"], **contacts},
                "reason": self.reason, "coverage": coverage, "note": "Evaluate and treat"}

    def plan(self) -> dict[str, Any]:
        today = datetime.now(UTC).date()  # UTC, as the demo's visits
        return {"author": "PractitionerRole/demo-therapist", "period_start": today.isoformat(),
                "period_end": (today + timedelta(weeks=4)).isoformat(), "frequency_per_week": 2,
                "duration_weeks": 4, "activities": self.activities,
                "goals": [{"term": "long", "description": f"Independent at home ({self.what})",
                           "due_date": (today + timedelta(weeks=4)).isoformat()}]}


def certifications() -> list[PaperCertification]:
    return [
        PaperCertification("OT", "occupational therapy", "fax",
                           {"icd10": "M19.041", "display": "Primary osteoarthritis, right hand"},
                           [{"code": "97165", "display": "OT evaluation, low complexity", "count": 1},
                            {"code": "97530", "display": "Therapeutic activities"}]),
        PaperCertification("SLP", "speech therapy", "Direct",
                           {"icd10": "R13.10", "display": "Dysphagia, unspecified"},
                           [{"code": "92610", "display": "Evaluation of swallowing function", "count": 1},
                            {"code": "92526", "display": "Treatment of swallowing dysfunction"}]),
    ]


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise ChannelError(f"{what} failed: HTTP {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


def paper_loops(client: httpx.Client, clinic: httpx.Client, physician: httpx.Client, channels: Channels, *,
                patient: dict[str, Any], coverage: dict[str, str], contacts: dict[str, str],
                wait: Callable[[Callable[[], Any], float, str], Any], echo: Callable[[str], None],
                scan: Callable[[bytes], bytes]) -> None:
    """Refer, plan, send and sign on paper both certifications; wait for the intake to complete them.

    ``scan``: a PDF printed, signed and scanned (what the referrer's office returns by Direct)."""
    fax, hisp = channels.fax, channels.hisp
    papers = certifications()
    sent: dict[str, Any] = {}
    def plans() -> list[Any]:  # what the HISP received that carries a document (not the hub's MDNs)
        return [r for r in hisp.received if r.documents]

    for paper in papers:
        faxes, messages = len(fax.sent), len(plans())
        view = _check(physician.post("/referrals", json=paper.referral(patient, coverage, contacts)),
                      f"the {paper.what} referral")
        task_id = view["task"].split("/")[1]
        _check(clinic.post(f"/referrals/{task_id}/status", json={"status": "accepted"}), "accepting")
        plan = _check(clinic.post(f"/referrals/{task_id}/plan-of-care", json=paper.plan()), "the plan of care")
        paper.care_plan = plan["care_plan"]
        paper.task = next(o["task"] for o in plan["obligations"] if o["kind"] == "certification")
        # one referral at a time: the next fax and the next Direct message are this plan's
        wait(lambda n=faxes: len(fax.sent) > n, 60, f"the {paper.what} plan by fax")
        wait(lambda n=messages: len(plans()) > n, 60, f"the {paper.what} plan by Direct")
        sent[paper.discipline] = fax.sent[faxes] if paper.channel == "fax" else plans()[messages]
        echo(f"{paper.what} referral {view['service_request']} accepted; plan of care {paper.care_plan} sent for "
             f"signature by fax and by Direct ({paper.task}, to be signed on paper only)")
    for paper in papers:
        if paper.channel == "fax":
            status, page = fax.return_signed(sent[paper.discipline], recipient=CLINIC_FAX,
                                             url=channels.base + FAX_PATH)
            if status != 202:
                raise ChannelError(f"the signed fax was not stored (HTTP {status})")
            form = "a scanned, image-only page" if b"/Font" not in page else "a scanned page"
            echo(f"the referrer's office faxed back the signed {paper.what} plan: {form} (HTTP 202)")
        else:
            received = sent[paper.discipline]
            pdf = next(d.content for d in received.documents if d.mime_type == "application/pdf")
            hisp.send_signed_plan(received, scan(pdf), host="127.0.0.1", port=channels.listener_port)
            echo(f"Dr. Okafor replied by Direct with the signed {paper.what} plan (SMTP 250)")
    _wait_for_intake(client, papers, echo)


def _state(client: httpx.Client, paper: PaperCertification) -> tuple[str, str | None, str | None]:
    """(the Task's status, the signed document that completed it, its intake outcome)."""
    task = _check(client.get(f"/fhir/{paper.task}"), "reading the certification")
    for output in task.get("output") or []:
        reference = str((output.get("valueReference") or {}).get("reference") or "")
        if reference.startswith("DocumentReference/"):
            outcome = intake_state(_check(client.get(f"/fhir/{reference}"), "reading the document"))
            if outcome is not None:  # a received document (not the plan's own PDF)
                return str(task["status"]), reference, outcome
    return str(task["status"]), None, None


def _wait_for_intake(client: httpx.Client, papers: list[PaperCertification], echo: Callable[[str], None]) -> None:
    echo("waiting for the document intake to complete both certifications ...")
    started = time.monotonic()
    deadline, told = started + INTAKE_SECONDS, started
    while True:
        states = {paper.channel: _state(client, paper) for paper in papers}
        if all(status == "completed" for status, _, _ in states.values()):
            break
        now = time.monotonic()
        if now > deadline:
            raise ChannelError("timed out waiting for the intake of the signed pages: " + ", ".join(
                f"{channel} {status}" for channel, (status, _, _) in states.items()))
        if now - told >= PROGRESS_SECONDS:
            told = now
            echo("  still waiting (" + ", ".join(f"by {channel}: certification {status}"
                                                 for channel, (status, _, _) in states.items()) + ")")
        time.sleep(0.3)
    for paper in papers:
        _, document, outcome = states[paper.channel]
        echo(f"signed on paper, back by {paper.channel}: {paper.what} plan {paper.care_plan}, document {document} "
             f"(intake: {outcome}); certification {paper.task} completed")
    echo(f"both paper certifications completed by the intake in {time.monotonic() - started:.1f} s")
