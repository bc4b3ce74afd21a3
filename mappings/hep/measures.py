"""The outcome measures a HEP vendor reports, and the code systems of the HEP Observations.

Each :class:`Measure` names its code, its score range, which way is better and a default minimal
clinically important difference (MCID). The defaults are values commonly cited in the
rehabilitation literature; every function that uses them takes an ``mcid`` mapping that overrides
them per measure (a clinic sets its own):

========== ========= ============== ======= =========================================
measure    range     better         MCID    code
========== ========= ============== ======= =========================================
LEFS       0-80      higher         9       hub code system (``lefs``)
PSFS       0-10      higher         2       hub code system (``psfs``)
ODI        0-100 %   lower          10      LOINC 97909-6 Oswestry disability index score ODI
NDI        0-50      lower          7.5     hub code system (``ndi``)
QuickDASH  0-100     lower          8       hub code system (``quickdash``)
NPRS       0-10      lower          2       LOINC 72514-3 Pain severity - 0-10 verbal numeric rating
========== ========= ============== ======= =========================================

Only the NPRS and the ODI are coded in LOINC here (both terms checked on loinc.org; the ODI score
is a percentage, LOINC's example unit is ``{score}``): the LOINC codes of the LEFS, NDI, QuickDASH
and PSFS total scores could not be confirmed, and a wrong LOINC code is worse than an honest local
one. :data:`HEP_SYSTEM` codes are used for them; when a LOINC code is confirmed, add it to
``Measure.extra_codings`` (readers match any coding, and a measure's name in a concept's text or
display, so Goals written with another code still match).
NDI is scored on 0-50 here (the raw sum; some vendors send a percentage, 0-100: set ``mcid`` and
the target accordingly).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
#: the hub's own code system for HEP observations and outcome scores that have no confirmed LOINC code
HEP_SYSTEM = "https://therapy-hub.example/CodeSystem/hep"
#: identifier system of the vendor's event ids (``evt_...``): the dedupe key of every HEP resource
HEP_EVENT_SYSTEM = "https://therapy-hub.example/hep/event-id"
#: identifier system of the vendor's session ids: one session is one Observation however often it is sent
HEP_SESSION_SYSTEM = "https://therapy-hub.example/hep/session-id"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

Direction = Literal["higher", "lower"]
MeasureKey = Literal["LEFS", "ODI", "NDI", "QuickDASH", "PSFS", "NPRS"]


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str

    def as_fhir(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True, slots=True)
class Measure:
    key: MeasureKey
    coding: Coding
    low: Decimal
    high: Decimal
    better: Direction
    mcid: Decimal
    name: str = ""
    unit: str = "{score}"
    extra_codings: tuple[Coding, ...] = field(default=())

    @property
    def codings(self) -> tuple[Coding, ...]:
        return (self.coding, *self.extra_codings)

    def concept(self) -> dict[str, object]:
        return {"coding": [c.as_fhir() for c in self.codings], "text": self.key}

    def matches(self, concept: object) -> bool:
        """Whether a CodeableConcept (as JSON) carries one of this measure's codings (or its name as text)."""
        if not isinstance(concept, dict):
            return False
        texts = [concept.get("text")]
        for coding in concept.get("coding") or []:
            if not isinstance(coding, dict):
                continue
            if any(coding.get("system") == c.system and coding.get("code") == c.code for c in self.codings):
                return True
            texts.append(coding.get("display"))
        # a code this table does not know (a LOINC code a clinic chose): the measure's name in the text
        names = {self.key.casefold(), self.name.casefold()}
        return any(
            isinstance(text, str)
            and (set(re.findall(r"[a-z]+", text.casefold())) & names or self.name.casefold() in text.casefold())
            for text in texts
        )

    def improvement(self, before: Decimal, after: Decimal) -> Decimal:
        """How much better ``after`` is than ``before`` (negative: worse), in score points."""
        return after - before if self.better == "higher" else before - after


def _hub(code: str, display: str) -> Coding:
    return Coding(HEP_SYSTEM, code, display)


MEASURES: dict[str, Measure] = {
    "LEFS": Measure(
        "LEFS",
        _hub("lefs", "Lower Extremity Functional Scale score"),
        Decimal(0),
        Decimal(80),
        "higher",
        Decimal(9),
        "Lower Extremity Functional Scale",
    ),
    "PSFS": Measure(
        "PSFS",
        _hub("psfs", "Patient-Specific Functional Scale score"),
        Decimal(0),
        Decimal(10),
        "higher",
        Decimal(2),
        "Patient-Specific Functional Scale",
    ),
    "ODI": Measure(
        "ODI",
        Coding(LOINC, "97909-6", "Oswestry disability index score ODI"),
        Decimal(0),
        Decimal(100),
        "lower",
        Decimal(10),
        "Oswestry Disability Index",
    ),
    "NDI": Measure(
        "NDI",
        _hub("ndi", "Neck Disability Index score"),
        Decimal(0),
        Decimal(50),
        "lower",
        Decimal("7.5"),
        "Neck Disability Index",
    ),
    "QuickDASH": Measure(
        "QuickDASH",
        _hub("quickdash", "QuickDASH disability/symptom score"),
        Decimal(0),
        Decimal(100),
        "lower",
        Decimal(8),
        "QuickDASH",
    ),
    "NPRS": Measure(
        "NPRS",
        Coding(LOINC, "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported"),
        Decimal(0),
        Decimal(10),
        "lower",
        Decimal(2),
        "Numeric Pain Rating Scale",
    ),
}

#: the session Observation and its components
SESSION = _hub("exercise-session", "Home exercise session")
EXERCISES_DONE = _hub("exercises-done", "Prescribed exercises done")
EXERCISES_SKIPPED = _hub("exercises-skipped", "Prescribed exercises skipped")
#: LOINC 55411-3 Exercise duration (as the HL7 Physical Activity IG uses it)
EXERCISE_DURATION = Coding(LOINC, "55411-3", "Exercise duration")
EXERCISE = _hub("exercise-performance", "Prescribed home exercise performance")
EXERCISE_STATUS: dict[str, Coding] = {
    "done": _hub("done", "Done"),
    "skipped": _hub("skipped", "Skipped"),
}
SETS_DONE = _hub("sets-done", "Sets done")
REPS_DONE = _hub("reps-done", "Repetitions done")
#: Borg CR10 rating of perceived exertion: no LOINC code was found for the CR10 scale
EXERTION = _hub("rpe-borg-cr10", "Rating of perceived exertion (Borg CR10)")
PAIN = MEASURES["NPRS"].coding
#: interactive communication of remote therapeutic monitoring (CPT 98980/98981 minutes)
COMMUNICATION = _hub("rtm-interactive-communication", "RTM interactive communication")
CHANNEL = _hub("communication-channel", "Communication channel")


def mcid_of(measure: Measure, mcid: Mapping[str, Decimal | int | float] | None) -> Decimal:
    """The MCID of ``measure``: the clinic's value from ``mcid`` (keyed by measure name) or the default."""
    if mcid is not None and measure.key in mcid:
        return Decimal(str(mcid[measure.key]))
    return measure.mcid


def measure_of(concept: object) -> Measure | None:
    """The measure a CodeableConcept (as JSON) names, or ``None``."""
    for measure in MEASURES.values():
        if measure.matches(concept):
            return measure
    return None
