"""``hub demo``: the whole referral loop on embedded defaults, against the sandbox partners.

Starts the sandbox partners (the referring physician's system as a webhook receiver, the clinic's
EMR as a FHIR server with SMART Backend Services, a legacy system as an HL7 v2 MLLP peer, the
referrer's fax vendor and Direct HISP, a clearinghouse over SFTP), the hub (API + embedded worker,
SQLite, no services, and ``hub direct`` for the HISP's replies), wires connectors and routes, and
walks one referral through intake (with an eligibility check), acceptance, plan of care (also sent
for signature by fax and by Direct, the signed pages coming back on both: :mod:`hub.demo_channels`),
signature, visits, the progress report and discharge, then two more referrals whose certifications
are signed only on paper, one faxed back as a scanned image-only page and one sent back by Direct,
completed by the document intake (:mod:`hub.demo_paper`), then bills the first referral's visits
and shows the payment (:mod:`hub.demo_billing`), printing each step. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from hub import processes

if TYPE_CHECKING:
    from hub.demo_billing import DemoBilling, Intake

SECRET = "demo-referrer-webhook-secret"
#: the demo's patient (PHI as far as the hub can tell: it must never reach a log)
PATIENT = {"identifier": {"system": "urn:oid:2.16.840.1.113883.3.9999.2", "value": "MRN-DEMO-1"},
           "family": "Rivera", "given": ["Ana"], "birth_date": "1961-04-12", "gender": "female"}
COVERAGE = {"payer": "Medicare Part B", "member_id": "1EG4TE5MK73"}
#: the hub gets this long to stop its worker and itself before its process group is killed
SERVER_STOP_SECONDS = 30
FHIR = {"Content-Type": "application/fhir+json"}


class DemoError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise DemoError(f"{what} failed: HTTP {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


def run_demo(data_dir: Path, port: int | None, keep_running: bool, echo: Callable[[str], None]) -> int:
    # deferred: the demo loads the sandbox partners only when it runs
    from hub.demo_billing import BillingError, DemoBilling
    from hub.demo_channels import FAX_WEBHOOK_SECRET, REFERRER_FAX, ChannelError, Channels
    from hub.demo_paper import paper_loops
    from sandboxes.clearinghouse import SandboxClearinghouse
    from sandboxes.emr import SandboxEmr
    from sandboxes.fax import SandboxFaxServer
    from sandboxes.hisp import PHYSICIAN_ADDRESS, SandboxHisp
    from sandboxes.mllp import SandboxPeer
    from sandboxes.scans import scanned_pdf
    from sandboxes.webhook import SandboxReceiver

    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    port = port or _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    # everything of the demo in data_dir itself: store, log, embedded broker, beat schedule
    env.update({"HUB_DATABASE_URL": f"sqlite:///{(data_dir / 'hub.db').resolve()}",
                "HUB_VAR_DIR": str(data_dir.resolve()),
                "HUB_SWEEP_INTERVAL_SECONDS": "2", "HUB_REQUEUE_GRACE_SECONDS": "5"})
    total = 12

    def step(n: int, text: str) -> None:
        echo(f"[{n:>2}/{total}] {text}")

    credentials = _clients(env["HUB_DATABASE_URL"])
    key_pem, public_pem = _key_pair()
    with SandboxReceiver(secret=SECRET) as referrer_system, SandboxEmr() as emr, SandboxPeer() as legacy, \
            SandboxFaxServer(api_key="demo-fax-key", api_secret="demo-fax-secret",
                             webhook_secret=FAX_WEBHOOK_SECRET) as fax, SandboxHisp() as hisp, \
            SandboxClearinghouse(remit="manual") as house:
        emr.register_client("therapy-hub", public_pem, "system/*.cruds", kid="demo-key")
        step(1, f"sandbox partners up: referrer's system {referrer_system.url}, clinic EMR {emr.url} "
                f"(SMART Backend Services), legacy scheduling system MLLP {legacy.address}, fax vendor {fax.url}, "
                f"HISP {hisp.url}, clearinghouse SFTP 127.0.0.1:{house.sftp_port}")
        log = open(data_dir / "hub.log", "wb")  # noqa: SIM115
        server = processes.spawn(processes.hub_command("serve", "--port", str(port)), cwd=data_dir, env=env,
                                 stdout=log, stderr=subprocess.STDOUT)
        channels = Channels(fax, hisp, base, env, data_dir)
        try:
            with httpx.Client(base_url=base, timeout=30) as client, \
                    httpx.Client(base_url=base, timeout=30) as clinic, \
                    httpx.Client(base_url=base, timeout=30) as physician:
                def ready() -> bool:
                    try:
                        return client.get("/readyz").status_code == 200
                    except httpx.TransportError:
                        if server.poll() is not None:
                            raise DemoError(f"the hub stopped; see {data_dir / 'hub.log'}") from None
                        return False

                _wait(ready, 90, "the hub to start")
                for http, (client_id, secret) in zip((client, clinic, physician), credentials, strict=True):
                    token = _check(http.post("/auth/token", data={"grant_type": "client_credentials"},
                                             auth=(client_id, secret)), f"a token for {client_id}")
                    http.headers["Authorization"] = f"Bearer {token['access_token']}"
                step(2, f"hub up at {base} (SQLite store and embedded worker in {data_dir}); signed in as "
                        "the administrator, the clinic and Dr. Okafor (OAuth2 client credentials)")
                _wire(client, referrer_system.url, emr.url, key_pem, legacy.port)
                channels.wire(client)
                billing = DemoBilling(house, client, clinic, wait=_wait, echo=lambda line: echo(f"        {line}"))
                billing.wire()
                direct_port = channels.listen(log)
                step(3, "connectors and routes: events to the referrer's system (webhook, signed), "
                        "referrals and plans to the clinic EMR (FHIR, SMART), referral status, visits and plan "
                        "summaries to the legacy system (HL7 v2 RRI^I12, SIU^S12, MDM^T02 over MLLP), plans for "
                        f"signature to the referrer by fax and by Direct (hub direct on 127.0.0.1:{direct_port}), "
                        "claims and eligibility inquiries to the clearinghouse (X12 over SFTP, host key pinned)")
                contacts = {"direct_address": PHYSICIAN_ADDRESS, "fax": REFERRER_FAX}
                intake, visits = _loop(client, clinic, physician, emr, step, contacts=contacts, billing=billing)
                for line in channels.signed_back(client, _wait):
                    echo(f"        {line}")
                paper_loops(client, clinic, physician, channels, patient=PATIENT, coverage=COVERAGE,
                            contacts=contacts, wait=_wait, echo=lambda line: echo(f"        {line}"),
                            scan=scanned_pdf)
                step(10, f"billing the {len(visits)} physical therapy visits to Medicare Part B through the "
                         "clearinghouse (X12 005010: 837P out; 999, 277CA, 835 back)")
                billing.bill(intake, visits)
                step(11, "waiting for every delivery ...")
                _wait(lambda: _open_jobs(client) == 0, 120, "the deliveries")
                jobs = _check(client.get("/admin/api/jobs", params={"limit": 500}), "jobs")["items"]
                dead = [j for j in jobs if j["status"] == "dead"]
                if dead:
                    raise DemoError(f"{len(dead)} deliveries failed: {dead[0]['last_error']}")
                mirrored = sum(len(emr.resources(t)) for t in ("Patient", "ServiceRequest", "Task", "CarePlan"))
                step(12, f"done: {len(jobs)} deliveries, {len(referrer_system.deliveries)} notifications at the "
                         f"referrer's system (all signatures valid: "
                         f"{all(d.signature_valid for d in referrer_system.deliveries)}), "
                         f"{mirrored} resources in the clinic EMR, {len(legacy.messages)} HL7 v2 messages "
                         f"acknowledged by the legacy system ({_kinds(legacy.messages)})")
                echo("")
                if not keep_running:
                    _stopped_hints(data_dir, echo)
                    return 0
                admin_id, admin_secret = credentials[0]
                echo("Where to look (every API but /fhir/metadata needs a bearer token):")
                echo(f"  sign in            curl -s -u {admin_id}:{admin_secret} -d grant_type=client_credentials "
                     f"{base}/auth/token")
                echo(f"  dashboard          {base}/dashboard   (sign in as {admin_id} with the secret above)")
                echo(f"  referrals          {base}/referrals")
                echo(f"  certifications     {base}/certifications?include_done=true")
                echo(f"  FHIR API           {base}/fhir/Task?code=fulfill   (metadata: {base}/fhir/metadata)")
                echo(f"  messages & events  {base}/admin/api/messages")
                echo(f"  connectors health  {base}/admin/api/connectors")
                echo(f"  billing claims     {base}/admin/api/billing/claims   "
                     f"(analytics: {base}/admin/api/billing/analytics)")
                echo(f"  metrics            {base}/metrics   (Prometheus text; an administrator's token)")
                echo(f"  API docs           {base}/docs")
                echo(f"  from a shell       HUB_DATABASE_URL=sqlite:///{(data_dir / 'hub.db').resolve()} "
                     f"{hub_command()} jobs")
            if keep_running:
                echo("")
                echo("The hub and the sandbox partners keep running; press Ctrl-C to stop.")
                try:
                    while server.poll() is None:
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    pass
        except (ChannelError, BillingError) as exc:
            raise DemoError(str(exc)) from None
        finally:
            channels.stop()
            # the hub stops its worker first (bounded), then whatever is left of its group goes
            processes.stop(server, timeout=SERVER_STOP_SECONDS)
            log.close()
    return 0


def hub_command() -> str:
    """How to call ``hub`` from here: the console script next to this interpreter (relative to the
    current directory when it is below it, e.g. ``.venv/bin/hub``), else ``python -m hub.cli``."""
    script = Path(sys.executable).with_name("hub")
    if not script.exists():
        return f"{sys.executable} -m hub.cli"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _stopped_hints(data_dir: Path, echo: Callable[[str], None]) -> None:
    store = f"sqlite:///{(data_dir / 'hub.db').resolve()}"
    hub = hub_command()
    echo(f"The demo's hub and sandbox partners have stopped (--exit); its store and log are in {data_dir}.")
    echo(f"  what was delivered   HUB_DATABASE_URL={store} {hub} jobs")
    echo(f"  run it and keep it   {hub} demo   (the hub, its dashboard and the sandboxes stay up; Ctrl-C stops)")


def _kinds(messages: list[Any]) -> str:
    counts: dict[str, int] = {}
    for message in messages:
        counts[message.message_type] = counts.get(message.message_type, 0) + 1
    return ", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items()))


def _open_jobs(client: httpx.Client) -> int:
    jobs = client.get("/admin/api/jobs", params={"limit": 500}).json()["items"]
    return sum(1 for j in jobs if j["status"] in ("pending", "running", "retrying"))


def _key_pair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def _wire(client: httpx.Client, referrer_url: str, emr_url: str, key_pem: str, mllp_port: int) -> None:
    _check(client.put("/admin/api/connectors/referrer-system", json={
        "name": "referrer-system", "kind": "webhook", "config": {"url": referrer_url + "/events", "secret": SECRET},
        "max_attempts": 5, "backoff_base_seconds": 0.5}), "the referrer connector")
    _check(client.put("/admin/api/connectors/clinic-emr", json={
        "name": "clinic-emr", "kind": "fhir_emr",
        "config": {"base_url": emr_url, "resource_types": ["Observation"], "client_id": "therapy-hub",
                   "key_id": "demo-key", "private_key": key_pem, "algorithm": "RS384",
                   "scope": "system/*.cruds"},
        "max_attempts": 5, "backoff_base_seconds": 0.5}), "the EMR connector")
    _check(client.put("/admin/api/connectors/legacy-scheduling", json={
        "name": "legacy-scheduling", "kind": "hl7v2",
        "config": {"host": "127.0.0.1", "port": mllp_port, "task_message": "RRI^I12",
                   "receiving_application": "SANDBOX_EMR"},
        "max_attempts": 5, "backoff_base_seconds": 0.5}), "the HL7 v2 connector")
    for name, resource_type, connector in (
        ("tell-referrer-tasks", "Task", "referrer-system"),
        ("tell-referrer-messages", "Communication", "referrer-system"),
        ("plan-pdf-to-referrer", "DocumentReference", "referrer-system"),
        ("referrals-to-emr", "ServiceRequest", "clinic-emr"),
        ("patients-to-emr", "Patient", "clinic-emr"),
        ("tasks-to-emr", "Task", "clinic-emr"),
        ("plans-to-emr", "CarePlan", "clinic-emr"),
    ):
        _check(client.post("/admin/api/routes", json={"name": name, "resource_type": resource_type,
                                                      "connector": connector}), f"route {name}")
    _check(client.post("/admin/api/routes", json={
        "name": "referral-status-to-legacy", "resource_type": "Task", "connector": "legacy-scheduling",
        "filter": "code.coding.where(code='fulfill').exists()"}), "route referral-status-to-legacy")
    _check(client.post("/admin/api/routes", json={
        "name": "visits-to-legacy", "resource_type": "Appointment", "connector": "legacy-scheduling"}),
        "route visits-to-legacy")
    _check(client.post("/admin/api/routes", json={
        "name": "plan-summary-to-legacy", "resource_type": "DocumentReference", "connector": "legacy-scheduling",
        "filter": "type.coding.where(system='http://loinc.org' and code='18776-5').exists()"}),
        "route plan-summary-to-legacy")


def _clients(database_url: str) -> list[tuple[str, str]]:
    """Create the demo's store and its three clients: administrator, clinic, referring physician."""
    # deferred: the demo loads the app, the store and the mappings only when it builds its store
    from hub.app import ensure_default_tenant
    from hub.security.clients import ClientService
    from hub.settings import Settings
    from hub.store.migrate import upgrade
    from hub.unit_of_work import unit_of_work
    from mappings.fhir.ids import deterministic_id
    from mappings.referral.intake import NPI_SYSTEM

    settings = Settings(database_url=database_url)
    upgrade(database_url)
    ensure_default_tenant(settings)
    role = f"PractitionerRole/{deterministic_id('PractitionerRole', NPI_SYSTEM, '1234567893')}"
    out = []
    with unit_of_work(settings) as session:
        service = ClientService(session, settings=settings, now=datetime.now(UTC).replace(tzinfo=None))
        for client_id, kind, fhir_user in (("demo-admin", "admin", None), ("demo-clinic", "clinic", None),
                                           ("demo-dr-okafor", "referrer", role)):
            new = service.add(tenant=settings.default_tenant, name=client_id, role=kind, client_id=client_id,
                              fhir_user=fhir_user)
            out.append((new.client_id, new.client_secret or ""))
    from hub.store.db import engine_for

    engine_for(database_url).dispose()
    return out


def _loop(client: httpx.Client, clinic: httpx.Client, physician: httpx.Client, emr: Any,
          step: Callable[[int, str], None], *, contacts: dict[str, str],
          billing: DemoBilling) -> tuple[Intake, list[tuple[str, datetime]]]:
    """``contacts``: the referrer's Direct address and fax number (where the plan goes for signature);
    ``billing``: :class:`hub.demo_billing.DemoBilling`. The billing intake and the visits (Encounter id
    and start, in order)."""
    today = datetime.now(UTC).date()  # the visits' dates are UTC dates: so is the plans'
    # ten visits, one a day up to yesterday; the plan of care starts with the first (the evaluation)
    starts = [(datetime.now(UTC) - timedelta(days=10 - visit)).replace(microsecond=0) for visit in range(10)]
    plan_start = starts[0].date()
    referral = {
        "identifier": {"system": "urn:oid:2.16.840.1.113883.3.9999.1", "value": f"DEMO-{int(time.time())}"},
        "discipline": "PT",
        "patient": PATIENT,
        "referrer": {"npi": "1234567893", "family": "Okafor", "given": ["Chidi"],
                     **contacts},
        "reason": {"icd10": "M54.50", "display": "Low back pain, unspecified"},
        "coverage": COVERAGE,
        "note": "Evaluate and treat",
    }
    view = _check(physician.post("/referrals", json=referral), "sending the referral")
    task_id = view["task"].split("/")[1]
    step(4, f"referral sent by Dr. Okafor: {view['service_request']}, tracked by {view['task']} ({view['status']})")
    intake = billing.intake(view)
    _check(clinic.post(f"/referrals/{task_id}/status", json={"status": "received"}), "receiving")
    _check(clinic.post(f"/referrals/{task_id}/status", json={"status": "accepted"}), "accepting")
    plan = _check(clinic.post(f"/referrals/{task_id}/plan-of-care", json={
        "author": "PractitionerRole/demo-therapist",
        "period_start": plan_start.isoformat(), "period_end": (plan_start + timedelta(weeks=6)).isoformat(),
        "frequency_per_week": 2, "duration_weeks": 6,
        "activities": [{"code": "97161", "display": "PT evaluation, low complexity", "count": 1},
                       {"code": "97110", "display": "Therapeutic exercise"},
                       {"code": "97140", "display": "Manual therapy"}],
        "goals": [{"term": "short", "description": "Walk 300 m without pain",
                   "due_date": (today + timedelta(weeks=3)).isoformat()},
                  {"term": "long", "description": "Return to gardening",
                   "due_date": (today + timedelta(weeks=6)).isoformat()}],
    }), "the plan of care")
    certification = next(o for o in plan["obligations"] if o["kind"] == "certification")
    step(5, f"clinic accepted; plan of care {plan['care_plan']} (PDF {plan['document']}, return code "
            f"{plan['return_code']}) sent for signature, due {certification['due']}")
    billing.eligibility()  # the answer to the intake's inquiry, delivered meanwhile
    mine = _check(physician.get("/certifications"), "the physician's certifications to sign")
    if certification["task"] not in [m["task"] for m in mine]:
        raise DemoError("the certification is not in Dr. Okafor's list")
    signed = _check(physician.post(f"/certifications/{certification['task'].split('/')[1]}/sign",
                                json={"signature": base64.b64encode(b"Dr. Okafor").decode()}), "signing")
    step(6, f"Dr. Okafor signed: certification {signed['status']}; a Provenance records the signature")
    first_visit = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=9)
    appointment = {
        "resourceType": "Appointment", "status": "booked",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.9999.3",
                        "value": f"{referral['identifier']['value']}-V1"}],
        "serviceType": [{"coding": [{"system": "http://snomed.info/sct", "code": "91251008",
                                     "display": "Physical therapy procedure"}]}],
        "description": "First physical therapy visit",
        "start": first_visit.isoformat(timespec="seconds"),
        "end": (first_visit + timedelta(minutes=45)).isoformat(timespec="seconds"),
        "minutesDuration": 45,
        "basedOn": [{"reference": view["service_request"]}],
        "participant": [{"actor": {"reference": view["patient"]}, "status": "accepted"},
                        {"actor": {"reference": "PractitionerRole/demo-therapist"}, "status": "accepted"}],
    }
    booked = _check(clinic.post("/fhir/Appointment", content=json.dumps(appointment), headers=FHIR), "booking")
    step(7, f"first visit booked: Appointment/{booked['id']} on {first_visit:%Y-%m-%d %H:%M} UTC (SIU^S12 to the "
            "legacy system; the plan of care went there as MDM^T02 with its PDF)")
    visits = []
    for start in starts:
        encounter = {"resourceType": "Encounter", "status": "finished",
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                     "subject": {"reference": view["patient"]}, "basedOn": [{"reference": view["service_request"]}],
                     "period": {"start": start.isoformat(timespec="seconds"),
                                "end": (start + timedelta(minutes=45)).isoformat(timespec="seconds")},
                     "diagnosis": [{"condition": {"reference": intake.condition}, "rank": 1}]}
        made = _check(clinic.post("/fhir/Encounter", content=json.dumps(encounter), headers=FHIR), "a visit")
        visits.append((str(made["id"]), start))
    progress = [o for o in _check(clinic.get("/certifications"), "obligations") if o["kind"] == "progress-report"]
    state = progress[0]["business_status"] if progress else "not yet"
    step(8, f"10 visits recorded; progress report: {state}")
    emr.seed({"resourceType": "Observation", "id": "demo-pain", "status": "final",
              "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}], "text": "Pain severity 0-10"},
              "subject": {"reference": view["patient"]}, "valueInteger": 2})
    polled = _check(client.post("/admin/api/connectors/clinic-emr/poll"), "polling the EMR")
    done = _check(clinic.post(f"/referrals/{task_id}/discharge", json={
        "summary": "10 visits; independent with the home exercise program", "outcome": "Goals met"}), "discharge")
    step(9, f"pulled {polled.get('stored', 0)} observation(s) from the EMR; discharged: referral {done['status']}, "
            f"feedback {done['feedback']}")
    return intake, visits
