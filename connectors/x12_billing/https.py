"""The HTTPS transport: a clearinghouse's REST drop for claim files and response files.

::

    POST   {base}/claims            body: the X12 file (application/edi-x12)
                                    Idempotency-Key: <key>, X-Filename: <remote name>
                                    -> 2xx JSON {"id": ..., "name": ..., "duplicate": bool}
    GET    {base}/responses         -> JSON {"responses": [{"name": ..., "size": ...}, ...]}
    GET    {base}/responses/{name}  -> the file's bytes
    DELETE {base}/responses/{name}  -> 2xx; 404 (already gone) counts as acknowledged

Authentication: ``Authorization: Bearer <token>`` or HTTP Basic. Statuses are classified by
:mod:`connectors.httputil` (408/429/5xx transient, 401/403 auth, other 4xx permanent); only the
scheme, host and port of the base URL appear in messages.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import time
from typing import Any
from urllib.parse import quote

import httpx

from connectors.base import X12_EDI, ConfigError, PermanentError
from connectors.httputil import (
    error_for_status,
    ms_since,
    read_capped,
    safe_target,
    shared_ssl_context,
    translate_transport_error,
)
from connectors.x12_billing.config import HttpsSettings
from connectors.x12_billing.model import RemoteFile, SubmitReceipt, is_temporary, remote_name

__all__ = ["X12_CONTENT_TYPE", "HttpsTransport"]

X12_CONTENT_TYPE = X12_EDI
_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError)
_ANSWER_LIMIT = 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_ID = re.compile(r"[\x21-\x7e]{1,200}")


class HttpsTransport:
    def __init__(self, settings: HttpsSettings, *, timeout: float, connect_timeout: float, max_bytes: int) -> None:
        self.settings = settings
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._base = str(settings.base_url).rstrip("/")
        verify: ssl.SSLContext | bool
        if not settings.verify_tls:
            verify = False
        elif settings.ca_bundle_path:
            try:
                verify = ssl.create_default_context(cafile=settings.ca_bundle_path)
            except (OSError, ssl.SSLError):
                raise ConfigError("invalid x12_billing config: https.ca_bundle_path is not a readable PEM file",
                                  fields=["https.ca_bundle_path"]) from None
        else:
            verify = shared_ssl_context()
        auth: httpx.Auth | None = None
        headers: dict[str, str] = {}
        if settings.bearer_token is not None:
            headers["Authorization"] = f"Bearer {settings.bearer_token.get_secret_value()}"
        elif settings.username is not None and settings.password is not None:
            auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout), verify=verify,
                                    follow_redirects=False, trust_env=False, auth=auth, headers=headers)
        self.what = f"x12_billing HTTPS {safe_target(self._base)}"

    def _request(self, method: str, path: str, *, limit: int, **kwargs: Any) -> tuple[httpx.Response, bytes, float]:
        what = f"{self.what} {method} {path.split('/', 2)[1] if path.count('/') else path}"
        started = time.perf_counter()
        try:
            with self._client.stream(method, self._base + path, **kwargs) as response:
                body, complete = read_capped(response, limit)
        except _TRANSPORT_ERRORS as exc:
            raise translate_transport_error(exc, what=what, timeout=self._timeout,
                                            duration_ms=ms_since(started)) from None
        duration_ms = ms_since(started)
        error = error_for_status(response.status_code, what=what, reason=response.reason_phrase,
                                 retry_after=response.headers.get("Retry-After"), body=body, duration_ms=duration_ms)
        if error is not None:
            if response.status_code == 404 and method == "DELETE":
                return response, body, duration_ms  # already acknowledged
            raise error
        if not complete:
            raise PermanentError(f"{what} -> {response.status_code}: the answer is larger than allowed",
                                 status=response.status_code, duration_ms=duration_ms)
        return response, body, duration_ms

    def submit(self, filename: str, content: bytes, idempotency_key: str) -> SubmitReceipt:
        name = remote_name(filename, idempotency_key)
        response, body, duration_ms = self._request(
            "POST", self.settings.claims_path, limit=_ANSWER_LIMIT, content=content,
            headers={"Content-Type": X12_CONTENT_TYPE, "Idempotency-Key": idempotency_key, "X-Filename": name})
        answer = _json(body)
        remote_id = answer.get("id")
        return SubmitReceipt(transport="https", remote_name=name, size=len(content),
                             sha256=hashlib.sha256(content).hexdigest(), duration_ms=duration_ms,
                             status=response.status_code,
                             remote_id=remote_id if isinstance(remote_id, str) and _ID.fullmatch(remote_id) else None,
                             duplicate=answer.get("duplicate") is True)

    def poll_responses(self) -> list[RemoteFile]:
        path = self.settings.responses_path
        _, body, _ = self._request("GET", path, limit=_ANSWER_LIMIT)
        listed = _json(body).get("responses")
        if not isinstance(listed, list):
            raise PermanentError(f"{self.what} GET responses: the answer is not a list of responses")
        names = sorted({str(item.get("name")) for item in listed if isinstance(item, dict)})
        found: list[RemoteFile] = []
        for name in names:
            if not _NAME.fullmatch(name) or is_temporary(name):
                continue
            try:
                _, content, _ = self._request("GET", f"{path}/{quote(name)}", limit=self._max_bytes + 1)
            except PermanentError as exc:
                if exc.status == 404:
                    continue  # taken away since the listing (another poller acknowledged it)
                raise
            if len(content) > self._max_bytes:
                raise PermanentError(f"{self.what} GET responses: a response file is larger than max_response_bytes")
            found.append(RemoteFile(name=name, size=len(content), content=content))
        return found

    def acknowledge(self, remote_file: RemoteFile) -> None:
        if not _NAME.fullmatch(remote_file.name):
            raise PermanentError(f"{self.what} DELETE responses: not a response file name")
        self._request("DELETE", f"{self.settings.responses_path}/{quote(remote_file.name)}", limit=_ANSWER_LIMIT)

    def probe(self) -> str:
        response, _, _ = self._request("GET", self.settings.responses_path, limit=_ANSWER_LIMIT)
        return f"{self.what} GET responses -> {response.status_code}"

    def close(self) -> None:
        self._client.close()


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
