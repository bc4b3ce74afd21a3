"""A sandbox home exercise program (HEP) vendor on 127.0.0.1: the vendor contract's REST API and webhooks.

REST (JSON, ``Authorization: Bearer <api key>``, ``Idempotency-Key`` on writes: a repeated key with the
same request gets the first answer again, with another request 409)::

    POST   /v1/patients                                       201 new | 200 known external_id
    PUT    /v1/patients/{id}/programs/{external_program_id}   201 created | 200 (version +1 when changed)
    GET    /v1/patients/{id}/programs/{external_program_id}   the program as it stands
    DELETE /v1/patients/{id}/programs/{ext}/exercises/{ext}   204 (404 unknown)
    POST   /v1/patients/{id}/access-link                      {"url": ".../sso/<token>", "expires_at"}
    GET    /v1/health                                         {"ok": true}

Errors ``{"error": {"code", "message", "field"}}``: 401 bad key, 404 unknown, 409 conflict (a program
of another patient, a reused idempotency key), 422 validation (field named). Faults
(:class:`HepControls`): ``fail_rate`` (503), ``throttle_rate`` (429), both with ``retry_after``;
``hang_rate``/``hang_seconds`` (slow), ``status_override``, ``fail_keys`` (:mod:`sandboxes.base`).

Webhooks: :meth:`SandboxHepVendor.script` is N days of scripted patients (:mod:`sandboxes.hep_script`:
adherent, lapsing, improving, worsening) over the programs the vendor holds, deterministic by seed;
:meth:`~SandboxHepVendor.run_script` POSTs all of it now to a hub URL, shuffled, duplicates included;
:meth:`~SandboxHepVendor.play` sends it in send order with its gaps scaled;
:meth:`~SandboxHepVendor.send_event` sends one event. Each is signed ``X-HEP-Signature: t=<now>,v1=<hmac>``
(:mod:`connectors.hep.signature`). With the control ``webhook_url`` set, creating or changing a
program also sends ``program.assigned`` / ``program.updated`` there (``webhook_delay`` seconds later).

``python -m sandboxes.hep --help`` runs it on its own.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from connectors.hep.signature import EVENT_ID_HEADER, SIGNATURE_HEADER, signature_header
from sandboxes.base import (
    HOST,
    MisbehaviourControls,
    SandboxHandler,
    ThreadedHttpSandbox,
    add_misbehaviour_arguments,
    is_number,
    misbehaviour_options,
    serve_until_signalled,
)
from sandboxes.hep_api import VendorBook, VendorError
from sandboxes.hep_script import (
    PROFILES,
    ScriptedEvent,
    ScriptedExercise,
    ScriptedPatient,
    build_script,
    event_body,
    fast_order,
)

__all__ = ["HepControls", "SandboxHepVendor", "WebhookSent", "main"]

_PATIENT = re.compile(r"/v1/patients/([^/]+)")
_PROGRAM = re.compile(r"/v1/patients/([^/]+)/programs/([^/]+)")
_EXERCISE = re.compile(r"/v1/patients/([^/]+)/programs/([^/]+)/exercises/([^/]+)")
_LINK = re.compile(r"/v1/patients/([^/]+)/access-link")
_OFFSETS = (-300, 60, -480, 0)  # minutes east of UTC per scripted patient, in turn


@dataclass(frozen=True)
class HepControls(MisbehaviourControls):
    throttle_rate: float = 0.0  # answered 429 (with retry_after, default 1 s)
    #: where program.assigned / program.updated go when a program is created or changed (None: nowhere)
    webhook_url: str | None = None
    webhook_delay: float = 0.1  # seconds after the answer

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.webhook_url is not None and not str(self.webhook_url).startswith(("http://", "https://")):
            raise ValueError("webhook_url must be null or an http(s) URL")
        if not is_number(self.webhook_delay) or not 0 <= self.webhook_delay <= 60:
            raise ValueError("webhook_delay must be between 0 and 60 seconds")
        if not is_number(self.throttle_rate) or not 0.0 <= self.throttle_rate <= 1.0:
            raise ValueError("throttle_rate must be a number between 0 and 1")


@dataclass(frozen=True)
class WebhookSent:
    event_id: str
    type: str
    duplicate: bool
    status: int | None  # the hub's answer; None: no answer


class _Handler(SandboxHandler):
    summary_path = "/_state"

    def do_PUT(self) -> None:
        body = self._read_body()
        if body is not None:
            self._partner(body)

    def do_DELETE(self) -> None:
        body = self._read_body()
        if body is not None:
            self._partner(body)

    def _refuse(self, status: int, message: str) -> None:
        self._send_json(status, VendorError(status, "bad_request", message).body())

    def _partner(self, body: bytes) -> None:
        vendor: SandboxHepVendor = self.sandbox
        path = urlsplit(self.path).path
        if self.command == "GET" and path == "/v1/health":
            self._send_json(200, {"ok": True})
            return
        controls, fail, stopped = vendor._draw()
        if stopped:
            return
        key = self.headers.get("Idempotency-Key")
        status = controls.status_override or (controls.fail_keys.get(key) if key else None)
        if status is not None:
            self._send_json(status, VendorError(status, "injected", "injected failure").body(),
                            controls.retry_after_headers(status))
            return
        if fail:
            self._send_json(503, VendorError(503, "unavailable", "try again later").body(),
                            controls.retry_after_headers(503))
            return
        if vendor.throttled():
            self._send_json(429, VendorError(429, "rate_limited", "slow down").body(),
                            {"Retry-After": str(controls.retry_after_headers(429).get("Retry-After", "1"))})
            return
        if not vendor.authorised(self.headers.get("Authorization", "")):
            self._send_json(401, VendorError(401, "unauthorized", "invalid API key").body())
            return
        status, answer = vendor.handle(self.command, path, body, key)
        if answer is None:
            self._send(status, {}, b"")
        else:
            self._send_json(status, answer)


class SandboxHepVendor(ThreadedHttpSandbox[HepControls]):
    controls_class = HepControls
    handler_class = _Handler
    thread_name = "sandbox-hep"

    def __init__(self, port: int = 0, *, api_key: str = "sandbox-hep-key",
                 webhook_secret: str = "sandbox-hep-webhook-secret", **controls: Any) -> None:
        self.api_key, self.webhook_secret = api_key, webhook_secret
        self._threads: list[threading.Thread] = []
        super().__init__(port, **controls)

    def _clear(self) -> None:
        self.book = VendorBook(f"http://{HOST}:{self.port}", seed=self._controls.seed)
        if self._server is not None:
            self.book.root = self.root
        self.requests: list[tuple[str, str, str | None, int]] = []  # (method, path, key, status)
        self.webhooks: list[WebhookSent] = []

    def _set_controls(self, controls: HepControls, *, reseed: bool = True) -> None:
        super()._set_controls(controls, reseed=reseed)
        if reseed:
            self._throttle_rng = random.Random(controls.seed + 2)

    def start(self) -> SandboxHepVendor:
        super().start()
        self.book.root = self.root
        return self

    @property
    def url(self) -> str:
        return self.root

    def authorised(self, header: str) -> bool:
        return hmac.compare_digest(header.encode(), f"Bearer {self.api_key}".encode())

    def throttled(self) -> bool:
        with self._lock:
            rate = self._controls.throttle_rate
            return rate > 0 and self._throttle_rng.random() < rate

    # ------------------------------------------------------------------------------ REST

    def handle(self, method: str, path: str, raw: bytes, key: str | None) -> tuple[int, dict[str, Any] | None]:
        fingerprint = hashlib.sha256(f"{method} {path}\n".encode() + raw).hexdigest()
        with self._lock:
            before = {p.id: p.version for p in self.book.programs.values()}
            if key and key in self.book.idempotent:
                seen, status, answer = self.book.idempotent[key]
                if seen != fingerprint:
                    status, answer = 409, VendorError(409, "idempotency_key_reused",
                                                      "this key was used for another request").body()
                self.requests.append((method, path, key, status))
                return status, answer
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
                status, answer = 400, VendorError(400, "bad_request", "body is not JSON").body()
            else:
                status, answer = self._route(method, path, body)
            if key and method in ("POST", "PUT", "DELETE") and status < 500:
                self.book.idempotent[key] = (fingerprint, status, answer)
            self.requests.append((method, path, key, status))
            self._lock.notify_all()
            changed = [p for p in self.book.programs.values() if before.get(p.id) != p.version]
            url, delay = self._controls.webhook_url, self._controls.webhook_delay
        for program in changed if url else ():
            self._program_event_later(str(url), program.id, delay)
        return status, answer

    def _route(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any] | None]:
        book = self.book
        try:
            if method == "POST" and path == "/v1/patients":
                return book.create_patient(body)
            if (match := _EXERCISE.fullmatch(path)) and method == "DELETE":
                return book.delete_exercise(*(unquote(g) for g in match.groups()))
            if match := _PROGRAM.fullmatch(path):
                patient_id, external_id = (unquote(g) for g in match.groups())
                if method == "PUT":
                    return book.put_program(patient_id, external_id, body)
                if method == "GET":
                    return 200, book.program(patient_id, external_id).view(book.root)
            if (match := _LINK.fullmatch(path)) and method == "POST":
                return book.access_link(unquote(match[1]))
            if (match := _PATIENT.fullmatch(path)) and method == "GET":
                return 200, book._patient(unquote(match[1]))
        except VendorError as exc:
            return exc.status, exc.body()
        return 404, VendorError(404, "not_found", "no such endpoint").body()

    def program_event(self, program_id: str) -> dict[str, Any]:
        """``program.assigned`` (version 1) or ``program.updated`` of a program as it stands, occurring now."""
        with self._lock:
            program = next(p for p in self.book.programs.values() if p.id == program_id)
            patient = self.book.patients[program.patient_id]
            kind = "program.assigned" if program.version == 1 else "program.updated"
            digest = hashlib.sha256(f"{self._controls.seed}|{program.id}|{program.version}".encode()).hexdigest()
            return {"id": f"evt_{digest[:20]}", "type": kind,
                    "occurred_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
                    "patient": {"id": patient["id"], "external_id": patient["external_id"]},
                    "program": {"id": program.id, "external_id": program.external_id},
                    "data": {"version": program.version}}

    def _program_event_later(self, url: str, program_id: str, delay: float) -> None:
        def run() -> None:
            if not self._stopping.wait(delay):
                self.send_event(url, self.program_event(program_id))

        thread = threading.Thread(target=run, name="sandbox-hep-webhook", daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        super().stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def wait_for_webhooks(self, count: int, timeout: float = 5.0) -> bool:
        return self._wait_until(lambda: len(self.webhooks) >= count, timeout)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"patients": len(self.book.patients),
                    "programs": [{"id": p.id, "version": p.version, "exercises": len(p.exercises),
                                  "removed": len(p.removed)} for p in self.book.programs.values()],
                    "requests": len(self.requests), "webhooks": len(self.webhooks),
                    "controls": self._controls.to_json()}

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        return self._wait_until(lambda: len(self.requests) >= count, timeout)

    # -------------------------------------------------------------------------- webhooks

    def scripted_patients(self, profiles: Mapping[str, str] | None = None) -> list[ScriptedPatient]:
        """One scripted patient per program held (in creation order): ``profiles`` maps a program's
        external id to a profile, the others take the profiles in turn."""
        with self._lock:
            programs = list(self.book.programs.values())
            patients = dict(self.book.patients)
        scripted = []
        for i, program in enumerate(programs):
            profile = (profiles or {}).get(program.external_id, PROFILES[i % len(PROFILES)])
            exercises = tuple(ScriptedExercise(e["external_id"], e.get("sets"), e.get("reps"))
                              for e in program.exercises.values())
            scripted.append(ScriptedPatient(profile, program.patient_id, patients[program.patient_id]["external_id"],
                                            program.id, program.external_id, exercises, program.version,
                                            _OFFSETS[i % len(_OFFSETS)], _day(program.details.get("ends_on"))))
        return scripted

    def script(self, *, days: int = 14, now: datetime | None = None, seed: int | None = None,
               profiles: Mapping[str, str] | None = None) -> list[ScriptedEvent]:
        """The scripted webhooks (send order) of every program held, over the ``days`` before ``now``."""
        patients = self.scripted_patients(profiles)
        if not patients:
            raise ValueError("the vendor holds no program: push one (or seed_demo()) first")
        return build_script(patients, seed=self.controls.seed if seed is None else seed, days=days,
                            now=now or datetime.now(UTC))

    def headers_for(self, event: Mapping[str, Any], body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        stamp = int(time.time()) if timestamp is None else timestamp
        return {"Content-Type": "application/json", EVENT_ID_HEADER: str(event["id"]),
                SIGNATURE_HEADER: signature_header(self.webhook_secret, stamp, body)}

    def send_event(self, url: str, event: Mapping[str, Any], *, timestamp: int | None = None,
                   duplicate: bool = False, client: httpx.Client | None = None) -> int | None:
        """POST one signed event to ``url``; the hub's HTTP status (None: no answer)."""
        body = event_body(dict(event))
        headers = self.headers_for(event, body, timestamp=timestamp)
        try:
            if client is not None:
                status: int | None = client.post(url, content=body, headers=headers).status_code
            else:
                with httpx.Client(timeout=10, trust_env=False) as own:
                    status = own.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError:
            status = None
        with self._lock:
            self.webhooks.append(WebhookSent(str(event["id"]), str(event["type"]), duplicate, status))
            self._lock.notify_all()
        return status

    def run_script(self, url: str, *, days: int = 14, now: datetime | None = None, seed: int | None = None,
                   profiles: Mapping[str, str] | None = None) -> list[WebhookSent]:
        """Send the whole script now, shuffled with its duplicates (a fast run); what was sent."""
        script = self.script(days=days, now=now, seed=seed, profiles=profiles)
        order = fast_order(script, seed=self.controls.seed if seed is None else seed)
        return self._send_all(url, order)

    def play(self, url: str, script: Sequence[ScriptedEvent], *, time_scale: float = 1 / 3600) -> list[WebhookSent]:
        """Send ``script`` in send order, waiting its gaps times ``time_scale`` (1/3600: an hour a second)."""
        sent: list[WebhookSent] = []
        with httpx.Client(timeout=10, trust_env=False) as client:
            for i, copy in enumerate(script):
                if i and (gap := (copy.sent_at - script[i - 1].sent_at).total_seconds() * time_scale) > 0:
                    if self._stopping.wait(min(gap, 60.0)):
                        break
                status = self.send_event(url, copy.event, duplicate=copy.duplicate, client=client)
                sent.append(WebhookSent(copy.id, copy.type, copy.duplicate, status))
        return sent

    def _send_all(self, url: str, order: Sequence[ScriptedEvent]) -> list[WebhookSent]:
        sent = []
        with httpx.Client(timeout=10, trust_env=False) as client:
            for copy in order:
                status = self.send_event(url, copy.event, duplicate=copy.duplicate, client=client)
                sent.append(WebhookSent(copy.id, copy.type, copy.duplicate, status))
        return sent

    def seed_demo(self, count: int = 4) -> list[str]:
        """Demo patients with a three-exercise program each (standalone runs); their program ids."""
        ids = []
        for i in range(count):
            _, patient = self.handle("POST", "/v1/patients", json.dumps(
                {"external_id": f"demo-patient-{i + 1}", "first_name": "Demo", "last_name": f"Patient {i + 1}"}
            ).encode(), None)
            assert patient is not None
            exercises = [{"external_id": f"demo-{i + 1}-{n}", "code": code, "name": name, "sets": 3, "reps": reps}
                         for n, (code, name, reps) in enumerate((("BR01", "Bridging", 10), ("CS02", "Clamshells", 12),
                                                                 ("HS03", "Hamstring stretch", 3)))]
            _, program = self.handle("PUT", f"/v1/patients/{patient['id']}/programs/demo-plan-{i + 1}", json.dumps(
                {"title": "Home exercise program", "starts_on": "2026-01-05", "exercises": exercises}).encode(), None)
            assert program is not None
            ids.append(str(program["id"]))
        return ids


def _day(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.hep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--api-key", default="sandbox-hep-key")
    parser.add_argument("--webhook-secret", default="sandbox-hep-webhook-secret")
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="share of requests answered 429")
    parser.add_argument("--demo", action="store_true", help="start with four demo patients and programs")
    parser.add_argument("--webhook-url", default=None, help="send the scripted webhooks to this hub URL")
    parser.add_argument("--days", type=int, default=14, help="days of scripted activity (with --webhook-url)")
    parser.add_argument("--time-scale", type=float, default=0.0,
                        help="0: send everything at once, shuffled; else wait the script's gaps times this")
    add_misbehaviour_arguments(parser)
    args = parser.parse_args(argv)
    vendor = SandboxHepVendor(args.port, api_key=args.api_key, webhook_secret=args.webhook_secret,
                              throttle_rate=args.throttle_rate, **misbehaviour_options(args))

    def seed() -> None:
        vendor.seed_demo()

    def send_script() -> None:
        if args.webhook_url:
            if args.time_scale > 0:
                sent = vendor.play(args.webhook_url, vendor.script(days=args.days), time_scale=args.time_scale)
            else:
                sent = vendor.run_script(args.webhook_url, days=args.days)
            sys.stdout.write(f"sent {len(sent)} webhooks ({sum(s.duplicate for s in sent)} duplicates)\n")
            sys.stdout.flush()

    return serve_until_signalled(
        vendor,
        prepare=seed if args.demo else None,
        started=send_script,
        farewell=lambda: f"{len(vendor.book.patients)} patients, {len(vendor.book.programs)} programs",
    )


if __name__ == "__main__":
    raise SystemExit(main())
