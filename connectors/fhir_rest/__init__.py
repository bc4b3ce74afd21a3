"""A generic FHIR R4 REST partner: mirror resources with ``PUT``, poll changes by ``_lastUpdated``.

See :mod:`connectors.fhir_rest.connector` for the request format, outcome rules and polling,
:mod:`connectors.fhir_rest.auth` for the pluggable authentication, and
:mod:`sandboxes.fhir` for the in-memory FHIR server that plays a partner EMR.
"""

from connectors.fhir_rest.auth import BearerTokenAuth, FhirAuth, NoAuth
from connectors.fhir_rest.connector import FHIR_JSON, FhirRestConfig, FhirRestConnector
from connectors.fhir_rest.cursor import PollCursor

__all__ = [
    "FHIR_JSON",
    "BearerTokenAuth",
    "FhirAuth",
    "FhirRestConfig",
    "FhirRestConnector",
    "NoAuth",
    "PollCursor",
]
