"""Peer baseline for bench/fhir_crud.py: a fhirstarter server with ServiceRequest create and read.

Runs in its own venv (``bench/.venv-fhirstarter``: fhirstarter 4.2.x pins FastAPI < 0.137, older
than the hub's), with ``FHIR_SEQUENCE=R4B`` (fhirstarter offers STU3, R4B and R5; R4B is the
nearest to the hub's R4 and a ServiceRequest is the same shape in both).

The store is an in-memory dict of JSON text, as in fhirstarter's own example app, so this measures
the framework (FastAPI + fhir.resources validation and serialisation) with no database at all.
Like the hub, create stamps ``id`` and ``meta`` (versionId, lastUpdated) and returns the resource
(the hub's default ``Prefer: return=representation``); read re-validates the stored JSON into the
model, as fhirstarter's example does.

Run (what the bench does)::

    FHIR_SEQUENCE=R4B bench/.venv-fhirstarter/bin/python -m uvicorn fhirstarter_app:app \\
        --app-dir bench --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

os.environ.setdefault("FHIR_SEQUENCE", "R4B")  # fhirstarter reads it at import time

from fhir.resources.R4B.servicerequest import ServiceRequest  # noqa: E402
from fhirstarter import FHIRProvider, FHIRStarter, InteractionContext  # noqa: E402
from fhirstarter.exceptions import FHIRResourceNotFoundError  # noqa: E402

STORE: dict[str, str] = {}

provider = FHIRProvider()


@provider.create(ServiceRequest)
async def service_request_create(context: InteractionContext, resource: ServiceRequest) -> ServiceRequest:
    resource.id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    resource.meta = {"versionId": "1", "lastUpdated": now}
    STORE[resource.id] = resource.model_dump_json()
    return resource


@provider.read(ServiceRequest)
async def service_request_read(context: InteractionContext, id_: str) -> ServiceRequest:
    stored = STORE.get(id_)
    if stored is None:
        raise FHIRResourceNotFoundError
    return ServiceRequest.model_validate_json(stored)


app = FHIRStarter(title="fhirstarter baseline for the Therapy Interop Hub bench")
app.add_providers(provider)
