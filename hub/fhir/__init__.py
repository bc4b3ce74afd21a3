"""The FHIR R4 REST gateway: search parameters, services, bundles and the router."""
