"""HL7 v2 referrals (REF^I12 over MLLP) follow the overwrite rules of the /referrals intake: a
referral for another referring provider (PRD) does not take over a referral number already used by
another requester, nor overwrite a Patient of another requester's referral; an existing patient is
matched (linked) without being changed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hub.inbound.hl7v2 import handle_hl7v2
from hub.settings import Settings
from mappings.hl7v2 import AckResult, parse, read_ack
from mappings.referral.intake import NPI_SYSTEM, deterministic_id
from tests.inbound.test_hl7v2_inbound import SOURCE, TENANT, ref, search

FIRST_NPI, OTHER_NPI = "1234567893", "1245319599"
OTHER_PRD = f"PRD|RP^Referring Provider^HL70286|Okafor^Chidi^^^^Dr.||^^^Lakeside Spine|||{OTHER_NPI}^NPI"
PID = ("PID|1||MRN-1001^^^ORTHO_CLINIC^MR||{family}^{given}||{birth}|F|||12 Main St^^Springfield^IL^62701"
       "||{phone}^PRN^PH")


def send(settings: Settings, raw: bytes) -> AckResult:
    """What the MLLP listener does with a frame (the listener itself: tests/inbound/test_hl7v2_inbound.py)."""
    return read_ack(parse(handle_hl7v2(settings, TENANT, raw, SOURCE)))


def _role(npi: str) -> str:
    return f"PractitionerRole/{deterministic_id('PractitionerRole', NPI_SYSTEM, npi)}"


def _by_requester(client: TestClient) -> dict[str, dict]:
    return {sr["requester"]["reference"]: sr for sr in search(client, "ServiceRequest")}


def test_another_requesters_referral_number_is_not_taken_over(settings: Settings,
                                                              client: TestClient) -> None:
    assert send(settings, ref("MSG-A")).code == "AA"
    [original] = search(client, "ServiceRequest")
    # another referring provider's system sends a referral with the same number (RF1-6)
    assert send(settings, ref("MSG-B", PRD=OTHER_PRD)).code == "AA"
    referrals = _by_requester(client)
    assert set(referrals) == {_role(FIRST_NPI), _role(OTHER_NPI)}
    mine, theirs = referrals[_role(FIRST_NPI)], referrals[_role(OTHER_NPI)]
    assert mine["id"] == original["id"] and mine["meta"]["versionId"] == original["meta"]["versionId"]
    assert theirs["id"] != mine["id"]
    assert not set(r["reference"] for r in theirs["reasonReference"]) & set(r["reference"]
                                                                            for r in mine["reasonReference"])
    tasks = {t["focus"]["reference"]: t for t in search(client, "Task")
             if t.get("focus", {}).get("reference", "").startswith("ServiceRequest/")}
    assert {f"ServiceRequest/{mine['id']}", f"ServiceRequest/{theirs['id']}"} <= set(tasks)
    assert tasks[f"ServiceRequest/{mine['id']}"]["requester"]["reference"] == _role(FIRST_NPI)
    # the first requester's referral, sent again, still updates its own
    assert send(settings, ref("MSG-C")).code == "AA"
    assert _by_requester(client)[_role(FIRST_NPI)]["id"] == mine["id"]


def test_another_requesters_patient_is_not_overwritten(settings: Settings, client: TestClient) -> None:
    assert send(settings, ref("MSG-A")).code == "AA"
    [patient] = search(client, "Patient")
    # the same MRN, other demographics, from another referring provider: a patient record of its own
    other = PID.format(family="Intruder", given="Eve", birth="19700101", phone="555-0666")
    assert send(settings, ref("MSG-B", PRD=OTHER_PRD, PID=other)).code == "AA"
    kept = client.get(f"/fhir/Patient/{patient['id']}").json()
    assert kept["name"] == patient["name"] and kept["birthDate"] == "1980-02-14"
    assert kept["meta"]["versionId"] == patient["meta"]["versionId"]
    theirs = _by_requester(client)[_role(OTHER_NPI)]
    assert theirs["subject"]["reference"] != f"Patient/{patient['id']}"


def test_an_existing_patient_is_matched_without_being_changed(settings: Settings,
                                                              client: TestClient) -> None:
    assert send(settings, ref("MSG-A")).code == "AA"
    [patient] = search(client, "Patient")
    # the same person (family name and birth date) with another phone, from another referring provider
    same = PID.format(family="Gonçalves", given="Zoë", birth="19800214", phone="555-0777")
    assert send(settings, ref("MSG-B", PRD=OTHER_PRD, PID=same)).code == "AA"
    [linked] = search(client, "Patient")
    assert linked["id"] == patient["id"] and linked["meta"]["versionId"] == patient["meta"]["versionId"]
    assert "555-0777" not in str(linked["telecom"])
    assert _by_requester(client)[_role(OTHER_NPI)]["subject"]["reference"] == f"Patient/{patient['id']}"
