"""Therapy billing, pure: finished visits -> FHIR ``Claim``, the claim scrubber, and the flat claim
model (:mod:`.model`) that the X12 837P writer (:mod:`mappings.x12`) and the scrubber read."""
