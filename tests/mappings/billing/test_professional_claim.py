"""FHIR Claim + the resources it points to -> the flat professional claim: our own Claims round trip,
and a Claim another EMR writes differently reads the same; what is missing is named by FHIR path."""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from mappings.billing.claims import ClaimDataError, claim_from_visits, professional_claim
from mappings.billing.model import HCPCS_SYSTEM, ICD10CM_SYSTEM, NPI_SYSTEM, POS_SYSTEM, TAX_ID_SYSTEM
from mappings.fhir import model_class
from tests.mappings.billing.visits_support import CREATED, FEES, NPI, claim_for, resources_of, week


def test_our_pt_claim_reads_back_into_the_flat_claim() -> None:
    w = week()
    claim = claim_for(w, "PT")
    flat = professional_claim(claim, resources_of(w))
    assert flat.patient_control_number == "W11-PT"
    assert flat.claim_ref == f"Claim/{claim['id']}"
    assert flat.billing_provider.npi == NPI["clinic"] and flat.billing_provider.tax_id == "123456789"
    assert flat.billing_provider.address is not None and flat.billing_provider.address.postal_code == "627011234"
    assert flat.rendering_provider is not None and flat.rendering_provider.npi == NPI["pt"]
    assert flat.rendering_provider.taxonomy == "225100000X"
    assert flat.referring_provider is not None and flat.referring_provider.npi == NPI["physician"]
    assert flat.subscriber.member_id == "1EG4TE5MK73" and flat.subscriber.gender == "F"
    assert flat.patient is None and flat.relationship == "18"
    assert (flat.payer.payer_id, flat.payer.filing_indicator) == ("00430", "MB")
    assert flat.diagnoses == ("M5450", "M6281")
    assert flat.discipline == "PT"
    assert flat.onset_date == date(2025, 2, 20) and flat.initial_treatment_date == date(2025, 3, 10)
    assert flat.total_charge == Decimal("575.00")
    assert [(x.line_number, x.code, x.units, x.minutes, x.modifiers) for x in flat.lines][2:6] == [
        (3, "97110", 2, 33, ("GP",)),
        (4, "97140", 1, 7, ("GP",)),
        (5, "97110", 2, 24, ("GP", "CQ")),
        (6, "97112", 1, 23, ("GP", "CQ")),
    ]
    assert [x.rendering_is_assistant for x in flat.lines] == [False] * 4 + [True] * 4
    assert all(x.rendering is None for x in flat.lines)  # all rendered by the claim's therapist
    assert flat.lines[-1].diagnosis_pointers == (1,) and flat.lines[0].diagnosis_pointers == (1, 2)
    assert flat.lines[0].control_number == "W11-PT-1" and flat.lines[0].encounter_ref == "Encounter/pt-mon"


def test_a_line_at_another_place_of_service_keeps_its_own() -> None:
    w = week()
    claim = claim_for(w, "SLP")
    claim["item"][1]["locationCodeableConcept"]["coding"][0]["code"] = "12"
    claim["item"].append(copy.deepcopy(claim["item"][0]) | {"sequence": 3})
    flat = professional_claim(claim, resources_of(w))
    assert flat.place_of_service == "11"
    assert [x.place_of_service for x in flat.lines] == [None, "12", None]


def other_emr() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A Claim as another EMR writes it: HCPCS system, diagnosis by reference, a servicedPeriod, a unit
    price only, absolute URLs, the therapist as PractitionerRole, a contained payer, SOPT coverage type,
    no plan of care, the patient a dependent of the subscriber."""
    base = "https://emr.example/fhir"
    resources: dict[str, dict[str, Any]] = {
        "Organization/org9": {
            "resourceType": "Organization",
            "id": "org9",
            "name": "Lakeside Therapy",
            "identifier": [
                {"system": NPI_SYSTEM, "value": NPI["clinic"]},
                {"system": TAX_ID_SYSTEM, "value": "987654321"},
            ],
        },
        "PractitionerRole/r1": {
            "resourceType": "PractitionerRole",
            "id": "r1",
            "practitioner": {"reference": f"{base}/Practitioner/p1"},
            "code": [{"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "225X00000X"}]}],
        },
        "Practitioner/p1": {
            "resourceType": "Practitioner",
            "id": "p1",
            "identifier": [{"system": NPI_SYSTEM, "value": NPI["ot"]}],
            "name": [{"use": "official", "family": "Park", "given": ["Dana"]}],
        },
        "Coverage/c9": {
            "resourceType": "Coverage",
            "id": "c9",
            "status": "active",
            "type": {"coding": [{"system": "urn:oid:2.16.840.1.113883.3.221.5", "code": "511"}]},
            "identifier": [{"value": "XJ-2231"}],
            "subscriber": {"reference": "RelatedPerson/rp1"},
            "beneficiary": {"reference": "Patient/kid"},
            "relationship": {"coding": [{"code": "child"}]},
            "class": [{"type": {"coding": [{"code": "group"}]}, "value": "G-77"}],
            "payor": [{"reference": "#payer"}],
        },
        "RelatedPerson/rp1": {
            "resourceType": "RelatedPerson",
            "id": "rp1",
            "patient": {"reference": "Patient/kid"},
            "name": [{"family": "Park", "given": ["Lee"]}],
            "birthDate": "1980-01-02",
            "gender": "male",
            "address": [{"line": ["1 Elm"], "city": "Lakeside", "state": "MI", "postalCode": "49116"}],
        },
        "Patient/kid": {
            "resourceType": "Patient",
            "id": "kid",
            "name": [{"family": "Park", "given": ["Rae"]}],
            "birthDate": "2015-05-06",
            "gender": "female",
            "address": [{"line": ["1 Elm"], "city": "Lakeside", "state": "MI", "postalCode": "49116"}],
        },
        "Condition/d1": {
            "resourceType": "Condition",
            "id": "d1",
            "code": {"coding": [{"system": ICD10CM_SYSTEM, "code": "f82"}]},
        },
    }
    claim = {
        "resourceType": "Claim",
        "id": "emr-77",
        "status": "active",
        "contained": [
            {
                "resourceType": "Organization",
                "id": "payer",
                "name": "Blue Plan",
                "identifier": [{"system": "https://clearinghouse.example/payers", "value": "BP001"}],
            }
        ],
        "identifier": [{"system": "https://emr.example/claims", "value": "EMR77"}],
        "type": {"coding": [{"code": "professional"}]},
        "use": "claim",
        "patient": {"reference": f"{base}/Patient/kid"},
        "created": "2025-04-02",
        "provider": {"reference": f"{base}/Organization/org9"},
        "priority": {"coding": [{"code": "normal"}]},
        "careTeam": [{"sequence": 7, "provider": {"reference": "PractitionerRole/r1"}, "responsible": True}],
        "diagnosis": [{"sequence": 4, "diagnosisReference": {"reference": "Condition/d1"}}],
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/c9"}, "preAuthRef": ["PA-1"]}],
        "item": [
            {
                "sequence": 2,
                "careTeamSequence": [7],
                "diagnosisSequence": [4],
                "productOrService": {"coding": [{"system": HCPCS_SYSTEM, "code": "97530"}]},
                "modifier": [{"coding": [{"code": "go"}]}],
                "servicedPeriod": {"start": "2025-04-01T10:00:00Z", "end": "2025-04-01T10:45:00Z"},
                "locationCodeableConcept": {"coding": [{"system": POS_SYSTEM, "code": "03"}]},
                "quantity": {"value": 3},
                "unitPrice": {"value": 50.5, "currency": "USD"},
            },
            {
                "sequence": 1,
                "careTeamSequence": [7],
                "diagnosisSequence": [4],
                "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "97165"}]},
                "servicedDate": "2025-03-31",
                "net": {"value": 175, "currency": "USD"},
            },
        ],
    }
    return claim, resources


def test_a_claim_written_differently_by_another_emr_reads_the_same_way() -> None:
    claim, resources = other_emr()
    flat = professional_claim(claim, resources)
    assert flat.patient_control_number == "EMR77" and flat.claim_ref == "Claim/emr-77"
    assert flat.billing_provider.last_or_org_name == "Lakeside Therapy" and flat.billing_provider.address is None
    assert flat.rendering_provider is not None
    assert (
        flat.rendering_provider.last_or_org_name,
        flat.rendering_provider.npi,
        flat.rendering_provider.taxonomy,
    ) == ("Park", NPI["ot"], "225X00000X")
    assert flat.referring_provider is None
    assert flat.subscriber.first_name == "Lee" and flat.subscriber.member_id == "XJ-2231"
    assert flat.patient is not None and flat.patient.first_name == "Rae" and flat.relationship == "19"
    assert (flat.payer.name, flat.payer.payer_id, flat.payer.filing_indicator) == ("Blue Plan", "BP001", "CI")
    assert flat.group_number == "G-77" and flat.prior_authorization == "PA-1"
    assert flat.diagnoses == ("F82",)
    assert flat.discipline == "OT"  # from the GO modifier: no plan of care linked
    assert [
        (x.line_number, x.code, x.modifiers, x.units, x.charge, x.service_date, x.diagnosis_pointers)
        for x in flat.lines
    ] == [
        (1, "97165", (), 1, Decimal("175.00"), date(2025, 3, 31), (1,)),
        (2, "97530", ("GO",), 3, Decimal("151.50"), date(2025, 4, 1), (1,)),
    ]
    assert flat.place_of_service == "03" and flat.lines[0].place_of_service is None
    assert flat.lines[0].control_number == "EMR77-1"


@pytest.mark.parametrize(
    ("breaks", "path"),
    [
        (lambda c, r: r["Organization/org9"].update(identifier=[]), "Claim.provider -> Organization.identifier (NPI)"),
        (lambda c, r: r.pop("Coverage/c9"), "Claim.insurance[0].coverage"),
        (lambda c, r: r["Coverage/c9"].pop("identifier"), "Claim.insurance[0].coverage -> Coverage.subscriberId"),
        (
            lambda c, r: r["RelatedPerson/rp1"].pop("birthDate"),
            "Claim.insurance[0].coverage -> Coverage.subscriber -> RelatedPerson.birthDate",
        ),
        (lambda c, r: r["Coverage/c9"].pop("type"), "Claim.insurance[0].coverage -> Coverage.type"),
        (lambda c, r: r.pop("Condition/d1"), "Claim.diagnosis[0].diagnosisReference"),
        (lambda c, r: c["item"][0].pop("unitPrice"), "Claim.item[0].net"),
        (lambda c, r: c["item"][1].pop("servicedDate"), "Claim.item[1].servicedDate"),
        (lambda c, r: c["item"][0].update(productOrService={"text": "therapy"}), "Claim.item[0].productOrService"),
        (lambda c, r: r.pop("Practitioner/p1"), "Claim.careTeam[0].provider -> PractitionerRole.practitioner"),
        (lambda c, r: c.pop("identifier"), "Claim.identifier"),
    ],
)
def test_missing_data_raises_naming_the_fhir_path_without_patient_data(breaks: Any, path: str) -> None:
    claim, resources = other_emr()
    breaks(claim, resources)
    with pytest.raises(ClaimDataError) as caught:
        professional_claim(claim, resources)
    assert caught.value.path == path
    for phi in ("Park", "Rae", "Lee", "XJ-2231", "2015", "1980", "Elm"):
        assert phi not in str(caught.value)


def test_a_line_rendered_by_another_therapist_names_its_own_rendering_provider() -> None:
    w = week()
    w.charges["PT"][2]["performer"][0]["actor"] = {"reference": "Practitioner/ot"}
    flat = professional_claim(claim_for(w, "PT"), resources_of(w))
    assert flat.rendering_provider is not None and flat.rendering_provider.npi == NPI["pt"]
    renderings = [x.rendering.npi if x.rendering else None for x in flat.lines]
    assert renderings == [None, None, NPI["ot"], None, None, None, None, None]


def test_a_replacement_claim_names_the_payers_claim_number_and_a_cancelled_one_voids_it() -> None:
    w = week()
    claim = claim_for(w, "OT")
    assert professional_claim(claim, resources_of(w)).frequency_code == "1"
    replacing = claim_from_visits(
        w.encounters["OT"],
        w.charges["OT"],
        w.coverage,
        w.patient,
        billing_org=w.clinic,
        careplan=w.careplans["OT"],
        claim_number="W11-OT-R",
        created=CREATED,
        units_rule="cms-8-minute",
        conditions=w.conditions,
        fee_schedule=FEES,
        replaces="PAYER-123",
    )
    model_class("Claim").model_validate(replacing)
    flat = professional_claim(replacing, resources_of(w))
    assert (flat.frequency_code, flat.original_reference) == ("7", "PAYER-123")
    voided = professional_claim({**replacing, "status": "cancelled"}, resources_of(w))
    assert (voided.frequency_code, voided.original_reference) == ("8", "PAYER-123")
