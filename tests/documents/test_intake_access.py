"""Only an administrator sees the documents in triage or matches one by hand."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hub.app import create_app
from hub.settings import Settings
from tests.security.conftest import add_client, bearer, get_token, secured


def test_the_triage_api_is_for_administrators_only(settings: Settings) -> None:
    settings = secured(settings)
    tenant = settings.default_tenant
    with TestClient(create_app(settings), base_url="http://testserver") as api:
        for role, listing, matching in (("clinic", 403, 403), ("system", 403, 403), ("admin", 200, 404)):
            token = get_token(api, add_client(settings, tenant, role))
            listed = api.get("/admin/api/documents/triage", headers=bearer(token))
            assert listed.status_code == listing, role
            matched = api.post("/admin/api/documents/unknown/match", json={"task": "x"}, headers=bearer(token))
            assert matched.status_code == matching, role
        assert api.get("/admin/api/documents/triage").status_code == 401
