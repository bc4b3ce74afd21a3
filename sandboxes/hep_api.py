"""The sandbox HEP vendor's records and rules (the vendor contract), without the HTTP.

:class:`VendorBook` holds patients, programs (with versions and removed exercises), access links
and idempotency records; each method takes a parsed request and returns ``(status, answer)`` or
raises :class:`VendorError` (``status``, ``code``, ``field``), which the server turns into the
contract's error body ``{"error": {"code", "message", "field"}}``. The caller holds the lock.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = ["Program", "VendorBook", "VendorError"]

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LIMITS = {"title": 120, "notes": 4000, "name": 120, "instructions": 2000, "code": 64}
_INTS = {"sets": 50, "reps": 1000, "hold_seconds": 3600, "per_day": 24, "days_per_week": 7}


class VendorError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


def _invalid(field_name: str, message: str) -> VendorError:
    return VendorError(422, "validation_error", message, field_name)


@dataclass
class Program:
    id: str
    external_id: str
    patient_id: str
    version: int
    details: dict[str, Any]
    exercises: dict[str, dict[str, Any]]  # external_id -> exercise (with its vendor id)
    removed: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def view(self, root: str) -> dict[str, Any]:
        return {"id": self.id, "external_id": self.external_id, "patient_id": self.patient_id,
                "version": self.version, **self.details, "exercises": list(self.exercises.values()),
                "access_url": f"{root}/p/{self.id}"}


def _text(body: dict[str, Any], name: str, where: str, *, required: bool) -> None:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(where, f"{name} is required")
        return
    if not isinstance(value, str) or (required and not value.strip()):
        raise _invalid(where, f"{name} must be a non-empty string")
    if name in _LIMITS and len(value) > _LIMITS[name]:
        raise _invalid(where, f"{name} is longer than {_LIMITS[name]} characters")


def _day(body: dict[str, Any], name: str, *, required: bool) -> None:
    value = body.get(name)
    if value is None and not required:
        return
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise _invalid(name, f"{name} must be a date YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise _invalid(name, f"{name} is not a calendar date") from None


def _check_exercise(exercise: Any, where: str) -> None:
    if not isinstance(exercise, dict):
        raise _invalid(where, "an exercise must be an object")
    _text(exercise, "external_id", f"{where}.external_id", required=True)
    _text(exercise, "name", f"{where}.name", required=True)
    if not isinstance(exercise.get("code", ""), str):
        raise _invalid(f"{where}.code", "code must be a string")
    _text(exercise, "instructions", f"{where}.instructions", required=False)
    for name, limit in _INTS.items():
        value = exercise.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= limit):
            raise _invalid(f"{where}.{name}", f"{name} must be an integer from 1 to {limit}")
    load = exercise.get("load")
    if load is not None:
        if not isinstance(load, dict) or load.get("unit") not in ("kg", "lb") or not isinstance(
                load.get("value"), int | float) or isinstance(load.get("value"), bool):
            raise _invalid(f"{where}.load", "load must be {value: number, unit: kg|lb}")
    for i, media in enumerate(exercise.get("media") or []):
        if not isinstance(media, dict) or media.get("kind") not in ("image", "video") or not str(
                media.get("url", "")).startswith(("https://", "http://")):
            raise _invalid(f"{where}.media[{i}]", "media must be {kind: image|video, url: http(s)}")
    unknown = set(exercise) - {"external_id", "code", "name", "load", "media", "instructions", *_INTS}
    if unknown:
        raise _invalid(f"{where}.{sorted(unknown)[0]}", "unknown field")


def check_program(body: Any) -> None:
    if not isinstance(body, dict):
        raise _invalid("(body)", "a JSON object is required")
    _text(body, "title", "title", required=True)
    _day(body, "starts_on", required=True)
    _day(body, "ends_on", required=False)
    if body.get("ends_on") and body["ends_on"] < body["starts_on"]:
        raise _invalid("ends_on", "ends_on is before starts_on")
    frequency = body.get("frequency")
    if frequency is not None and (not isinstance(frequency, dict) or not isinstance(frequency.get("per_week"), int)
                                  or not 0 < frequency["per_week"] <= 14):
        raise _invalid("frequency.per_week", "per_week must be an integer from 1 to 14")
    _text(body, "notes", "notes", required=False)
    exercises = body.get("exercises")
    if not isinstance(exercises, list):
        raise _invalid("exercises", "exercises must be a list")
    seen: set[str] = set()
    for i, exercise in enumerate(exercises):
        _check_exercise(exercise, f"exercises[{i}]")
        if exercise["external_id"] in seen:
            raise _invalid(f"exercises[{i}].external_id", "external_id repeated")
        seen.add(exercise["external_id"])


class VendorBook:
    """Everything the vendor keeps. ``root`` is the server's URL (for access URLs)."""

    def __init__(self, root: str = "http://127.0.0.1", *, seed: int = 0) -> None:
        self.root = root
        self.seed = seed
        self.patients: dict[str, dict[str, Any]] = {}
        self.by_external: dict[str, str] = {}
        self.programs: dict[tuple[str, str], Program] = {}
        self.links: list[dict[str, Any]] = []
        self.idempotent: dict[str, tuple[str, int, dict[str, Any] | None]] = {}
        self._counter = itertools.count(1)

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{hashlib.sha256(f'{self.seed}|{prefix}|{next(self._counter)}'.encode()).hexdigest()[:16]}"

    # ---------------------------------------------------------------------------- patients

    def create_patient(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            raise _invalid("(body)", "a JSON object is required")
        _text(body, "external_id", "external_id", required=True)
        _text(body, "first_name", "first_name", required=True)
        _text(body, "last_name", "last_name", required=True)
        for name in ("email", "phone"):
            _text(body, name, name, required=False)
        _day(body, "birth_date", required=False)
        known = self.by_external.get(body["external_id"])
        if known is not None:
            return 200, self.patients[known]
        patient = {"id": self._id("pat"), **{k: body[k] for k in ("external_id", "first_name", "last_name",
                                                                  "email", "phone", "birth_date") if k in body}}
        self.patients[patient["id"]] = patient
        self.by_external[body["external_id"]] = patient["id"]
        return 201, patient

    def _patient(self, patient_id: str) -> dict[str, Any]:
        if patient_id not in self.patients:
            raise VendorError(404, "not_found", "no such patient", "patient_id")
        return self.patients[patient_id]

    # ---------------------------------------------------------------------------- programs

    def put_program(self, patient_id: str, external_id: str, body: Any) -> tuple[int, dict[str, Any]]:
        self._patient(patient_id)
        check_program(body)
        for (owner, ext), _program in self.programs.items():
            if ext == external_id and owner != patient_id:
                raise VendorError(409, "conflict", "this program belongs to another patient", "external_program_id")
        details = {k: v for k, v in body.items() if k != "exercises"}
        program = self.programs.get((patient_id, external_id))
        if program is None:
            program = Program(self._id("prg"), external_id, patient_id, 1, details, {})
            program.exercises = {e["external_id"]: {"id": self._id("ex"), **e} for e in body["exercises"]}
            self.programs[(patient_id, external_id)] = program
            program.history.append(program.view(self.root))
            return 201, program.view(self.root)
        wanted = {e["external_id"]: e for e in body["exercises"]}
        current = {k: {n: v for n, v in e.items() if n != "id"} for k, e in program.exercises.items()}
        if details == program.details and list(current.items()) == list(wanted.items()):
            return 200, program.view(self.root)
        exercises: dict[str, dict[str, Any]] = {}
        for key, exercise in wanted.items():
            old = program.exercises.get(key) or program.removed.pop(key, None)
            exercises[key] = {"id": old["id"] if old else self._id("ex"), **exercise}
        for key, exercise in program.exercises.items():
            if key not in wanted:
                program.removed[key] = exercise
        program.exercises, program.details = exercises, details
        program.version += 1
        program.history.append(program.view(self.root))
        return 200, program.view(self.root)

    def program(self, patient_id: str, external_id: str) -> Program:
        self._patient(patient_id)
        program = self.programs.get((patient_id, external_id))
        if program is None:
            raise VendorError(404, "not_found", "no such program", "external_program_id")
        return program

    def delete_exercise(self, patient_id: str, external_id: str, exercise_id: str) -> tuple[int, None]:
        program = self.program(patient_id, external_id)
        if exercise_id in program.exercises:
            program.removed[exercise_id] = program.exercises.pop(exercise_id)
            program.version += 1
            program.history.append(program.view(self.root))
            return 204, None
        if exercise_id in program.removed:
            return 204, None
        raise VendorError(404, "not_found", "no such exercise in this program", "external_exercise_id")

    def access_link(self, patient_id: str, *, now: datetime | None = None) -> tuple[int, dict[str, Any]]:
        self._patient(patient_id)
        token = hashlib.sha256(f"{self.seed}|sso|{patient_id}|{next(self._counter)}".encode()).hexdigest()[:32]
        issued = now or datetime.now(UTC)
        link = {"url": f"{self.root}/sso/{token}",
                "expires_at": (issued + timedelta(days=7)).replace(microsecond=0).isoformat()}
        self.links.append({"patient_id": patient_id, **link})
        return 200, link
