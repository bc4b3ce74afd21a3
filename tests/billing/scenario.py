"""A clinic's week in the store, for the billing service tests: the resources of
:mod:`tests.mappings.billing.visits_support` (patient pat-1, Medicare, PT/OT/SLP with evaluations, timed
and untimed codes, the PT and OT assistants), plus:

* pat-2, Acme Health Plan (payer ACME1): Wed 97140 + 97530 (an NCCI pair without 59: blocked),
  Thu 97110 (ready);
* pat-3, Medicare: three January PT visits at $800 each, then a March visit past the 2025 KX
  threshold ($2,410).

:func:`load_week` puts them through ``/fhir``; :func:`billing_profile` is the connector's billing section.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

from mappings.billing.codes import PAYER_ID_SYSTEM
from tests.mappings.billing.visits_support import ADDRESS, FEES, careplan, charge, encounter, week

MEDICARE = "00430"
ACME = "ACME1"
SUBMITTER = {"name": "Springfield Rehab", "etin": "SPRREHAB01", "contact_name": "Billing Office",
             "contact_phone": "2175550100", "receiver_name": "Sandbox Clearinghouse", "receiver_id": "SANDBOXCH",
             "usage": "T"}


def billing_profile(**overrides: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "organization": "Organization/clinic",
        "submitter": SUBMITTER,
        "payers": {MEDICARE: {"name": "Medicare Part B", "filing_indicator": "MB"},
                   ACME: {"name": "ACME HEALTH PLAN", "filing_indicator": "CI"}},
        "fee_schedule": {code: str(fee) for code, fee in FEES.items()},
        "default": True,
    }
    profile.update(overrides)
    return profile


def _for(resource: dict[str, Any], patient: str) -> dict[str, Any]:
    text = copy.deepcopy(resource)
    for key in ("subject", "beneficiary"):
        if key in text:
            text[key] = {"reference": f"Patient/{patient}"}
    return text


def _patient(pid: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family, "given": ["Alex"]}],
            "birthDate": "1948-02-11", "gender": "male", "address": [ADDRESS]}


def _coverage(cid: str, patient: str, payer: str, kind: str, member: str) -> dict[str, Any]:
    return {
        "resourceType": "Coverage", "id": cid, "status": "active",
        "type": {"coding": [{"system": "https://therapy-hub.example/CodeSystem/claim-filing-indicator",
                             "code": kind}]},
        "subscriberId": member, "beneficiary": {"reference": f"Patient/{patient}"},
        "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                                     "code": "self"}]},
        "payor": [{"reference": f"Organization/{payer}"}],
    }


def resources() -> list[dict[str, Any]]:
    w = week()
    assert w.coverage["type"]["coding"][0]["system"]  # the filing indicator system of the mappings
    filing_system = w.coverage["type"]["coding"][0]["system"]
    acme = {"resourceType": "Organization", "id": "acme", "name": "Acme Health Plan",
            "identifier": [{"system": PAYER_ID_SYSTEM, "value": ACME}], "address": [ADDRESS]}
    w.payer["identifier"] = [{"system": PAYER_ID_SYSTEM, "value": MEDICARE}]
    out: list[dict[str, Any]] = [w.clinic, w.payer, acme, *w.practitioners.values(), w.patient, w.coverage,
                                 w.referral, *w.conditions, *w.careplans.values()]
    for discipline in ("PT", "OT", "SLP"):
        out += w.encounters[discipline] + w.charges[discipline]

    # pat-2, Acme: an NCCI pair without a distinct-service modifier, and a clean visit
    cov2 = _coverage("cov-2", "pat-2", "acme", "CI", "ACM123456")
    cov2["type"]["coding"][0]["system"] = filing_system
    plan2 = _for(careplan("PT", start="2025-03-01", end="2025-05-31"), "pat-2") | {"id": "plan-pt-2"}
    out += [_patient("pat-2", "Roe"), cov2, _for(w.referral, "pat-2") | {"id": "referral-2"},
            plan2 | {"supportingInfo": [{"reference": "ServiceRequest/referral-2"}]},
            _for(w.conditions[0], "pat-2") | {"id": "lbp-2"}]
    for eid, day, codes in (("p2-wed", "2025-03-12", [("97140", 15), ("97530", 30)]),
                            ("p2-thu", "2025-03-13", [("97110", 38)])):
        visit = _for(encounter(eid, day, ["lbp-2"]), "pat-2")
        visit["basedOn"] = [{"reference": "ServiceRequest/referral-2"}]
        out.append(visit)
        out += [_for(charge(f"{eid}-{code}", code, eid, day, "pt", minutes=minutes), "pat-2")
                for code, minutes in codes]

    # pat-3, Medicare: $2,400 of PT in January, then a March visit past the KX threshold
    cov3 = _coverage("cov-3", "pat-3", "medicare", "MB", "2EG4TE5MK74")
    cov3["type"]["coding"][0]["system"] = filing_system
    plan3 = _for(careplan("PT", start="2025-01-06", end="2025-04-30"), "pat-3") | {"id": "plan-pt-3"}
    out += [_patient("pat-3", "Poe"), cov3, _for(w.referral, "pat-3") | {"id": "referral-3"},
            plan3 | {"supportingInfo": [{"reference": "ServiceRequest/referral-3"}]},
            _for(w.conditions[0], "pat-3") | {"id": "lbp-3"}]
    for eid, day in (("p3-jan1", "2025-01-07"), ("p3-jan2", "2025-01-14"), ("p3-jan3", "2025-01-21"),
                     ("p3-mar", "2025-03-11")):
        visit = _for(encounter(eid, day, ["lbp-3"]), "pat-3")
        visit["basedOn"] = [{"reference": "ServiceRequest/referral-3"}]
        out.append(visit)
        item = _for(charge(f"{eid}-97110", "97110", eid, day, "pt", units=4), "pat-3")
        if eid != "p3-mar":
            item["priceOverride"] = {"value": 200, "currency": "USD"}
        out.append(item)
    return out


def load_week(client: TestClient) -> None:
    """Every resource of the scenario, PUT through /fhir (as an EMR would write them)."""
    for resource in resources():
        response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                              headers={"Content-Type": "application/fhir+json"})
        assert response.status_code in (200, 201), (resource["resourceType"], resource["id"], response.text)
