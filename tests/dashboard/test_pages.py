"""Dashboard pages against real data: a dead letter at a real sandbox partner seen and fixed from the
dashboard (retry), replay as a new linked message, replay of a connector's dead letters, the live
connector test, message filters and paging, referrals and obligations, tenant isolation, no PHI on
any page or in the logs, and the Content-Security-Policy of every page."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.dashboard.pages import CSP
from hub.security.clients import NewClient
from hub.settings import Settings
from hub.sync.delivery import deliver
from sandboxes.webhook import SandboxReceiver
from tests.dashboard.conftest import TENANT, add_route, add_webhook, signed_in, web_client
from tests.referrals.test_full_loop import PLAN
from tests.referrals.test_intake_and_task import referral
from tests.security.conftest import add_client

FHIR = {"Content-Type": "application/fhir+json"}
FAMILY, GIVEN, REFERRER = "Quetzalcoatlova", "Xochiquetzalia", "Wuthrichmeyer"  # found nowhere by chance
MRN, MEMBER = "MRN-DASH-9931", "9ZZ4TE5MK99"


@dataclass
class World:
    patient_message: str  # the message of the Patient (its payload carries the name)
    referral_task: str
    jobs: list[dict[str, Any]]  # the dead letters
    held: list[dict[str, Any]]  # the later jobs of the same patient, held behind a dead letter


def _pending(api: TestClient) -> list[dict[str, Any]]:
    return sorted(api.get("/admin/api/jobs", params={"status": "pending", "limit": 500}).json()["items"],
                  key=lambda j: j["id"])


def _deliver_all(settings: Settings, api: TestClient) -> list[dict[str, Any]]:
    jobs = _pending(api)
    for job in jobs:
        deliver(settings, job["id"])  # dead, or held behind an earlier dead letter of the patient
    return [api.get(f"/admin/api/jobs/{j['id']}").json() for j in jobs]


@pytest.fixture
def world(auth_settings: Settings, api: TestClient, receiver: SandboxReceiver) -> World:
    """A connector to the sandbox that refuses everything (400: dead at once), routes for patients and
    referrals, a patient and a referral with a plan of care (obligations), all dead or held behind a
    dead letter of their patient."""
    add_webhook(auth_settings, "emr", receiver.url + "/webhook")
    add_route(auth_settings, "patients", "Patient", "emr")
    add_route(auth_settings, "referrals", "ServiceRequest", "emr")
    patient = {"resourceType": "Patient", "name": [{"family": FAMILY, "given": [GIVEN]}],
               "identifier": [{"system": "urn:mrn", "value": MRN}], "birthDate": "1944-02-29"}
    created = api.post("/fhir/Patient", content=json.dumps(patient), headers={**FHIR, "X-Correlation-ID": "corr-p1"})
    assert created.status_code == 201, created.text
    [patient_job] = _pending(api)
    body = referral("R-DASH-1", patient={"identifier": {"system": "urn:mrn", "value": MRN}, "family": FAMILY,
                                        "given": [GIVEN], "birth_date": "1944-02-29", "gender": "female"},
                    referrer={"npi": "1234567893", "family": REFERRER, "given": ["Ottilie"]},
                    coverage={"payer": "Medicare Part B", "member_id": MEMBER})
    view = api.post("/referrals", json=body).json()
    task_id = view["task"].split("/")[1]
    assert api.post(f"/referrals/{task_id}/status", json={"status": "accepted"}).status_code == 200
    assert api.post(f"/referrals/{task_id}/plan-of-care", json=PLAN).status_code == 201
    assert FAMILY in api.get("/fhir/Patient", params={"identifier": f"urn:mrn|{MRN}"}).text  # the data is there
    receiver.configure(status_override=400)
    jobs = _deliver_all(auth_settings, api)
    dead = [j for j in jobs if j["status"] == "dead"]
    held = [j for j in jobs if j["status"] != "dead"]
    assert dead and all(j["status"] == "pending" and j["held_by"] for j in held)
    receiver.configure(status_override=None)
    return World(patient_message=patient_job["message_id"], referral_task=view["task"], jobs=dead, held=held)


def _follow(web: TestClient, response) -> str:
    assert response.status_code == 303, response.text
    page = web.get(response.headers["location"])
    assert page.status_code == 200, page.text
    return page.text


def test_a_dead_letter_is_seen_and_fixed_from_the_dashboard(
    auth_settings: Settings, api: TestClient, web: TestClient, admin: NewClient, receiver: SandboxReceiver
) -> None:
    add_webhook(auth_settings, "emr", receiver.url + "/webhook", max_attempts=2)
    add_route(auth_settings, "referrals", "ServiceRequest", "emr")
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
          "subject": {"reference": "Patient/p1"}}
    assert api.post("/fhir/ServiceRequest", content=json.dumps(sr), headers=FHIR).status_code == 201
    [job] = _pending(api)
    receiver.configure(status_override=503)  # the partner is down: a retry, then a dead letter
    assert deliver(auth_settings, job["id"]) is not None
    assert api.post(f"/admin/api/jobs/{job['id']}/retry").status_code == 200  # due now, not after the backoff
    assert deliver(auth_settings, job["id"]) is None
    assert api.get(f"/admin/api/jobs/{job['id']}").json()["status"] == "dead"

    csrf = signed_in(web, admin)
    overview = web.get("/dashboard").text
    assert re.search(r'status=dead&amp;since=[\d-]+T[\d%A]+">dead</a></th>\s*<td class="num bad">1</td>', overview)
    dead = web.get("/dashboard/dead-letters").text
    assert f"/dashboard/messages/{job['message_id']}" in dead and "503" in dead
    assert 'action="/dashboard/dead-letters/emr/replay"' in dead
    page = web.get(f"/dashboard/messages/{job['message_id']}").text
    assert "s-dead" in page and f'action="/dashboard/jobs/{job["id"]}/retry"' in page
    assert "dead-lettered" in page and "failed" in page  # the events timeline

    receiver.configure(status_override=None)  # the partner is back
    text = _follow(web, web.post(f"/dashboard/jobs/{job['id']}/retry", data={"csrf": csrf}, follow_redirects=False))
    assert f"Delivery job {job['id']} will be tried again now." in text and "retried" in text
    assert deliver(auth_settings, job["id"]) is None
    page = web.get(f"/dashboard/messages/{job['message_id']}").text
    assert '<span class="status s-delivered">delivered</span>' in page
    assert f'action="/dashboard/jobs/{job["id"]}/retry"' not in page  # nothing to retry any more
    assert len(receiver.deliveries) == 1
    again = web.post(f"/dashboard/jobs/{job['id']}/retry", data={"csrf": csrf}, follow_redirects=False)
    assert "only dead or retrying jobs can be retried" in _follow(web, again)
    assert web.get("/dashboard/dead-letters").text.count("s-dead") == 0


def test_replay_creates_a_new_message_linked_to_the_original(
    auth_settings: Settings, api: TestClient, web: TestClient, admin: NewClient, world: World,
    receiver: SandboxReceiver,
) -> None:
    csrf = signed_in(web, admin)
    original = world.patient_message
    response = web.post(f"/dashboard/messages/{original}/replay", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303
    new_id = response.headers["location"].split("/dashboard/messages/")[1].split("?")[0]
    assert new_id != original
    text = _follow(web, response)
    assert f"Replayed message {original} as this new message." in text
    assert f'href="/dashboard/messages/{original}"' in text  # "Replay of"
    assert api.get(f"/admin/api/messages/{new_id}").json()["replay_of"] == original
    [job] = [j for j in _pending(api) if j["message_id"] == new_id]  # (the others: woken, held behind it)
    assert deliver(auth_settings, job["id"]) is None
    assert "s-delivered" in web.get(f"/dashboard/messages/{new_id}").text
    assert "s-dead" in web.get(f"/dashboard/messages/{original}").text  # the original keeps its history


def test_replay_all_dead_letters_of_a_connector(
    api: TestClient, web: TestClient, admin: NewClient, world: World
) -> None:
    csrf = signed_in(web, admin)
    messages = {j["message_id"] for j in world.jobs}
    text = _follow(web, web.post("/dashboard/dead-letters/emr/replay", data={"csrf": csrf}, follow_redirects=False))
    assert f"Replayed {len(messages)} message(s) with dead letters at emr." in text
    assert {j["message_id"] for j in _pending(api)}.isdisjoint(messages)
    assert len(_pending(api)) == len(messages) + len(world.held)  # the replays, and the jobs they woke
    text = _follow(web, web.post("/dashboard/dead-letters/emr/replay", data={"csrf": csrf}, follow_redirects=False))
    assert "Nothing to replay at emr" in text
    missing = web.post("/dashboard/dead-letters/nope/replay", data={"csrf": csrf}, follow_redirects=False)
    assert missing.status_code == 404
    invalid = web.post("/dashboard/jobs/not-a-number/retry", data={"csrf": csrf}, follow_redirects=False)
    assert invalid.status_code == 400 and invalid.headers["content-type"].startswith("text/html")


def test_a_dead_letter_is_discarded_from_its_message_page_with_a_reason(
    auth_settings: Settings, api: TestClient, web: TestClient, admin: NewClient, world: World
) -> None:
    csrf = signed_in(web, admin)
    dead = next(d for d in world.jobs if any(h["held_by"] == d["id"] for h in world.held))
    behind = [j for j in world.held if j["held_by"] == dead["id"]]  # later jobs of the patient wait behind it
    page = web.get(f"/dashboard/messages/{dead['message_id']}").text
    assert f'action="/dashboard/jobs/{dead["id"]}/discard"' in page and 'name="reason" required' in page
    url = f"/dashboard/jobs/{dead['id']}/discard"
    assert web.post(url, data={"reason": "retired"}, follow_redirects=False).status_code == 403  # no CSRF token
    blank = _follow(web, web.post(url, data={"csrf": csrf, "reason": " "}, follow_redirects=False))
    assert 'class="notice error"' in blank and "A reason is required" in blank

    text = _follow(web, web.post(url, data={"csrf": csrf, "reason": "partner retired"}, follow_redirects=False))
    assert f"Dead letter {dead['id']} is discarded: it will not be delivered." in text
    assert f"discarded by {admin.client_id}: partner retired" in text  # the events timeline: who and why
    assert f'action="/dashboard/jobs/{dead["id"]}/discard"' not in text and "discarded (see events)" in text
    assert all(api.get(f"/admin/api/jobs/{j['id']}").json()["held_by"] is None for j in behind)
    assert f"/dashboard/messages/{dead['message_id']}" not in web.get("/dashboard/dead-letters").text
    again = _follow(web, web.post(url, data={"csrf": csrf, "reason": "x"}, follow_redirects=False))
    assert "discarded already" in again


def test_the_connector_test_button_runs_a_live_check(
    auth_settings: Settings, web: TestClient, admin: NewClient, receiver: SandboxReceiver
) -> None:
    add_webhook(auth_settings, "emr", receiver.url + "/webhook")
    csrf = signed_in(web, admin)
    page = web.get("/dashboard/connectors").text
    assert 'action="/dashboard/connectors/emr/test"' in page and "<td>webhook</td>" in page
    text = _follow(web, web.post("/dashboard/connectors/emr/test", data={"csrf": csrf}, follow_redirects=False))
    assert re.search(r'class="notice ok"[^>]*>Test of emr: OK in [\d.]+ ms — webhook (GET|HEAD) ', text)
    receiver.configure(status_override=503)
    text = _follow(web, web.post("/dashboard/connectors/emr/test", data={"csrf": csrf}, follow_redirects=False))
    assert 'class="notice error"' in text and "Test of emr: FAILED" in text and "503" in text


def test_message_filters_and_paging(
    auth_settings: Settings, api: TestClient, web: TestClient, admin: NewClient, world: World
) -> None:
    signed_in(web, admin)
    everything = web.get("/dashboard/messages").text
    total = len(set(re.findall(r'<a href="/dashboard/messages/([0-9a-f-]{36})">', everything)))
    assert total >= 3 and f"1–{total} of {total}, newest first" in everything

    def ids(**params: str) -> set[str]:
        page = web.get("/dashboard/messages", params=params)
        assert page.status_code == 200, page.text
        return set(re.findall(r'<a href="/dashboard/messages/([0-9a-f-]{36})"><code>', page.text))

    patients = ids(resource_type="Patient")  # the patient, and its update by the referral's intake
    assert world.patient_message in patients and patients < ids()
    assert ids(correlation_id="corr-p1") == {world.patient_message}
    held = {j["message_id"] for j in world.held}
    assert ids(status="dead") | held == ids() and len(ids()) == total and ids(status="delivered") == set()
    assert len(ids(connector="emr")) == total
    assert ids(since="2000-01-01T00:00", until="2000-01-02T00:00") == set()
    assert len(ids(since="2000-01-01T00:00:00Z")) == total
    first, second = ids(limit="1"), ids(limit="1", offset="1")
    assert len(first) == len(second) == 1 and first != second
    paged = web.get("/dashboard/messages", params={"limit": "1", "offset": "1", "connector": "emr"}).text
    assert 'href="/dashboard/messages?connector=emr&amp;limit=1&amp;offset=0" rel="prev"' in paged
    assert 'href="/dashboard/messages?connector=emr&amp;limit=1&amp;offset=2" rel="next"' in paged
    bad = web.get("/dashboard/messages", params={"since": "yesterday"})
    assert bad.status_code == 400 and "since must be a date and time" in bad.text
    assert web.get("/dashboard/messages", params={"status": "lost"}).status_code == 400
    assert web.get("/dashboard/messages", params={"limit": "abc", "offset": "-3"}).status_code == 200


def test_referrals_and_obligations(web: TestClient, admin: NewClient, world: World) -> None:
    signed_in(web, admin)
    page = web.get("/dashboard/referrals").text
    assert f"<code>{world.referral_task}</code>" in page and "in-progress" in page
    assert "PractitionerRole/" in page and "certification" in page  # references and kinds, no names
    assert world.referral_task not in web.get("/dashboard/referrals", params={"status": "completed"}).text
    overview = web.get("/dashboard").text
    assert re.search(r'status=in-progress">in-progress</a></th><td class="num">1</td>', overview)
    assert re.search(r"due \(open\)</th><td class=\"num\">\d+</td>", overview)


@pytest.mark.parametrize("scopes", ["system/Patient.rs", "system/Task.r system/ServiceRequest.rs",
                                    "system/Task.rs system/Patient.rs"])
def test_referral_views_need_the_task_search_scope(auth_settings: Settings, web: TestClient, world: World,
                                                   scopes: str) -> None:
    """The same rule as GET /referrals and /fhir/Task: without Task (and ServiceRequest) search,
    no referral or obligation is shown: the referrals page is 403 with the reason, the overview
    explains the empty cards."""
    narrow = add_client(auth_settings, TENANT, "admin", scopes=scopes)
    signed_in(web, narrow)
    page = web.get("/dashboard/referrals")
    assert page.status_code == 403 and "do not allow searching Task" in page.text, page.text
    assert world.referral_task not in page.text and "PractitionerRole/" not in page.text
    overview = web.get("/dashboard")
    assert overview.status_code == 200
    assert "do not allow searching Task" in overview.text and "in-progress" not in overview.text
    assert "due (open)" not in overview.text


def test_another_tenants_data_is_not_found(
    auth_settings: Settings, web: TestClient, world: World
) -> None:
    stranger = add_client(auth_settings, "other", "admin")
    csrf = signed_in(web, stranger)
    message, job = world.patient_message, world.jobs[0]["id"]
    assert web.get(f"/dashboard/messages/{message}").status_code == 404
    for action in (f"/dashboard/messages/{message}/replay", f"/dashboard/jobs/{job}/retry",
                   "/dashboard/dead-letters/emr/replay", "/dashboard/connectors/emr/test"):
        assert web.post(action, data={"csrf": csrf}, follow_redirects=False).status_code == 404, action
    for path in ("/dashboard", "/dashboard/messages", "/dashboard/dead-letters", "/dashboard/connectors",
                 "/dashboard/referrals"):
        page = web.get(path).text
        assert message not in page and "emr" not in page and world.referral_task not in page, path


def _pages(web: TestClient, world: World) -> list[str]:
    messages = set(re.findall(r'/dashboard/messages/([0-9a-f-]{36})', web.get("/dashboard/messages").text))
    return ["/dashboard", "/dashboard/messages", "/dashboard/messages?status=dead&limit=1",
            "/dashboard/dead-letters", "/dashboard/connectors", "/dashboard/referrals",
            "/dashboard/referrals?include_done=1", "/dashboard/messages/not-a-message",
            *(f"/dashboard/messages/{m}" for m in messages)]


def test_no_patient_data_on_any_page_or_in_the_logs(
    web: TestClient, admin: NewClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    csrf = signed_in(web, admin)
    web.post(f"/dashboard/messages/{world.patient_message}/replay", data={"csrf": csrf})
    web.post("/dashboard/dead-letters/emr/replay", data={"csrf": csrf})
    pages = _pages(web, world)
    assert len(pages) > 10
    for path in pages:
        html = web.get(path).text
        for phi in (FAMILY, GIVEN, REFERRER, MRN, MEMBER, "1944-02-29"):
            assert phi not in html, (path, phi)
    logged = caplog.text + " ".join(str(r.args) + str(r.__dict__) for r in caplog.records)
    for phi in (FAMILY, GIVEN, REFERRER, MRN, MEMBER):
        assert phi not in logged


def test_every_page_carries_the_csp_and_no_script(web: TestClient, admin: NewClient, world: World) -> None:
    pages = ["/dashboard/signin"]
    signed_in(web, admin)
    pages += _pages(web, world)
    for path in pages:
        response = web.get(path)
        assert response.headers["content-type"].startswith("text/html"), path
        assert response.headers["content-security-policy"] == CSP
        assert "script-src" not in CSP and "unsafe-inline" not in CSP and "default-src 'none'" in CSP
        assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"
        html = response.text.lower()
        assert "<script" not in html and " style=" not in html and "<style" not in html, path
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), path  # no event handler attributes
        assert "javascript:" not in html, path
        assert '<link rel="stylesheet" href="/dashboard/static/dashboard.css">' in response.text
    css = web.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_the_dashboard_is_not_part_of_the_api_schema(auth_settings: Settings) -> None:
    with web_client(auth_settings.model_copy(update={"auth_disabled": True})) as api:
        paths = api.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]
