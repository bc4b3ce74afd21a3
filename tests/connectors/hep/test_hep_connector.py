"""The hep connector against the sandbox HEP vendor (a real server on 127.0.0.1)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest

from connectors import registry
from connectors.base import AuthError, PermanentError, TransientError
from connectors.hep import ACCESS_LINK_REL, HepConnector
from mappings.hep.program import activity_external_id
from sandboxes.hep import SandboxHepVendor
from tests.connectors.hep.support import PATIENT, SR_EXERCISE, SR_SERVICE, bridge, bundle, care_plan, delivery, squat

SQUAT_ID = activity_external_id("cp-1", "https://therapy-hub.example/CodeSystem/hep-exercise|SQ-02")
BRIDGE_ID = activity_external_id("cp-1", "https://therapy-hub.example/CodeSystem/hep-exercise|BR-01")


@pytest.fixture
def api_key() -> str:
    return secrets.token_hex(12)


@pytest.fixture
def vendor(api_key: str) -> Iterator[SandboxHepVendor]:
    with SandboxHepVendor(api_key=api_key, webhook_secret=secrets.token_hex(16)) as server:
        yield server


@pytest.fixture
def connect(vendor: SandboxHepVendor, api_key: str) -> Iterator[Callable[..., HepConnector]]:
    made: list[HepConnector] = []

    def factory(**overrides: Any) -> HepConnector:
        config = {"base_url": overrides.pop("base_url", None) or vendor.url, "api_key": api_key,
                  "webhook_secret": vendor.webhook_secret, "timeout_seconds": 2.0, **overrides}
        connector = HepConnector(config, today=lambda: date(2026, 3, 10))
        made.append(connector)
        return connector

    yield factory
    for connector in made:
        connector.close()


def _program(vendor: SandboxHepVendor) -> dict[str, Any]:
    (program,) = vendor.book.programs.values()
    return program.view(vendor.url)


def test_registered_as_hep_with_the_context_it_needs() -> None:
    assert registry.get("hep") is HepConnector
    assert HepConnector.context == frozenset({"references", "previous"})


def test_push_creates_the_patient_and_the_program_with_every_field(vendor: SandboxHepVendor,
                                                                   connect: Callable[..., HepConnector]) -> None:
    result = connect().send(delivery(bundle(care_plan())))
    patient = next(iter(vendor.book.patients.values()))
    assert patient["external_id"] == "pat-7" and patient["first_name"] == "Ana" and patient["last_name"] == "Rivera"
    program = _program(vendor)
    assert result.remote_id == program["id"] and result.status == 201 and program["version"] == 1
    assert program["title"] == "Physical therapy plan of care" and program["starts_on"] == "2026-03-02"
    assert program["ends_on"] == "2026-04-13" and program["frequency"] == {"per_week": 7}
    by_id = {e["external_id"]: e for e in program["exercises"]}
    assert set(by_id) == {BRIDGE_ID, SQUAT_ID, "sr-hamstring"}
    assert {k: by_id[BRIDGE_ID][k] for k in ("code", "name", "sets", "reps", "hold_seconds", "per_day",
                                             "days_per_week", "media")} == {
        "code": "BR-01", "name": "Bridging", "sets": 3, "reps": 10, "hold_seconds": 5, "per_day": 2,
        "days_per_week": 5, "media": [{"kind": "video", "url": "https://media.example/bridge.mp4"}]}
    assert by_id[SQUAT_ID]["load"] == {"value": 5, "unit": "lb"}
    # the access link comes back for the hub to store, and stays out of the detail
    (link,) = result.links
    assert link.rel == ACCESS_LINK_REL and link.url == vendor.book.links[-1]["url"] and "/sso/" in link.url
    assert link.expires_at == vendor.book.links[-1]["expires_at"]
    assert link.url not in result.detail and "Rivera" not in result.detail and "pat-7" not in result.detail
    assert link.url not in repr(result)


def test_the_patient_is_created_once_and_a_retry_repeats_nothing(vendor: SandboxHepVendor,
                                                                  connect: Callable[..., HepConnector]) -> None:
    hep = connect()
    first = hep.send(delivery(bundle(care_plan())))
    again = hep.send(delivery(bundle(care_plan())))  # the same job retried
    other_job = hep.send(delivery(bundle(care_plan()), key="job-2"))  # the same plan sent by another job
    assert len(vendor.book.patients) == 1 and len(vendor.book.programs) == 1
    assert first.remote_id == again.remote_id == other_job.remote_id and _program(vendor)["version"] == 1
    replayed = [r for r in vendor.requests if r[0] == "POST" and r[1] == "/v1/patients"]
    assert [r[3] for r in replayed] == [201, 201, 200]  # the retry got the first answer again


def test_plan_change_updates_the_program_and_deletes_the_removed_exercise(
        vendor: SandboxHepVendor, connect: Callable[..., HepConnector]) -> None:
    hep = connect()
    first = bundle(care_plan())
    hep.send(delivery(first))
    changed = bundle(care_plan(bridge(sets=4), {"reference": {"reference": "ServiceRequest/sr-hamstring"}}))
    result = hep.send(delivery(changed, key="job-2", previous=first))
    program = _program(vendor)
    assert program["version"] == 2 and result.remote_id == program["id"]
    assert {e["external_id"] for e in program["exercises"]} == {BRIDGE_ID, "sr-hamstring"}
    assert next(e for e in program["exercises"] if e["external_id"] == BRIDGE_ID)["sets"] == 4
    deletes = [r for r in vendor.requests if r[0] == "DELETE"]
    assert len(deletes) == 1 and deletes[0][1].endswith(f"/exercises/{SQUAT_ID}") and deletes[0][3] == 204
    assert SQUAT_ID in next(iter(vendor.book.programs.values())).removed and "1 removed" in result.detail


def test_a_plan_without_exercises_sends_nothing(vendor: SandboxHepVendor, connect: Callable[..., HepConnector]) -> None:
    draft = delivery(bundle(care_plan(status="draft")))
    result = connect().send(draft)
    assert result.status is None and result.remote_id is None and "draft" in result.detail
    assert vendor.requests == [] and not connect().can_address(draft)
    assert connect().can_address(delivery(bundle(care_plan())))


def test_bad_api_key_is_an_auth_error(connect: Callable[..., HepConnector]) -> None:
    with pytest.raises(AuthError, match="401"):
        connect(api_key="wrong-key-123").send(delivery(bundle(care_plan())))


def test_vendor_validation_is_permanent_and_names_the_field(connect: Callable[..., HepConnector]) -> None:
    long = bridge()
    long["detail"]["description"] = "Keep the back straight. " * 100  # the vendor takes 2000 characters
    with pytest.raises(PermanentError) as caught:
        connect().send(delivery(bundle(care_plan(long, squat()))))
    assert not isinstance(caught.value, AuthError) and caught.value.status == 422
    assert "validation_error, field exercises[0].instructions" in str(caught.value)
    assert "Keep the back" not in str(caught.value)


def test_conflict_is_permanent(vendor: SandboxHepVendor, connect: Callable[..., HepConnector]) -> None:
    hep = connect()
    hep.send(delivery(bundle(care_plan())))
    someone_else = dict(PATIENT, id="pat-8")
    plan = care_plan()
    plan["subject"] = {"reference": "Patient/pat-8"}
    with pytest.raises(PermanentError, match="409 Conflict: conflict, field external_program_id"):
        hep.send(delivery(bundle(plan, someone_else, SR_SERVICE, SR_EXERCISE), key="job-9"))


def test_mapping_problems_are_permanent_and_name_the_path(connect: Callable[..., HepConnector]) -> None:
    plan = care_plan()
    del plan["subject"]
    with pytest.raises(PermanentError, match=r"CarePlan.subject: the Patient is not in the delivery"):
        connect().send(delivery(bundle(plan)))


@pytest.mark.parametrize(("controls", "status", "retry_after"), [
    ({"throttle_rate": 1.0, "retry_after": 7}, 429, 7.0),
    ({"fail_rate": 1.0, "retry_after": 3}, 503, 3.0),
    ({"status_override": 502}, 502, None),
])
def test_throttling_and_outages_are_transient(vendor: SandboxHepVendor, connect: Callable[..., HepConnector],
                                              controls: dict[str, Any], status: int,
                                              retry_after: float | None) -> None:
    vendor.configure(**controls)
    with pytest.raises(TransientError) as caught:
        connect().send(delivery(bundle(care_plan())))
    assert caught.value.status == status and caught.value.retry_after == retry_after


def test_a_slow_vendor_times_out_as_transient(vendor: SandboxHepVendor, connect: Callable[..., HepConnector]) -> None:
    vendor.configure(hang_rate=1.0, hang_seconds=2.0)
    with pytest.raises(TransientError, match="timed out"):
        connect(timeout_seconds=0.3).send(delivery(bundle(care_plan())))


def test_a_failure_midway_is_retried_without_duplicates(vendor: SandboxHepVendor,
                                                        connect: Callable[..., HepConnector]) -> None:
    hep = connect()
    first = bundle(care_plan())
    hep.send(delivery(first))
    changed = delivery(bundle(care_plan(bridge(), squat())), key="job-2", previous=first)
    vendor.configure(fail_keys={"job-2:access-link": 503})
    with pytest.raises(TransientError):
        hep.send(changed)
    vendor.configure(fail_keys={})
    result = hep.send(changed)  # the retry: the program and the delete are answered again, not redone
    assert _program(vendor)["version"] == 2  # one change, however many attempts
    assert len(vendor.book.patients) == 1 and result.links and "1 removed" in result.detail
    puts = [r for r in vendor.requests if r[0] == "PUT"]
    assert [r[3] for r in puts] == [201, 200, 200] and puts[1][2] == puts[2][2]  # same key: answered again


def test_unreachable_vendor_is_transient_and_health_says_so(vendor: SandboxHepVendor,
                                                            connect: Callable[..., HepConnector]) -> None:
    assert connect().health().ok
    url = vendor.url
    vendor.stop()
    hep = connect(base_url=url)  # a new connection: the old keep-alive one may outlive the listener
    assert not hep.health().ok
    with pytest.raises(TransientError):
        hep.send(delivery(bundle(care_plan())))


def test_config_refuses_short_secrets_without_showing_them() -> None:
    with pytest.raises(PermanentError) as caught:
        HepConnector({"base_url": "http://127.0.0.1:9", "api_key": "short", "webhook_secret": "tiny"})
    assert "api_key" in str(caught.value) and "webhook_secret" in str(caught.value)
    assert "short" not in str(caught.value).replace("too_short", "")


def test_program_body_sent_is_what_the_mapping_made(vendor: SandboxHepVendor,
                                                    connect: Callable[..., HepConnector]) -> None:
    hep = connect()
    push = hep.push_of(delivery(bundle(care_plan())))
    hep.send(delivery(bundle(care_plan())))
    program = _program(vendor)
    sent = [{k: v for k, v in e.items() if k != "id"} for e in program["exercises"]]
    assert push.program is not None and json.dumps(sent, sort_keys=True) == json.dumps(
        push.program["exercises"], sort_keys=True)
