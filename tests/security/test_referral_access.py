"""``/referrals`` and ``/certifications`` under the caller's access policy (issue #10, items 1, 2, 3, 8).

The same two tenants as the access matrix (:mod:`tests.security.access_matrix_world`): tenant ``a``
has two referring physicians (NPI_1, the tenant's referrer client, and NPI_2); tenant ``b``'s
referrer is NPI_1 again. Every entry point x role (admin, clinic, referrer, system, and a system
client whose scopes do not grant Task) x own/other referrer x own/other tenant, for reads and writes;
"not yours" and "not there" get the same answer (status and body).
"""

from __future__ import annotations

import base64
import itertools
import uuid
from typing import Any

import httpx
import pytest

from tests.referrals.test_intake_and_task import referral
from tests.security import access_matrix_world
from tests.security.access_matrix_world import (
    NPI_1,
    NPI_2,
    Caller,
    Tenant,
    World,
    _patient,
    absent,
    problem,
)
from tests.security.conftest import get_token, role_of

world = access_matrix_world.world  # the access matrix's two tenants, built again for this module

_numbers = itertools.count(1)
ROLES = ["admin", "clinic", "referrer", "system", "narrow"]  # narrow: system/Patient.rs only
SIDES = ["own", "other"]
SIGNATURE = {"signature": base64.b64encode(b"sig").decode()}


def caller(world: World, tenant: Tenant, role: str, npi: str = NPI_1) -> Caller:
    if role == "narrow":
        return Caller(world.api, get_token(world.api, tenant.clients["system"], "system/Patient.rs"), "narrow")
    if role == "referrer" and npi == NPI_2:
        assert tenant is world.a
        return Caller(world.api, world.second_token, "referrer2")
    return world.as_(tenant, role)


def number() -> str:
    return f"R-access-{next(_numbers)}"


def read(world: World, tenant: Tenant, reference: str) -> dict[str, Any]:
    response = world.as_(tenant, "admin").get(f"/fhir/{reference}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def same_answer(response: httpx.Response, unknown: httpx.Response, *ids: str) -> None:
    """``response`` (to something not the caller's) is the answer to an id that does not exist."""
    assert response.status_code == unknown.status_code == 404, (response.text, unknown.text)
    text = response.text
    for value in ids:
        text = text.replace(value, "ID")
    assert text == unknown.text.replace(UNKNOWN, "ID")


UNKNOWN = str(uuid.uuid4())


def sent_by(npi: str, value: str, patient: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = referral(value, patient=patient, **extra)
    body["referrer"] = {**body["referrer"], "npi": npi}
    return body


# ================================================================== item 1: referral numbers


def test_a_referral_number_of_another_referrer_is_not_taken_over(world: World) -> None:
    a = world.a
    theirs = read(world, a, f"ServiceRequest/{a.service_request}")
    condition = theirs["reasonReference"][0]["reference"]
    condition_before = read(world, a, condition)
    task_before = read(world, a, f"Task/{a.task}")
    second = caller(world, a, "referrer", NPI_2)

    taken = second.post("/referrals", json=sent_by(NPI_2, "R-clinic-a-main", _patient(f"MRN-t-{next(_numbers)}")))
    fresh = second.post("/referrals", json=sent_by(NPI_2, number(), _patient(f"MRN-t-{next(_numbers)}")))
    problem(taken, 201)
    problem(fresh, 201)
    view = taken.json()
    assert set(view) == set(fresh.json()) and view["status"] == fresh.json()["status"] == "requested"
    assert view["requester"] == role_of(NPI_2)
    assert view["task"] != f"Task/{a.task}" and view["service_request"] != f"ServiceRequest/{a.service_request}"
    assert view["patient"] != f"Patient/{a.patient}"

    # the first referral, its Task and its Condition are untouched; its author still reads it, the sender does not
    assert read(world, a, f"ServiceRequest/{a.service_request}")["meta"] == theirs["meta"]
    assert read(world, a, f"Task/{a.task}")["meta"] == task_before["meta"]
    assert read(world, a, condition)["meta"] == condition_before["meta"]
    problem(caller(world, a, "referrer").get(f"/fhir/ServiceRequest/{a.service_request}"), 200)
    assert second.get(f"/fhir/ServiceRequest/{a.service_request}").status_code == 404
    task = read(world, a, view["task"])
    assert task["focus"]["reference"] == view["service_request"] and task["requester"]["reference"] == role_of(NPI_2)

    # the sender's own referral with that number: sending it again updates it
    again = second.post("/referrals", json=sent_by(NPI_2, "R-clinic-a-main", _patient("MRN-x"), note="2x/week"))
    problem(again, 201)
    assert again.json()["task"] == view["task"] and again.json()["service_request"] == view["service_request"]
    assert read(world, a, view["service_request"])["note"] == [{"text": "2x/week"}]


# ================================================================== item 2: patients and coverages


def test_a_referral_naming_another_referrers_patient_changes_nothing_of_theirs(world: World) -> None:
    a = world.a
    patient_before = read(world, a, f"Patient/{a.patient}")
    coverage = read(world, a, f"ServiceRequest/{a.service_request}")["insurance"][0]["reference"]
    coverage_before = read(world, a, coverage)
    second = caller(world, a, "referrer", NPI_2)
    intruder = {**_patient("MRN-clinic-a-main"), "family": "Intruder", "birth_date": "1990-01-01"}

    response = second.post("/referrals", json=sent_by(NPI_2, number(), intruder))
    problem(response, 201)
    view = response.json()
    assert view["patient"] != f"Patient/{a.patient}"
    assert read(world, a, f"Patient/{a.patient}") == patient_before
    assert read(world, a, coverage) == coverage_before  # the same member id: the other patient's coverage stays
    assert second.get(f"/fhir/Patient/{a.patient}").status_code == 404
    assert second.get(f"/fhir/{view['patient']}").json()["name"][0]["family"] == "Intruder"
    sr = second.get(f"/fhir/{view['service_request']}").json()
    assert sr["insurance"][0]["reference"] != coverage
    assert read(world, a, sr["insurance"][0]["reference"])["beneficiary"]["reference"] == view["patient"]


def test_a_patient_matched_by_mrn_is_linked_not_overwritten(world: World) -> None:
    """The same patient (MRN, family name, birth date) referred by a second physician, and sent again by
    the first with other details: linked as it is, since a referring physician may not update a Patient."""
    a = world.a
    before = read(world, a, f"Patient/{a.patient}")
    same = {**_patient("MRN-clinic-a-main"), "given": ["Anna"], "phone": "+1 555 0100"}
    for sender in (caller(world, a, "referrer", NPI_2), caller(world, a, "referrer")):
        npi = NPI_2 if sender.who == "referrer2" else NPI_1
        value = number() if npi == NPI_2 else "R-clinic-a-main"
        response = sender.post("/referrals", json=sent_by(npi, value, {**same, "family": "RIVERA"}))
        problem(response, 201)
        assert response.json()["patient"] == f"Patient/{a.patient}"
        assert read(world, a, f"Patient/{a.patient}") == before
    # a clinic may update the patient (as a FHIR PUT would): then it is updated
    fresh = world.fresh_referral(a)
    clinic = caller(world, a, "clinic")
    body = sent_by(NPI_1, "R-clinic-update", {**_patient(fresh["mrn"]), "given": ["Anna"]})
    problem(clinic.post("/referrals", json=body), 201)
    assert read(world, a, fresh["patient"])["name"][0]["given"] == ["Anna"]


# ================================================================== item 3: scopes on listings


@pytest.mark.parametrize("url", ["/fhir/Task", "/referrals", "/certifications?include_done=true"])
@pytest.mark.parametrize("scope,status", [("system/Patient.rs", 403), ("system/Task.rs", 200),
                                          ("system/Task.r", 403)])
def test_listings_need_the_scopes_that_task_search_needs(world: World, url: str, scope: str, status: int) -> None:
    token = get_token(world.api, world.a.clients["system"], scope)
    response = Caller(world.api, token, scope).get(url)
    assert response.status_code == status, response.text


def test_a_referrer_token_without_task_scopes_lists_and_signs_nothing(world: World) -> None:
    token = get_token(world.api, world.a.clients["referrer"], "user/Patient.rs user/ServiceRequest.cruds")
    me = Caller(world.api, token, "narrow referrer")
    for url in ("/referrals", "/certifications"):
        problem(me.get(url), 403)
    problem(me.post(f"/certifications/{world.a.certification}/sign", json=SIGNATURE), 403)
    problem(me.post(f"/certifications/{UNKNOWN}/sign", json=SIGNATURE), 403)


# ================================================================== item 8: one answer for not yours, not there


def test_signing_another_referrers_certification_answers_as_an_unknown_id(world: World) -> None:
    a = world.a
    fresh = world.fresh_referral(a, "in-progress")  # NPI_1's
    second = caller(world, a, "referrer", NPI_2)
    # NPI_2 refers the same patient: NPI_1's certification Task is now visible to them, yet not theirs to sign
    problem(second.post("/referrals", json=sent_by(NPI_2, number(), _patient(fresh["mrn"]))), 201)
    assert second.get(f"/fhir/Task/{fresh['certification']}").status_code == 200
    unknown = second.post(f"/certifications/{UNKNOWN}/sign", json=SIGNATURE)
    problem(unknown, 404)
    for target in (fresh["certification"], fresh["id"], world.second["id"], a.observation):
        response = second.post(f"/certifications/{target}/sign", json=SIGNATURE)
        assert (response.status_code, response.content) == (unknown.status_code, unknown.content), target
    assert read(world, a, f"Task/{fresh['certification']}")["status"] == "requested"


# ================================================================== the matrix


matrix = pytest.mark.parametrize(
    "role,whose,side", list(itertools.product(ROLES, ["own-referrer", "other-referrer"], SIDES))
)


def _target(world: World, whose: str, stage: str, fresh: bool) -> dict[str, Any]:
    """A referral of tenant a: the tenant's referrer's (NPI_1) or the second one's (NPI_2); fresh when the
    call is to change it, else one that a refused call must leave as it is."""
    npi = NPI_1 if whose == "own-referrer" else NPI_2
    if fresh:
        return world.fresh_referral(world.a, stage, npi=npi)
    if npi == NPI_2:
        return world.second
    a = world.a
    return {"id": a.task, "certification": a.certification, "service_request": f"ServiceRequest/{a.service_request}",
            "patient": f"Patient/{a.patient}"}


def _unchanged(world: World, target: dict[str, Any], before: dict[str, Any]) -> None:
    for reference, meta in before.items():
        assert read(world, world.a, reference)["meta"] == meta, reference


def _snapshot(world: World, target: dict[str, Any]) -> dict[str, Any]:
    refs = [f"Task/{target['id']}", target["service_request"], target["patient"]]
    if target.get("certification"):
        refs.append(f"Task/{target['certification']}")
    return {r: read(world, world.a, r)["meta"] for r in refs}


@matrix
def test_listings(world: World, role: str, whose: str, side: str) -> None:
    me = world.a if side == "own" else world.b
    target = _target(world, whose, "in-progress", fresh=False)
    for url in ("/referrals", "/certifications?include_done=true"):
        response = caller(world, me, role).get(url)
        if role == "narrow":
            problem(response, 403)
            continue
        problem(response, 200)
        tasks = {item["task"] for item in response.json()}
        wanted = f"Task/{target['id']}" if url == "/referrals" else f"Task/{target['certification']}"
        if side == "other":
            absent(response, world.a)
            assert wanted not in tasks
        elif role == "referrer" and whose == "other-referrer":
            assert wanted not in tasks and target["id"] not in response.text
        else:
            assert wanted in tasks


@matrix
def test_sign(world: World, role: str, whose: str, side: str) -> None:
    me = world.a if side == "own" else world.b
    allowed = role == "admin" or (role == "referrer" and whose == "own-referrer")
    target = _target(world, whose, "in-progress", fresh=allowed and side == "own")
    before = _snapshot(world, target)
    response = caller(world, me, role).post(f"/certifications/{target['certification']}/sign", json=SIGNATURE)
    if role not in ("admin", "referrer"):
        problem(response, 403)
    elif allowed and side == "own":
        problem(response, 200)
        assert response.json()["status"] == "completed"
        return
    else:
        unknown = caller(world, me, role).post(f"/certifications/{UNKNOWN}/sign", json=SIGNATURE)
        assert (response.status_code, response.content) == (unknown.status_code, unknown.content) == (
            404, unknown.content)
    _unchanged(world, target, before)


@matrix
def test_status(world: World, role: str, whose: str, side: str) -> None:
    me = world.a if side == "own" else world.b
    allowed = role in ("admin", "clinic")
    target = _target(world, whose, "requested", fresh=allowed and side == "own")
    before = _snapshot(world, target)
    who = caller(world, me, role)
    response = who.post(f"/referrals/{target['id']}/status", json={"status": "received"})
    if not allowed:
        problem(response, 403)
    elif side == "own":
        problem(response, 200)
        assert response.json()["status"] == "received"
        return
    else:
        same_answer(response, who.post(f"/referrals/{UNKNOWN}/status", json={"status": "received"}), target["id"])
    _unchanged(world, target, before)


@matrix
def test_send_with_the_targets_referral_number(world: World, role: str, whose: str, side: str) -> None:
    """A referral with the number of an existing one: a clinic or an administrator of its tenant may
    update it (in its requester's name); anyone else gets a referral of their own, or a 403."""
    me = world.a if side == "own" else world.b
    target = world.fresh_referral(world.a, npi=NPI_1 if whose == "own-referrer" else NPI_2)
    sr = read(world, world.a, target["service_request"])
    before = _snapshot(world, target)
    npi = NPI_1 if role == "referrer" else (NPI_1 if whose == "own-referrer" else NPI_2)
    body = sent_by(npi, sr["identifier"][0]["value"], _patient(target["mrn"]), note="Changed")
    response = caller(world, me, role).post("/referrals", json=body)
    if role in ("system", "narrow"):
        problem(response, 403)
        _unchanged(world, target, before)
        return
    problem(response, 201)
    view = response.json()
    if side == "other":  # a referral of tenant b: tenant a's is another tenant's, untouched
        _unchanged(world, target, before)
        return
    if (role != "referrer" or whose == "own-referrer"):
        assert view["task"] == f"Task/{target['id']}"  # its own referral, sent again
        assert read(world, world.a, target["service_request"])["note"] == [{"text": "Changed"}]
        return
    assert view["task"] != f"Task/{target['id']}"
    _unchanged(world, target, before)
