"""The audience a client assertion must name is configuration, never the Host header of the request:
production refuses to start without ``HUB_BASE_URL`` or ``HUB_TOKEN_AUDIENCES``."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from hub.app import create_app
from hub.security.tokens import ASSERTION_TYPE
from hub.settings import Settings
from tests.security.conftest import add_client
from tests.security.test_tokens import _public_pem, assertion, rsa_key  # noqa: F401 (a fixture)

REAL_SECRET = "a-real-secret-of-some-length"
OURS = "https://hub.example.org/auth/token"
THEIRS = "https://other-hub.example.net/auth/token"


def test_production_needs_a_configured_audience() -> None:
    with pytest.raises(ValidationError, match="HUB_BASE_URL"):
        Settings(environment="production", secret_key=REAL_SECRET)
    assert Settings(environment="production", secret_key=REAL_SECRET, base_url="https://hub.example.org/"
                    ).assertion_audiences == [OURS]
    assert Settings(environment="production", secret_key=REAL_SECRET, token_audiences=[OURS, THEIRS + "/"]
                    ).assertion_audiences == [OURS, THEIRS]


def _exchange(api: TestClient, token: str, host: str) -> Any:
    return api.post("/auth/token", headers={"Host": host}, data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": token})


@pytest.mark.parametrize("configured", [{"base_url": "https://hub.example.org"}, {"token_audiences": [OURS]}])
def test_an_assertion_for_another_server_is_refused_whatever_the_host_header(
    auth_settings: Settings, rsa_key: Any, configured: dict[str, Any]  # noqa: F811
) -> None:
    settings = auth_settings.model_copy(update={"environment": "production", **configured})
    client = add_client(settings, "clinic-a", "system", public_key=_public_pem(rsa_key), with_secret=False)
    with TestClient(create_app(settings), base_url="http://testserver") as api:
        forged = _exchange(api, assertion(rsa_key, client.client_id, aud=THEIRS), "other-hub.example.net")
        assert forged.status_code == 401 and forged.json()["error"] == "invalid_client"
        assert "aud" in forged.json()["error_description"]
        mine = _exchange(api, assertion(rsa_key, client.client_id, aud=OURS), "other-hub.example.net")
        assert mine.status_code == 200, mine.text


def test_a_list_of_audiences_accepts_each_of_them(auth_settings: Settings, rsa_key: Any) -> None:  # noqa: F811
    settings = auth_settings.model_copy(update={"token_audiences": [OURS, THEIRS]})
    client = add_client(settings, "clinic-a", "system", public_key=_public_pem(rsa_key), with_secret=False)
    with TestClient(create_app(settings), base_url="http://testserver") as api:
        for aud in (OURS, THEIRS):
            assert _exchange(api, assertion(rsa_key, client.client_id, aud=aud), "testserver").status_code == 200
        local = _exchange(api, assertion(rsa_key, client.client_id, aud="http://testserver/auth/token"), "testserver")
        assert local.status_code == 401  # configured: the URL the request came to no longer counts
