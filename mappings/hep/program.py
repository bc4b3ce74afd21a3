"""A CarePlan's home exercise activities + its Patient -> the HEP vendor's patient and program bodies.

Input: what a ``hep`` delivery carries (a ``collection`` Bundle: the CarePlan first, then what it
references -- the Patient, the ServiceRequests of its activities) or a bare CarePlan with
``contained`` resources. An exercise is either

* an ``activity.detail`` (kind ServiceRequest/Task or none): name ``detail.code`` (text, else a
  coding display), vendor code the coding in the vendor's code system, ``description`` the
  instructions, ``scheduledTiming`` the frequency, ``quantity`` (unit repetitions) the reps, and
  the dose and media extensions of :mod:`.program_codes`; or
* a ``ServiceRequest`` named by ``activity.reference``: ``code``, ``patientInstruction`` (else
  ``note``), ``occurrenceTiming``, ``quantityQuantity`` and the same extensions.

Which activities are exercises is said in :mod:`.program_codes`; visits (kind Appointment), medication and
other requests, billable services (CPT/HCPCS only) and activities that were cancelled, stopped,
completed or entered in error are not sent. Where structured values are missing, the dose is read
liberally from the instructions text ("3 x 10", "3 sets of 10 reps", "hold 5 seconds").

Exercise ids (``exercises[].external_id``, by which the vendor's webhooks name the activity): the
ServiceRequest's id, else :func:`activity_external_id` -- a uuid5 over the CarePlan id and the
activity's own ``id``, else its exercise code (``system|code``, the vendor's system first), else
``name|<its name in lower case>`` (a repeat gets ``#2``, ``#3``); a contained request: ``#<its id>``.

Bad input raises :class:`ProgramError` naming the FHIR path and the rule, never the value.
Pure: no I/O, no clock (``today`` is passed in), no random ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from mappings.fhir.ids import deterministic_id
from mappings.hep.program_codes import (
    CPT,
    DOSE_EXTENSIONS,
    EXERCISE_THERAPY,
    HCPCS,
    HEP_EXERCISE_SYSTEM,
    HOLD_EXTENSION,
    LOAD_EXTENSION,
    MEDIA_EXTENSION,
    REPETITIONS_EXTENSION,
    SETS_EXTENSION,
)
from mappings.hep.program_timing import frequency_of

__all__ = ["DeliveryResources", "ProgramError", "ProgramPush", "activity_external_id", "exercise_external_ids",
           "patient_body", "program_body", "program_push", "read_resources"]

Json = dict[str, Any]
_NOT_EXERCISE_KINDS = frozenset({"Appointment", "CommunicationRequest", "DeviceRequest", "MedicationRequest",
                                 "NutritionOrder", "VisionPrescription"})
_ENDED_DETAIL = frozenset({"cancelled", "stopped", "entered-in-error", "completed"})
_ENDED_REQUEST = frozenset({"revoked", "completed", "entered-in-error"})
_ENDED_PLAN = frozenset({"completed", "revoked", "entered-in-error"})
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_MAX = {"sets": 50, "reps": 1000, "hold_seconds": 3600, "per_day": 24, "days_per_week": 7}


class ProgramError(ValueError):
    """A CarePlan that cannot become a program: ``path`` (FHIR path) and ``rule`` (what is wrong)."""

    def __init__(self, path: str, rule: str) -> None:
        super().__init__(f"{path}: {rule}")
        self.path = path
        self.rule = rule


@dataclass(frozen=True)
class DeliveryResources:
    """The CarePlan of a delivery and the resources beside it, by ``Type/id``, ``#id`` (contained) and
    ``urn:uuid:..`` (the fullUrl of a transaction Bundle's entry)."""

    care_plan: Json
    index: Mapping[str, Json]

    def resolve(self, reference: object) -> Json | None:
        if not isinstance(reference, Mapping) or not isinstance(reference.get("reference"), str):
            return None
        ref: str = reference["reference"]
        if ref.startswith(("#", "urn:")):
            return self.index.get(ref)
        parts = ref.split("/_history/")[0].rstrip("/").split("/")
        return self.index.get("/".join(parts[-2:])) if len(parts) >= 2 else None


@dataclass(frozen=True)
class ProgramPush:
    """What the connector sends for one CarePlan delivery. ``program`` None: nothing to send (``skipped``)."""

    patient_external_id: str
    patient: Json
    program_external_id: str
    program: Json | None
    #: exercise ids of the previous version that this one no longer has (to DELETE on the vendor)
    removed: tuple[str, ...] = ()
    skipped: str | None = None


def read_resources(payload: bytes | str | Mapping[str, Any], *, what: str = "payload") -> DeliveryResources:
    """The CarePlan (a Bundle's first CarePlan entry, or the resource itself) and its companions."""
    if isinstance(payload, bytes | bytearray | str):
        try:
            document = json.loads(payload)
        except (ValueError, RecursionError):
            raise ProgramError(what, "not JSON") from None
    else:
        document = dict(payload)
    if not isinstance(document, dict):
        raise ProgramError(what, "not a FHIR resource")
    resources: list[Json] = []
    index: dict[str, Json] = {}
    if document.get("resourceType") == "Bundle":
        entries = document.get("entry")
        for entry in entries if isinstance(entries, list) else []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):
                resources.append(resource)
                if isinstance(entry.get("fullUrl"), str) and entry["fullUrl"].startswith("urn:"):
                    index[entry["fullUrl"]] = resource  # a transaction's references between its entries
    else:
        resources.append(document)
    care_plan = next((r for r in resources if r.get("resourceType") == "CarePlan"), None)
    if care_plan is None:
        raise ProgramError(what, "no CarePlan (a CarePlan or a Bundle with one is required)")
    for resource in resources:
        if isinstance(resource.get("resourceType"), str) and isinstance(resource.get("id"), str):
            index.setdefault(f"{resource['resourceType']}/{resource['id']}", resource)
    contained = care_plan.get("contained")
    for resource in contained if isinstance(contained, list) else []:
        if isinstance(resource, dict) and isinstance(resource.get("id"), str):
            index[f"#{resource['id']}"] = resource
    return DeliveryResources(care_plan, index)


def activity_external_id(care_plan_id: str, key: str) -> str:
    """The stable exercise id of a CarePlan activity without a ServiceRequest of its own."""
    return deterministic_id("CarePlan.activity", f"CarePlan/{care_plan_id}", key)


# ------------------------------------------------------------------------------------ helpers


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> Json:
    return value if isinstance(value, dict) else {}


def _codings(concepts: list[Any]) -> list[Json]:
    return [c for concept in concepts for c in _list(_dict(concept).get("coding")) if isinstance(c, dict)]


def _texts(concepts: list[Any]) -> list[str]:
    texts = [_dict(c).get("text") for c in concepts]
    return [t for t in texts if isinstance(t, str)]


def _extensions(*holders: Json) -> dict[str, tuple[int, Json]]:
    found: dict[str, tuple[int, Json]] = {}
    for holder in holders:
        for i, ext in enumerate(_list(holder.get("extension"))):
            if isinstance(ext, dict) and isinstance(ext.get("url"), str):
                found.setdefault(ext["url"], (i, ext))
    return found


def _is_exercise(concepts: list[Any], extensions: Mapping[str, Any], code_system: str) -> bool:
    codings = _codings(concepts)
    for coding in codings:
        if (coding.get("system"), coding.get("code")) == EXERCISE_THERAPY:
            return True
        if coding.get("system") in (code_system, HEP_EXERCISE_SYSTEM):
            return True
    if any(name in extensions for name in DOSE_EXTENSIONS):
        return True
    if any(c.get("system") in (CPT, HCPCS) for c in codings):
        return False  # a billable service, e.g. 97110 therapeutic exercise in the clinic
    return any("exercise" in text.lower() or re.search(r"\bHEP\b", text) for text in _texts(concepts))


def _fhir_date(value: object, path: str) -> date:
    match = _DATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ProgramError(path, "not a FHIR date (YYYY-MM-DD)")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise ProgramError(path, "not a calendar date") from None


def _whole(value: object, path: str, field: str) -> int:
    number = value.get("value") if isinstance(value, dict) else value
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= _MAX[field]:
        raise ProgramError(path, f"must be a whole number from 1 to {_MAX[field]}")
    return number


# ----------------------------------------------------------------------------------- patient


def patient_body(patient: Mapping[str, Any], *, path: str = "Patient") -> Json:
    """The vendor's ``POST /v1/patients`` body: external_id (the hub's Patient id), names, contacts."""
    if patient.get("resourceType") != "Patient":
        raise ProgramError(path, "not a Patient")
    if not isinstance(patient.get("id"), str) or not patient["id"]:
        raise ProgramError(f"{path}.id", "required (the vendor's external_id)")
    names = [n for n in _list(patient.get("name")) if isinstance(n, dict)]
    name = next((n for n in names if n.get("use") == "official"), None) or next(
        (n for n in names if n.get("use") not in ("old", "maiden")), None)
    given = [g for g in _list(_dict(name).get("given")) if isinstance(g, str) and g.strip()]
    family = _dict(name).get("family")
    if name is None or not given or not isinstance(family, str) or not family.strip():
        raise ProgramError(f"{path}.name", "a family and a given name are required")
    body: Json = {"external_id": patient["id"], "first_name": given[0].strip(), "last_name": family.strip()}
    telecoms = [t for t in _list(patient.get("telecom")) if isinstance(t, dict) and isinstance(t.get("value"), str)
                and t.get("use") != "old" and not _dict(t.get("period")).get("end")]
    for system, field in (("email", "email"), ("phone", "phone"), ("sms", "phone")):
        if field in body:
            continue
        choices = sorted((t for t in telecoms if t.get("system") == system),
                         key=lambda t: (t.get("use") != "mobile", t.get("rank", 99)))
        if choices:
            body[field] = choices[0]["value"].strip()
    if patient.get("birthDate") is not None:
        body["birth_date"] = _fhir_date(patient["birthDate"], f"{path}.birthDate").isoformat()
    return body


# ---------------------------------------------------------------------------------- exercises

_SETS_X_REPS = re.compile(r"\b(\d{1,3})\s*[x×]\s*(\d{1,4})\b", re.I)
_SETS = re.compile(r"\b(\d{1,3})\s*sets?\b", re.I)
_REPS = re.compile(r"\b(\d{1,4})\s*(?:reps?|repetitions)\b", re.I)
_HOLD = re.compile(r"\bhold(?:\s+for)?\s+(\d{1,4})\s*(s|secs?|seconds?|min|mins|minutes?)\b", re.I)


def _from_text(text: str) -> dict[str, int]:
    found: dict[str, int] = {}
    if match := _SETS_X_REPS.search(text):
        found["sets"], found["reps"] = int(match[1]), int(match[2])
    if "sets" not in found and (match := _SETS.search(text)):
        found["sets"] = int(match[1])
    if "reps" not in found and (match := _REPS.search(text)):
        found["reps"] = int(match[1])
    if match := _HOLD.search(text):
        found["hold_seconds"] = int(match[1]) * (60 if match[2].lower().startswith("m") else 1)
    return {k: v for k, v in found.items() if 1 <= v <= _MAX[k]}


def _hold(ext: Json, path: str) -> int:
    if "valueInteger" in ext:
        return _whole(ext["valueInteger"], path, "hold_seconds")
    quantity = _dict(ext.get("valueDuration") or ext.get("valueQuantity"))
    unit = str(quantity.get("code") or quantity.get("unit") or "s").lower()
    factor = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60}.get(unit)
    value = quantity.get("value")
    if factor is None or not isinstance(value, int | float) or isinstance(value, bool):
        raise ProgramError(path, "a valueDuration in s or min is required")
    return _whole(round(value * factor), path, "hold_seconds")


def _load(ext: Json, path: str) -> Json:
    quantity = _dict(ext.get("valueQuantity"))
    unit = str(quantity.get("code") or quantity.get("unit") or "").lower()
    value = quantity.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 1000:
        raise ProgramError(path, "a valueQuantity from 0 to 1000 is required")
    if unit in ("kg", "kilogram", "kilograms"):
        return {"value": value, "unit": "kg"}
    if unit in ("[lb_av]", "lb", "lbs", "pound", "pounds"):
        return {"value": value, "unit": "lb"}
    raise ProgramError(path, "the unit must be kg or lb ([lb_av])")


_VIDEO = (".mp4", ".mov", ".webm", ".m4v")
_IMAGE = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")


def _media(holders: tuple[Json, ...], path: str) -> list[Json]:
    media: list[Json] = []
    for holder in holders:
        for i, ext in enumerate(_list(holder.get("extension"))):
            if not isinstance(ext, dict) or ext.get("url") != MEDIA_EXTENSION:
                continue
            where = f"{path}.extension[{i}]"
            attachment = _dict(ext.get("valueAttachment"))
            url = attachment.get("url") or ext.get("valueUrl") or ext.get("valueUri")
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                raise ProgramError(where, "an http(s) url is required (valueAttachment.url or valueUrl)")
            kind = str(attachment.get("contentType") or "").split("/")[0].lower()
            if kind not in ("image", "video"):
                lowered = url.lower().split("?")[0]
                kind = "video" if lowered.endswith(_VIDEO) else "image" if lowered.endswith(_IMAGE) else ""
            if not kind:
                raise ProgramError(where, "contentType must be image/* or video/*")
            media.append({"kind": kind, "url": url})
    return media


def _exercise(holder: Json, outer: Json, *, path: str, code_path: str, timing: object, instructions: str | None,
              quantity: object, external_id: str, code_system: str) -> Json:
    concept = _dict(holder.get("code"))
    codings = _codings([concept])
    vendor = next((c for c in codings if c.get("system") == code_system and isinstance(c.get("code"), str)), None)
    marker = (EXERCISE_THERAPY[0], EXERCISE_THERAPY[1])
    displays = [str(c["display"]) for c in ([vendor] if vendor else []) + codings
                if (c.get("system"), c.get("code")) != marker and isinstance(c.get("display"), str)]
    name = concept.get("text") if isinstance(concept.get("text"), str) and concept["text"].strip() else next(
        (d for d in displays if d.strip()), None)
    if not isinstance(name, str):
        raise ProgramError(code_path, "an exercise name is required (code.text or a coding display)")
    exercise: Json = {"external_id": external_id, "code": vendor["code"] if vendor else "", "name": name.strip()}
    extensions = _extensions(holder, outer)
    for url, field in ((SETS_EXTENSION, "sets"), (REPETITIONS_EXTENSION, "reps")):
        if url in extensions:
            i, ext = extensions[url]
            exercise[field] = _whole(ext.get("valueInteger"), f"{path}.extension[{i}].valueInteger", field)
    if HOLD_EXTENSION in extensions:
        i, ext = extensions[HOLD_EXTENSION]
        exercise["hold_seconds"] = _hold(ext, f"{path}.extension[{i}]")
    if LOAD_EXTENSION in extensions:
        i, ext = extensions[LOAD_EXTENSION]
        exercise["load"] = _load(ext, f"{path}.extension[{i}].valueQuantity")
    if "reps" not in exercise and isinstance(quantity, dict):
        unit = str(quantity.get("code") or quantity.get("unit") or "").lower()
        if unit in ("{repetitions}", "{reps}", "{rep}", "rep", "reps", "repetitions", "{count}", "1", ""):
            exercise["reps"] = _whole(quantity, f"{path}.quantity", "reps")
    per_day, days_per_week = frequency_of(timing)
    if per_day is not None:
        exercise["per_day"] = _whole(per_day, f"{path}.timing", "per_day")
    if days_per_week is not None:
        exercise["days_per_week"] = _whole(days_per_week, f"{path}.timing", "days_per_week")
    if instructions and instructions.strip():
        exercise["instructions"] = instructions.strip()
        for field, value in _from_text(instructions).items():
            exercise.setdefault(field, value)
    media = _media((holder, outer), path)
    if media:
        exercise["media"] = media
    return exercise


def _activity_key(code: Json, code_system: str) -> str:
    """An activity's exercise code (the vendor's first; never the generic "exercise therapy"), else its name."""
    codings = [c for c in _codings([code]) if (c.get("system"), c.get("code")) != EXERCISE_THERAPY
               and isinstance(c.get("code"), str)]
    chosen = next((c for c in codings if c.get("system") == code_system), None) or next(iter(codings), None)
    if chosen is not None:
        return f"{chosen.get('system')}|{chosen['code']}"
    name = code.get("text") or next((c.get("display") for c in _codings([code]) if c.get("display")), "")
    return f"name|{str(name).strip().lower()}"


def _exercises(resources: DeliveryResources, *, code_system: str) -> tuple[list[Json], set[str]]:
    """(exercises in activity order, ids of referenced requests missing from the delivery)."""
    plan = resources.care_plan
    plan_id = plan.get("id")
    if not isinstance(plan_id, str) or not plan_id:
        raise ProgramError("CarePlan.id", "required (the vendor's external program id)")
    exercises: list[Json] = []
    unresolved: set[str] = set()
    keys: dict[str, int] = {}
    for i, activity in enumerate(_list(plan.get("activity"))):
        if not isinstance(activity, dict):
            continue
        path = f"CarePlan.activity[{i}]"
        detail = activity.get("detail")
        reference = activity.get("reference")
        if isinstance(detail, dict):
            concepts = [detail.get("code"), *_list(detail.get("category"))]
            if detail.get("kind") in _NOT_EXERCISE_KINDS or detail.get("status") in _ENDED_DETAIL:
                continue
            if not _is_exercise(concepts, _extensions(detail, activity), code_system):
                continue
            key = activity.get("id") if isinstance(activity.get("id"), str) else None
            if key is None:
                key = _activity_key(_dict(detail.get("code")), code_system)
                keys[key] = keys.get(key, 0) + 1
                key = key if keys[key] == 1 else f"{key}#{keys[key]}"
            exercises.append(_exercise(
                detail, activity, path=f"{path}.detail", code_path=f"{path}.detail.code",
                timing=detail.get("scheduledTiming"), instructions=detail.get("description"),
                quantity=detail.get("quantity"), external_id=activity_external_id(plan_id, key),
                code_system=code_system))
        elif isinstance(reference, dict):
            request = resources.resolve(reference)
            ref = reference.get("reference")
            if request is None:
                if isinstance(ref, str) and "ServiceRequest/" in ref:
                    unresolved.add(ref.split("/_history/")[0].rstrip("/").split("/")[-1])
                continue
            if request.get("resourceType") != "ServiceRequest" or request.get("status") in _ENDED_REQUEST:
                continue
            concepts = [request.get("code"), *_list(request.get("category"))]
            if not _is_exercise(concepts, _extensions(request), code_system):
                continue
            request_id = request.get("id")
            if not isinstance(request_id, str) or not request_id:
                raise ProgramError(f"{path}.reference", "the ServiceRequest has no id")
            notes = [n.get("text") for n in _list(request.get("note")) if isinstance(n, dict)]
            instruction = request.get("patientInstruction")
            if not isinstance(instruction, str):
                instruction = "\n".join(n for n in notes if isinstance(n, str)) or None
            contained = isinstance(ref, str) and ref.startswith("#")  # its id is the CarePlan's own
            where = f"CarePlan.contained[ServiceRequest/{request_id}]" if contained else f"ServiceRequest/{request_id}"
            exercises.append(_exercise(
                request, {}, path=where, code_path=f"{where}.code", timing=request.get("occurrenceTiming"),
                instructions=instruction, quantity=request.get("quantityQuantity"),
                external_id=activity_external_id(plan_id, f"#{request_id}") if contained else request_id,
                code_system=code_system))
    return exercises, unresolved


def exercise_external_ids(resources: DeliveryResources, *, code_system: str = HEP_EXERCISE_SYSTEM) -> list[str]:
    """The exercise ids of a CarePlan, in activity order (the ids the vendor's webhooks name)."""
    return [e["external_id"] for e in _exercises(resources, code_system=code_system)[0]]


# ------------------------------------------------------------------------------------ program


def program_body(resources: DeliveryResources, *, today: date, code_system: str = HEP_EXERCISE_SYSTEM) -> Json:
    """The vendor's ``PUT .../programs/{CarePlan id}`` body. An ended plan (completed, revoked) ends on
    its period end, else ``today``."""
    plan = resources.care_plan
    exercises, _ = _exercises(resources, code_system=code_system)
    period = _dict(plan.get("period"))
    if period.get("start") is not None:
        starts_on = _fhir_date(period["start"], "CarePlan.period.start")
    elif plan.get("created") is not None:
        starts_on = _fhir_date(plan["created"], "CarePlan.created")
    else:
        starts_on = today
    ends_on = _fhir_date(period["end"], "CarePlan.period.end") if period.get("end") is not None else None
    if plan.get("status") in _ENDED_PLAN:
        ends_on = min(ends_on or today, today)
    if ends_on is not None and ends_on < starts_on:
        if plan.get("status") not in _ENDED_PLAN:
            raise ProgramError("CarePlan.period.end", "before the period start")
        ends_on = starts_on
    title = plan.get("title")
    body: Json = {"title": title.strip() if isinstance(title, str) and title.strip() else "Home exercise program",
                  "starts_on": starts_on.isoformat()}
    if ends_on is not None:
        body["ends_on"] = ends_on.isoformat()
    days = [e["days_per_week"] for e in exercises if "days_per_week" in e]
    if days:
        body["frequency"] = {"per_week": max(days)}
    notes = [str(n["text"]).strip() for n in _list(plan.get("note"))
             if isinstance(n, dict) and isinstance(n.get("text"), str) and n["text"].strip()]
    if notes:
        body["notes"] = "\n".join(notes)
    body["exercises"] = exercises
    return body


def program_push(payload: bytes, previous: bytes | None = None, *, today: date,
                 code_system: str = HEP_EXERCISE_SYSTEM) -> ProgramPush:
    """What to send for a CarePlan delivery (``previous``: what the vendor was last sent about it)."""
    resources = read_resources(payload)
    plan = resources.care_plan
    subject = resources.resolve(plan.get("subject"))
    if subject is None or subject.get("resourceType") != "Patient":
        raise ProgramError("CarePlan.subject", "the Patient is not in the delivery")
    patient = patient_body(subject, path="Patient")
    body = program_body(resources, today=today, code_system=code_system)
    current = [e["external_id"] for e in body["exercises"]]
    removed: tuple[str, ...] = ()
    before: list[str] = []
    if previous is not None:
        try:
            old = read_resources(previous, what="previous")
            if old.care_plan.get("id") == plan.get("id"):
                before = exercise_external_ids(old, code_system=code_system)
        except ProgramError:
            before = []  # an unreadable earlier send: nothing is known to remove
        _, unresolved = _exercises(resources, code_system=code_system)
        removed = tuple(e for e in before if e not in current and e not in unresolved)
    skipped = None
    if plan.get("status") == "draft":
        skipped = "the CarePlan is a draft"
    elif not current and not before:
        skipped = "the CarePlan has no home exercise activities"
    return ProgramPush(patient_external_id=patient["external_id"], patient=patient,
                       program_external_id=str(plan["id"]), program=None if skipped else body,
                       removed=() if skipped else removed, skipped=skipped)
