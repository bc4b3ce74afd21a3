"""Billing in ``hub demo``: the physical therapy visits billed to Medicare Part B through the sandbox
clearinghouse (ADR 0013).

At step 3 the clearinghouse connector (``x12_billing`` over SFTP, host key pinned) is wired with a
billing profile: the demo clinic (the tenant's Organization) bills, with its NPI and EIN, as the
submitter the clearinghouse knows, Medicare Part B (payer id :data:`PAYER_ID`, filing indicator MB)
its payer, and the clinic's fee schedule. At intake (:meth:`DemoBilling.intake`) the clinic records
what billing needs: its NPI, EIN and address, the treating therapist (a Practitioner with an NPI),
the payer, the referral's Coverage linked to it, the patient's address; and asks the payer about the
patient's benefits (a 270; the 271 polled back: PT visits allowed and used, the copay).

After the episode (:meth:`DemoBilling.bill`) the therapist's charges are recorded as ChargeItems (an
evaluation on the first visit, then timed codes in minutes, units by the CMS 8-minute rule), a claim
is built per visit and scrubbed (a visit with an NCCI pair is blocked until the therapist documents
separate, distinct services with modifier 59), the claims go out as one 837P file (delivered by the
worker), the 999 and 277CA are polled back, the payer adjudicates (the sandbox releases its 835) and
the payment is polled and shown: claims paid, billed, allowed, paid, patient responsibility, the
EFT trace number and the denials with their CARC. Never a patient's name: ids, codes and amounts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx

from mappings.billing.codes import (
    FILING_INDICATOR_SYSTEM,
    MODIFIER_EXTENSION,
    NUCC_TAXONOMY_SYSTEM,
    PAYER_ID_SYSTEM,
    PERFORMER_FUNCTION_SYSTEM,
)
from mappings.billing.model import CPT_SYSTEM, NPI_SYSTEM, TAX_ID_SYSTEM
from mappings.x12.eligibility_fhir import BENEFIT_TYPE_SYSTEM
from mappings.x12.remittance_fhir import ADJUDICATION_SYSTEM, GROUP_SYSTEM

if TYPE_CHECKING:
    from sandboxes.clearinghouse import SandboxClearinghouse

__all__ = ["CLINIC_NPI", "CONNECTOR", "FEES", "PAYER_ID", "THERAPIST_NPI", "VISIT_CHARGES", "BillingError",
           "DemoBilling", "Intake", "money"]

CONNECTOR = "clearinghouse"
TENANT = "default"  # the tenant the demo's hub runs as (it starts with no HUB_ settings)
PAYER_ID = "00430"
PAYER = "Medicare Part B"
CLINIC_NAME = "Lakeside Physical Therapy"
CLINIC_NPI = "1547829634"  # ten digits, Luhn check digit over 80840 + the NPI
CLINIC_EIN = "47-1234567"
THERAPIST = "demo-therapist"  # the plans of care name PractitionerRole/demo-therapist as their author
THERAPIST_NPI = "1673940288"
ADDRESS = {"line": ["200 Lake Shore Dr"], "city": "Portland", "state": "OR", "postalCode": "97201"}
PATIENT_ADDRESS = {"line": ["18 Alder St"], "city": "Portland", "state": "OR", "postalCode": "97214"}
SUBMITTER = {"name": CLINIC_NAME, "etin": "LAKESIDEPT01", "contact_name": "Billing Office",
             "contact_phone": "5035550100", "receiver_name": "Sandbox Clearinghouse", "receiver_id": "SANDBOXCH",
             "usage": "T"}
#: the clinic's charge per unit
FEES = {"97161": "150.00", "97110": "45.00", "97140": "42.00", "97530": "50.00", "97750": "48.00"}
#: per visit, (CPT code, timed minutes or None for an untimed code); visit 5 has an NCCI pair (97140
#: with 97530), the last one the discharge re-test 97750 (which the sandbox payer does not cover)
VISIT_CHARGES: tuple[tuple[tuple[str, int | None], ...], ...] = (
    (("97161", None), ("97110", 12)),
    (("97110", 25), ("97140", 14)),
    (("97110", 30), ("97530", 10)),
    (("97110", 23), ("97140", 15)),
    (("97140", 15), ("97530", 23)),
    (("97110", 38),),
    (("97110", 22), ("97530", 16)),
    (("97110", 30), ("97140", 8)),
    (("97110", 25), ("97530", 20)),
    (("97110", 15), ("97750", 20)),
)
DISTINCT = "59"
FHIR = {"Content-Type": "application/fhir+json"}
TAXONOMY = {"coding": [{"system": NUCC_TAXONOMY_SYSTEM, "code": "225100000X", "display": "Physical Therapist"}]}


class BillingError(RuntimeError):
    """A billing step of the demo failed (the demo says so and stops)."""


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise BillingError(f"{what} failed: HTTP {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


def money(value: Decimal | int) -> str:
    """``$1,234.50`` (an int is cents)."""
    amount = Decimal(value) / 100 if isinstance(value, int) else value
    return f"${amount:,.2f}"


def _dec(value: Any) -> Decimal:
    return Decimal(str(value if value is not None else 0)).quantize(Decimal("0.01"))


def _code(concept: Any, system: str | None = None) -> str | None:
    for coding in (concept or {}).get("coding") or []:
        if system is None or coding.get("system") == system:
            return str(coding.get("code"))
    return None


@dataclass
class Intake:
    patient: str  # Patient/<id>
    coverage: str  # Coverage/<id>
    condition: str  # Condition/<id>: the referral's diagnosis, each visit's diagnosis


class DemoBilling:
    """The clearinghouse sandbox ``house``; ``admin`` and ``clinic`` are signed-in clients of the hub."""

    def __init__(self, house: SandboxClearinghouse, admin: httpx.Client, clinic: httpx.Client, *,
                 wait: Callable[[Callable[[], Any], float, str], Any], echo: Callable[[str], None]) -> None:
        self.house, self.admin, self.clinic, self.wait, self.echo = house, admin, clinic, wait, echo
        from hub.referrals.service import clinic_id  # deferred: the demo loads the hub's modules when it runs

        self.organization = f"Organization/{clinic_id(TENANT)}"
        self._asked: dict[str, Any] | None = None  # the intake's eligibility inquiry

    # ------------------------------------------------------------------ step 3

    def wire(self) -> None:
        profile = {"organization": self.organization, "submitter": SUBMITTER,
                   "payers": {PAYER_ID: {"name": PAYER, "filing_indicator": "MB"}}, "fee_schedule": FEES}
        _check(self.admin.put(f"/admin/api/connectors/{CONNECTOR}", json={
            "name": CONNECTOR, "kind": "x12_billing", "config": self.house.connector_config("sftp", billing=profile),
            "max_attempts": 5, "backoff_base_seconds": 0.5}), "the clearinghouse connector")

    # ------------------------------------------------------------------ intake

    def _put(self, resource: dict[str, Any]) -> dict[str, Any]:
        what = f"writing {resource['resourceType']}/{resource['id']}"
        return dict(_check(self.clinic.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                                           headers=FHIR), what))

    def _write(self, resources: list[dict[str, Any]], what: str) -> None:
        """PUT every resource in one FHIR transaction (all or nothing)."""
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {k: v for k, v in r.items() if k != "meta"},
             "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
        _check(self.clinic.post("/fhir", json=bundle, headers={**FHIR, "Prefer": "return=minimal"}), what)

    def _read(self, reference: str) -> dict[str, Any]:
        return dict(_check(self.clinic.get(f"/fhir/{reference}"), f"reading {reference.split('/')[0]}"))

    def intake(self, view: dict[str, Any]) -> Intake:
        """Record what billing needs for the referral of ``view`` (POST /referrals' answer) and ask the
        payer about the patient's benefits (a 270: :meth:`eligibility` shows the 271)."""
        if view.get("owner") != self.organization:
            raise BillingError(f"the referral is owned by {view.get('owner')}, not the billing clinic")
        request = self._read(view["service_request"])
        coverage_ref = str(((request.get("insurance") or [{}])[0]).get("reference") or "")
        condition = str(((request.get("reasonReference") or [{}])[0]).get("reference") or "")
        if not coverage_ref.startswith("Coverage/") or not condition.startswith("Condition/"):
            raise BillingError("the referral carries no Coverage or no diagnosis")
        clinic = self._read(self.organization)
        clinic.update({"name": CLINIC_NAME, "address": [ADDRESS],
                       "telecom": [{"system": "phone", "value": "503-555-0100"}],
                       "type": [{"coding": [{"system": NUCC_TAXONOMY_SYSTEM, "code": "261QP2000X"}]}]})
        clinic["identifier"] = [i for i in clinic.get("identifier") or []
                                if i.get("system") not in (NPI_SYSTEM, TAX_ID_SYSTEM)]
        clinic["identifier"] += [{"system": NPI_SYSTEM, "value": CLINIC_NPI},
                                 {"system": TAX_ID_SYSTEM, "value": CLINIC_EIN}]
        coverage = self._read(coverage_ref)
        coverage.update({
            "type": {"coding": [{"system": FILING_INDICATOR_SYSTEM, "code": "MB", "display": "Medicare Part B"}]},
            "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                                         "code": "self"}]},
            "payor": [{"reference": "Organization/medicare-part-b", "display": PAYER}], "order": 1})
        patient = self._read(view["patient"])
        patient["address"] = [PATIENT_ADDRESS]
        self._write([
            clinic, coverage, patient,
            {"resourceType": "Practitioner", "id": THERAPIST,
             "identifier": [{"system": NPI_SYSTEM, "value": THERAPIST_NPI}],
             "name": [{"family": "Lindqvist", "given": ["Maja"], "suffix": ["PT", "DPT"]}],
             "qualification": [{"code": TAXONOMY}]},
            {"resourceType": "PractitionerRole", "id": THERAPIST, "active": True,
             "practitioner": {"reference": f"Practitioner/{THERAPIST}"},
             "organization": {"reference": self.organization}, "code": [TAXONOMY]},
            {"resourceType": "Organization", "id": "medicare-part-b", "active": True, "name": PAYER,
             "identifier": [{"system": PAYER_ID_SYSTEM, "value": PAYER_ID}],
             "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                   "code": "pay"}]}]},
        ], "recording the billing data of the intake")
        self.echo(f"billing at intake: {coverage_ref} linked to {PAYER} (payer id {PAYER_ID}, filing indicator MB); "
                  f"the clinic bills as {self.organization} (NPI {CLINIC_NPI}, EIN {CLINIC_EIN}); "
                  "eligibility asked (270)")
        self._asked = _check(self.admin.post("/admin/api/billing/eligibility", json={
            "coverage": coverage_ref, "disciplines": ["PT"], "provider": self.organization,
            "connector": CONNECTOR}), "the eligibility inquiry")
        return Intake(view["patient"], coverage_ref, condition)

    def _delivered(self, job_ids: list[int], what: str) -> None:
        def done() -> bool:
            jobs = [_check(self.admin.get(f"/admin/api/jobs/{job}"), "a delivery job") for job in job_ids]
            dead = [j for j in jobs if j["status"] == "dead"]
            if dead:
                raise BillingError(f"{what} was not delivered: {dead[0]['last_error']}")
            return bool(jobs) and all(j["status"] == "succeeded" for j in jobs)

        self.wait(done, 60, what)

    def _jobs_of(self, message_id: str) -> list[int]:
        page = _check(self.admin.get("/admin/api/jobs", params={"message": message_id}), "the delivery jobs")
        return [int(j["id"]) for j in page["items"]]

    def _poll(self) -> dict[str, Any]:
        report = dict(_check(self.admin.post(f"/admin/api/billing/connectors/{CONNECTOR}/poll"), "polling"))
        if not report["ok"]:
            raise BillingError(f"polling the clearinghouse failed: {report['error']}")
        return report

    def eligibility(self) -> None:
        """The 271 that answers the intake's 270 (delivered by the worker meanwhile), polled and shown."""
        asked = self._asked
        if asked is None:
            raise BillingError("no eligibility inquiry was made at intake")
        self._delivered(self._jobs_of(asked["message_id"]), "the 270")
        self.wait(lambda: any(n.endswith(".271") for n in self.house.responses()), 30, "the 271")
        report = self._poll()
        responses = [r for f in report["files"] for s in f["sets"] if s["kind"] == "271" for r in s["resources"]]
        if not responses:
            raise BillingError(f"the 271 was not applied: {report['files']}")
        answer = self._read(responses[0])
        benefits: dict[str, dict[str, Any]] = {}
        for item in (answer.get("insurance") or [{}])[0].get("item") or []:
            if _code(item.get("category")) == "PT":
                for benefit in item.get("benefit") or []:
                    benefits.setdefault(str(_code(benefit.get("type"), BENEFIT_TYPE_SYSTEM)), {}).update(benefit)
        visits, copay = benefits.get("visit", {}), benefits.get("copay", {})
        active = "active" if (answer.get("insurance") or [{}])[0].get("inforce") else "not active"
        self.echo(f"eligibility (270 -> 271, trace {asked['trace']}): coverage {active}; "
                  f"PT visits this year: {visits.get('allowedUnsignedInt', '?')} allowed, "
                  f"{visits.get('usedUnsignedInt', '?')} used; copay "
                  f"{money(_dec((copay.get('allowedMoney') or {}).get('value')))} a visit ({responses[0]})")

    # ------------------------------------------------------------------ after the episode

    def bill(self, intake: Intake, visits: list[tuple[str, datetime]]) -> None:
        """Charge, build, scrub, submit, deliver, poll and show the payment of ``visits`` (Encounter id and
        start of each, in order: :data:`VISIT_CHARGES` gives their charges)."""
        if len(visits) != len(VISIT_CHARGES):
            raise BillingError(f"{len(visits)} visits, {len(VISIT_CHARGES)} charge sheets")
        started = time.monotonic()
        number_of = {encounter: n for n, (encounter, _) in enumerate(visits, start=1)}
        charges = self._charge(intake, visits)
        claims = self._build(number_of, charges)
        self._submit(claims)
        self._acknowledgments()
        self._payment(number_of)
        self.echo(f"billed in {time.monotonic() - started:.1f} s")

    def _charge(self, intake: Intake, visits: list[tuple[str, datetime]]) -> dict[tuple[int, str], dict[str, Any]]:
        written: dict[tuple[int, str], dict[str, Any]] = {}
        for n, ((encounter, start), sheet) in enumerate(zip(visits, VISIT_CHARGES, strict=True), start=1):
            for code, minutes in sheet:
                quantity = ({"value": minutes, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}
                            if minutes is not None else {"value": 1})
                written[(n, code)] = {
                    "resourceType": "ChargeItem", "id": f"demo-visit{n}-{code}", "status": "billable",
                    "code": {"coding": [{"system": CPT_SYSTEM, "code": code}]},
                    "subject": {"reference": intake.patient}, "context": {"reference": f"Encounter/{encounter}"},
                    "occurrenceDateTime": start.isoformat(timespec="seconds"),
                    "performer": [{"function": {"coding": [{"system": PERFORMER_FUNCTION_SYSTEM, "code": "therapist"}]},
                                   "actor": {"reference": f"PractitionerRole/{THERAPIST}"}}],
                    "quantity": quantity}
        self._write(list(written.values()), "recording the charges")
        timed = sorted({code for sheet in VISIT_CHARGES for code, minutes in sheet if minutes is not None})
        self.echo(f"charges: {len(written)} ChargeItems on the {len(visits)} visits (evaluation 97161 on the first, "
                  f"then {', '.join(timed)} in minutes)")
        return written

    def _claim_lines(self, claim_id: str) -> list[tuple[str, int, list[str]]]:
        """(code, units, modifiers) of each line of a stored Claim."""
        claim = self._read(f"Claim/{claim_id}")
        return [(str(_code(item.get("productOrService"))), int(Decimal(str(item["quantity"]["value"]))),
                 [str(_code(m)) for m in item.get("modifier") or []]) for item in claim.get("item") or []]

    def _build(self, number_of: dict[str, int], charges: dict[tuple[int, str], dict[str, Any]]) -> list[dict[str, Any]]:
        built = _check(self.admin.post("/admin/api/billing/claims/build"), "building the claims")
        if built["skipped"]:
            raise BillingError(f"visits without a claim: {[s['reason'] for s in built['skipped']]}")
        claims = built["claims"]
        blocked = [c for c in claims if c["status"] == "blocked"]
        self.echo(f"claims built: {len(claims)} (one per visit), {len(claims) - len(blocked)} ready, "
                  f"{len(blocked)} blocked by the scrubber")
        for claim in blocked:
            visit = number_of[claim["encounter_id"]]
            detail = _check(self.admin.get(f"/admin/api/billing/claims/{claim['claim_id']}"), "a blocked claim")
            errors = [f for f in detail["finding_list"] if f["severity"] == "error"]
            for finding in errors:
                self.echo(f"  visit {visit}, claim {claim['patient_control_number']}, line {finding['line']}: "
                          f"{finding['rule']}: {finding['message']}")
            if not errors or any(f["rule"] != "ncci.pair" for f in errors):
                raise BillingError(f"visit {visit}'s claim is blocked: {[f['rule'] for f in errors]}")
            self.echo(f"  fix: {errors[0]['fix']}")
            code = self._claim_lines(claim["claim_id"])[int(errors[0]["line"]) - 1][0]
            item = {**charges[(visit, code)], "extension": [
                {"url": MODIFIER_EXTENSION, "valueCoding": {"system": CPT_SYSTEM, "code": DISTINCT}}]}
            charges[(visit, code)] = self._put(item)
            self.echo(f"  the therapist documents separate, distinct services: modifier {DISTINCT} on {code} "
                      f"of visit {visit}")
        if blocked:
            again = _check(self.admin.post("/admin/api/billing/claims/build"), "building the claims again")
            claims = again["claims"]
            still = [c for c in claims if c["status"] != "ready"]
            if still:
                raise BillingError(f"{len(still)} claims still not ready after the fix")
            actions = sorted({c["action"] for c in claims if number_of[c["encounter_id"]] in
                              {number_of[b["encounter_id"]] for b in blocked}})
            self.echo(f"claims built again: the fixed visit's claim {'/'.join(actions)}, all {len(claims)} ready")
        units: dict[str, int] = {}
        modifiers: dict[str, int] = {}
        lines = [line for claim in claims for line in self._claim_lines(claim["claim_id"])]
        for code, count, mods in lines:
            units[code] = units.get(code, 0) + count
            for modifier in mods:
                modifiers[modifier] = modifiers.get(modifier, 0) + 1
        self.echo("units by the CMS 8-minute rule: " + ", ".join(f"{code} x{n}" for code, n in sorted(units.items()))
                  + f"; modifiers: GP on {modifiers.get('GP', 0)} of {len(lines)} lines"
                  + "".join(f", {m} on {n}" for m, n in sorted(modifiers.items()) if m != "GP"))
        return list(claims)

    def _submit(self, claims: list[dict[str, Any]]) -> None:
        files = _check(self.admin.post("/admin/api/billing/submit", json={"connector": CONNECTOR}), "submitting")
        if len(files) != 1 or files[0]["status"] != "queued":
            raise BillingError(f"the 837P was not queued: {[(f['status'], f['issues']) for f in files]}")
        [file] = files
        if sorted(file["claim_ids"]) != sorted(c["claim_id"] for c in claims):
            raise BillingError("the 837P does not carry every ready claim")
        charge = money(Decimal(file["charge"]))
        self.echo(f"claims submitted: {len(file['claim_ids'])} in one 837P (005010X222A1, checked by pyx12) to payer "
                  f"{file['payer_id']}, ISA13 {file['interchange_control']:09d}, charge {charge}, "
                  f"delivery job {', '.join(map(str, file['job_ids']))}")
        self._delivered(list(file["job_ids"]), "the 837P")
        received = self.house.claim_files[-1]
        self.echo(f"the worker delivered the 837P over SFTP: the clearinghouse took {received.name} "
                  f"({received.accepted_sets} transaction set accepted, {len(received.claims)} claims)")

    def _show(self, report: dict[str, Any], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        sets = [s for f in report["files"] for s in f["sets"]]
        found = [s for s in sets if s["kind"] in kinds]
        problems = [e for s in sets for e in s["errors"]] + [u for s in sets for u in s["unmatched"]]
        if sorted({s["kind"] for s in found}) != sorted(kinds) or problems:
            raise BillingError(f"the poll did not bring {', '.join(kinds)} cleanly: "
                               f"{[(s['kind'], s['claims'], s['errors']) for s in sets]}")
        return found

    def _acknowledgments(self) -> None:
        self.wait(lambda: {n.rsplit(".", 1)[-1] for n in self.house.responses()} >= {"999", "277"}, 30,
                  "the 999 and the 277CA")
        report = self._poll()
        for answer in self._show(report, ("999", "277CA")):
            moved = ", ".join(f"{n} claims {status}" for status, n in sorted(answer["claims"].items()))
            what = "the 837P's syntax" if answer["kind"] == "999" else "the claims, by the payer's front end"
            self.echo(f"polled the {answer['kind']} ({what}): {moved or 'no claim moved'}")

    def _payment(self, number_of: dict[str, int]) -> None:
        released = self.house.release_remittance()
        self.echo(f"the payer adjudicates: the clearinghouse has the 835 ({', '.join(released)})")
        report = self._poll()
        [remit] = self._show(report, ("835",))
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(remit["claims"].items()))
        self.echo(f"polled the 835: {statuses}; {len(remit['resources'])} ClaimResponses written")
        responses = [self._read(ref) for ref in remit["resources"]]
        billed = allowed = paid = patient = Decimal("0.00")
        adjustments: dict[str, Decimal] = {}
        traces: set[str] = set()
        for response in responses:
            totals = {_code(t.get("category")): _dec((t.get("amount") or {}).get("value"))
                      for t in response.get("total") or []}
            billed += totals.get("submitted", Decimal("0.00"))
            paid += totals.get("benefit", Decimal("0.00"))
            patient += totals.get("PR", Decimal("0.00"))
            for item in response.get("item") or []:
                for adjudication in item.get("adjudication") or []:
                    category = _code(adjudication.get("category"), ADJUDICATION_SYSTEM)
                    group = _code(adjudication.get("category"), GROUP_SYSTEM)
                    if category == "eligible":
                        allowed += _dec((adjudication.get("amount") or {}).get("value"))
                    elif group is not None:
                        key = f"{group}-{_code(adjudication.get('reason'))}"
                        adjustments[key] = adjustments.get(key, Decimal("0.00")) + _dec(
                            (adjudication.get("amount") or {}).get("value"))
            trace = ((response.get("payment") or {}).get("identifier") or {}).get("value")
            if trace:
                traces.add(str(trace))
        rows = _check(self.admin.get("/admin/api/billing/claims", params={"limit": 500}), "the claims")
        listed = sum((_dec(r["paid"]) for r in rows if r["paid"] is not None), Decimal("0.00"))
        withheld = sum((v for k, v in adjustments.items() if not k.startswith("PR-")), Decimal("0.00"))
        if (listed != paid or Decimal(remit["paid_cents"]) / 100 != paid or allowed != paid + patient
                or billed != allowed + withheld):
            raise BillingError(f"the payment does not add up: billed {billed}, allowed {allowed}, paid {paid} "
                               f"(claims {listed}, 835 {remit['paid_cents']}), patient {patient}, {adjustments}")
        paid_claims = [r for r in rows if r["status"] in ("paid", "partially_paid")]
        self.echo(f"payment: {len(paid_claims)} of {len(rows)} claims paid "
                  f"({sum(1 for r in paid_claims if r['status'] == 'paid')} in full): billed {money(billed)}, "
                  f"allowed {money(allowed)}, paid {money(paid)}, patient responsibility {money(patient)}; "
                  f"check/EFT trace {', '.join(sorted(traces))}")
        self.echo("  adjustments: " + ", ".join(f"{k} {money(v)}" for k, v in sorted(adjustments.items()))
                  + f" (billed {money(billed)} = allowed {money(allowed)} + {money(withheld)} withheld; "
                  f"allowed = paid {money(paid)} + patient {money(patient)})")
        analytics = _check(self.admin.get("/admin/api/billing/analytics"), "the billing analytics")
        denials = analytics["denials"]["by_carc"]
        partial = sorted(number_of[r["encounter_id"]] for r in rows if r["status"] in ("partially_paid", "denied"))
        for denial in denials:
            self.echo(f"  denied: {denial['group']}-{denial['carc']} \"{denial['description']}\": {denial['count']} "
                      f"line(s), {money(int(denial['amount_cents']))} (visit {', '.join(map(str, partial))})")
        if not denials:
            self.echo("  denied: none")
