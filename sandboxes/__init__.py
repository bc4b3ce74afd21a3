"""Sandbox partners on 127.0.0.1: what the connectors talk to in tests, ``hub demo`` and load runs.

One per partner kind, each a real server with misbehaviour controls (:mod:`sandboxes.base` holds
what they share): :mod:`sandboxes.webhook` (a signed-webhook receiver), :mod:`sandboxes.fhir` (an
in-memory FHIR R4 server), :mod:`sandboxes.emr` (that server plus SMART Backend Services and
conditional writes) and :mod:`sandboxes.mllp` (an HL7 v2 peer over MLLP). Each runs on its own with
``python -m sandboxes.<name>``.

Sandboxes import ``connectors`` and ``mappings`` (to speak the same protocol), never ``hub`` or
``workers``; the runtime packages do not import sandboxes (only ``hub.demo`` and ``hub.cli`` may).
"""
