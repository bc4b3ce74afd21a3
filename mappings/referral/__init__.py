"""The closed referral loop (HL7 BSeR / 360X on FHIR workflow): intake, the referral Task, certification.

Pure like every mapping: no I/O, no settings, no clock (``now`` / ``today`` are passed in), ids are
uuid5-derived.
"""
