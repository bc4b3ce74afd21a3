"""Inbound channels that are not the FHIR REST API: each stores the raw message first, translates
it with :mod:`mappings`, writes through the FHIR service and answers the sender (HL7 v2: an ACK)."""
