"""``/docs`` and ``/redoc`` work without internet access: every script, style and icon they load
comes from the hub itself, and their CSP forbids any other host."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.settings import Settings

_REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.fixture
def api(tmp_path: Path) -> TestClient:
    # authentication on, as a newcomer runs it: the docs need no token
    return TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", environment="test")),
                      base_url="http://127.0.0.1:8000")


def _references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCE.findall(html)]


def _path(ref: str) -> str:
    return urlsplit(ref).path


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_everything_from_the_hub(api: TestClient, page: str) -> None:
    response = api.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    refs = _references(response.text)
    scripts = [r for r in refs if _path(r).endswith(".js")]
    assert scripts, f"{page} references no script: {refs}"
    assert "/openapi.json" in refs
    for ref in refs:
        url = urlsplit(urljoin(f"http://127.0.0.1:8000{page}", ref))
        assert url.netloc == "127.0.0.1:8000", f"{page} loads {ref} from another host"
        asset = api.get(url.path)
        assert asset.status_code == 200, ref
        assert asset.content, ref
    assert "cdn." not in response.text
    assert "fonts.googleapis" not in response.text


def test_swagger_ui_bundle_is_the_real_script(api: TestClient) -> None:
    page = api.get("/docs").text
    script = next(r for r in _references(page) if _path(r).endswith("swagger-ui-bundle.js"))
    body = api.get(script)
    assert body.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert b"SwaggerUIBundle" in body.content
    assert "validatorUrl" in page  # the online validator badge stays off


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_csp_allows_the_pages_own_scripts_and_no_other_host(api: TestClient, page: str) -> None:
    csp = api.get(page).headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}
    assert "'self'" in directives["script-src"] and "'unsafe-inline'" in directives["script-src"]
    assert directives["default-src"] == ["'self'"]
    for sources in directives.values():
        assert not [s for s in sources if "." in s or s in ("*", "https:", "http:")], csp


def test_the_api_keeps_its_strict_csp(api: TestClient) -> None:
    assert api.get("/healthz").headers["content-security-policy"].startswith("default-src 'none'")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_assets_are_cached_for_long_and_the_api_is_not(api: TestClient, page: str) -> None:
    """Static scripts and styles hold no patient data: browsers keep them for a year (their URLs carry
    the package version, so an upgrade is a new URL). Pages and API answers keep ``no-store``."""
    html = api.get(page)
    assert html.headers["cache-control"] == "no-store"
    assets = [r for r in _references(html.text) if _path(r).startswith("/docs/assets/")]
    assert assets and all("?v=" in r for r in assets)
    for ref in assets:
        asset = api.get(ref)
        assert asset.status_code == 200, ref
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable", ref
        again = api.get(ref, headers={"If-None-Match": asset.headers["etag"]})
        assert again.status_code == 304 and again.headers["cache-control"].endswith("immutable")
    missing = api.get("/docs/assets/no-such-file.js")
    assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store"
    for path in ("/healthz", "/openapi.json", "/fhir/metadata", "/admin/api/jobs"):
        assert api.get(path).headers["cache-control"] == "no-store", path
