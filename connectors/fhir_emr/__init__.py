"""A FHIR R4 EMR behind SMART Backend Services, written to by business identifier.

See :mod:`connectors.fhir_emr.connector` for conditional writes and reference resolution,
:mod:`connectors.fhir_emr.identifiers` for identifier mapping, :mod:`connectors.fhir_emr.config` for
its settings, :mod:`connectors.fhir_emr.auth` for the JWT client assertion and token caching, and
:mod:`sandboxes.emr` for the sandbox EMR with its token endpoint.
"""

from connectors.fhir_emr.auth import CLIENT_ASSERTION_TYPE, SmartBackendAuth, load_private_key
from connectors.fhir_emr.config import DEFAULT_SCOPE, HUB_IDENTIFIER_SYSTEM, FhirEmrConfig
from connectors.fhir_emr.connector import FhirEmrConnector
from connectors.fhir_emr.identifiers import map_identifier_systems

__all__ = [
    "CLIENT_ASSERTION_TYPE",
    "DEFAULT_SCOPE",
    "HUB_IDENTIFIER_SYSTEM",
    "FhirEmrConfig",
    "FhirEmrConnector",
    "SmartBackendAuth",
    "load_private_key",
    "map_identifier_systems",
]
