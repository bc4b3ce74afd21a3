"""The code systems and extensions a home exercise activity is written with (read by :mod:`.program`).

R4 has no element for an exercise's dose, so the hub writes it as extensions on the CarePlan
``activity.detail`` (or on the ServiceRequest an activity references):

* :data:`SETS_EXTENSION` valueInteger, :data:`REPETITIONS_EXTENSION` valueInteger,
* :data:`HOLD_EXTENSION` valueDuration (UCUM ``s``/``min``) or valueInteger seconds,
* :data:`LOAD_EXTENSION` valueQuantity (``kg`` or ``[lb_av]``/``lb``),
* :data:`MEDIA_EXTENSION` valueAttachment (``contentType`` ``image/*`` or ``video/*``, ``url``) or valueUrl.

An activity is a home exercise when its code or category has :data:`EXERCISE_THERAPY` (SNOMED CT
229065009 |Exercise therapy|) or a coding in :data:`HEP_EXERCISE_SYSTEM` (the vendor's exercise
codes), or (CarePlans from other systems) a text that says "exercise" and no CPT/HCPCS coding, or
one of the dose extensions above.
"""

from __future__ import annotations

SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
#: SNOMED CT 229065009 |Exercise therapy (regime/therapy)|
EXERCISE_THERAPY = (SNOMED, "229065009")
#: the vendor's exercise codes (``exercises[].code`` of the program body)
HEP_EXERCISE_SYSTEM = "https://therapy-hub.example/CodeSystem/hep-exercise"
_EXT = "https://therapy-hub.example/StructureDefinition/hep-exercise-"
SETS_EXTENSION = _EXT + "sets"
REPETITIONS_EXTENSION = _EXT + "repetitions"
HOLD_EXTENSION = _EXT + "hold"
LOAD_EXTENSION = _EXT + "load"
MEDIA_EXTENSION = _EXT + "media"
DOSE_EXTENSIONS = frozenset({SETS_EXTENSION, REPETITIONS_EXTENSION, HOLD_EXTENSION, LOAD_EXTENSION})
