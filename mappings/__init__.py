"""Pure translations between partner formats and FHIR R4 (no I/O, no settings, no clock)."""
