"""Client ids are generated: a tenant's administrator cannot choose one, so registering tells nothing
about (and cannot take) the ids of other tenants' clients."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from hub import cli
from hub import settings as settings_module
from hub.security.clients import NewClient
from hub.settings import Settings
from tests.security.conftest import add_client, bearer, get_token

ADMIN = "/admin/api"
GENERATED = re.compile(r"(?P<label>.+)-[0-9a-f]{16}")


def _ids(api: TestClient, token: str) -> set[str]:
    return {c["client_id"] for c in api.get(f"{ADMIN}/clients", headers=bearer(token)).json()}


def test_an_admin_cannot_learn_or_squat_another_tenants_client_id(auth_settings: Settings, api: TestClient) -> None:
    theirs = add_client(auth_settings, "clinic-a", "clinic")
    admin_b = get_token(api, add_client(auth_settings, "clinic-b", "admin"))
    before = _ids(api, admin_b)
    taken = api.post(f"{ADMIN}/clients", headers=bearer(admin_b),
                     json={"name": "squatter", "role": "clinic", "client_id": theirs.client_id})
    free = api.post(f"{ADMIN}/clients", headers=bearer(admin_b),
                    json={"name": "squatter", "role": "clinic", "client_id": "clinic-0123456789abcdef"})
    assert taken.status_code == free.status_code == 400  # an id is not the caller's to choose, taken or not
    assert taken.json() == free.json() and "client_id" in taken.text
    assert theirs.client_id not in taken.text
    assert _ids(api, admin_b) == before  # nothing registered


def test_generated_ids_carry_the_label_and_never_collide_across_tenants(
    auth_settings: Settings, api: TestClient
) -> None:
    made = []
    for tenant in ("clinic-a", "clinic-b"):
        token = get_token(api, add_client(auth_settings, tenant, "admin"))
        response = api.post(f"{ADMIN}/clients", headers=bearer(token),
                            json={"name": "EMR feed", "role": "system", "label": "emr-feed"})
        assert response.status_code == 201, response.text
        made.append(response.json()["client_id"])
    assert all((m := GENERATED.fullmatch(i)) and m["label"] == "emr-feed" for i in made)
    assert made[0] != made[1]
    unlabelled = add_client(auth_settings, "clinic-a", "referrer", fhir_user="PractitionerRole/x")
    assert (m := GENERATED.fullmatch(unlabelled.client_id)) and m["label"] == "referrer"


def test_a_label_is_checked(auth_settings: Settings, api: TestClient) -> None:
    token = get_token(api, add_client(auth_settings, "clinic-a", "admin"))
    for label in ("", "a b", "x" * 41, "ünï", "../x"):
        response = api.post(f"{ADMIN}/clients", headers=bearer(token),
                            json={"name": "x", "role": "system", "label": label})
        assert response.status_code == 400, (label, response.text)


def test_the_operator_cli_takes_a_label(
    auth_settings: Settings, api: TestClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(settings_module, "get_settings", lambda: auth_settings)
    cli.clients_add(name="Riverside EMR", role="system", scopes=None, fhir_user=None, public_key=None,
                    label="riverside", client_id=None, as_json=False, tenant="clinic-a")
    printed = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.strip())
    assert (m := GENERATED.fullmatch(printed["client_id"])) and m["label"] == "riverside"
    secret = printed["client_secret"].split()[0]
    assert get_token(api, NewClient(printed["client_id"], secret, "system", printed["scopes"]))
