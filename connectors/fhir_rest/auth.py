"""Pluggable authentication for the FHIR REST connector.

The connector asks its :class:`FhirAuth` for headers before every request and tells it when the
server answered 401, so that schemes with expiring credentials can fetch new ones and have the
request retried once. Two schemes ship here:

* :class:`NoAuth` - an open server (sandboxes, a partner behind a VPN or mutual TLS);
* :class:`BearerTokenAuth` - a static token from the connector config (``bearer_token``).

The ``fhir_emr`` connector adds SMART Backend Services (a JWT client assertion exchanged for an
access token, :class:`connectors.fhir_emr.SmartBackendAuth`) by subclassing
:class:`~connectors.fhir_rest.FhirRestConnector` and overriding ``_build_auth()``. It caches its
access token in ``headers()`` and drops it in ``refresh()``. ``headers()`` may raise only
:class:`~connectors.base.ConnectorError`s:
:class:`~connectors.base.AuthError` when the credentials are refused (e.g. ``invalid_client``),
:class:`~connectors.base.TransientError` when the token endpoint is unreachable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

__all__ = ["BearerTokenAuth", "FhirAuth", "NoAuth"]

_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,8192}")


@runtime_checkable
class FhirAuth(Protocol):
    def headers(self) -> Mapping[str, str]:
        """Headers for the next request (e.g. ``Authorization``). Raises only ConnectorError."""
        ...

    def refresh(self) -> bool:
        """The server answered 401: forget cached credentials. True if one retry may succeed."""
        ...


class NoAuth:
    """No credentials."""

    def headers(self) -> Mapping[str, str]:
        return {}

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NoAuth()"


class BearerTokenAuth:
    """``Authorization: Bearer <token>`` with a static token; a 401 is final (nothing to refresh)."""

    def __init__(self, token: SecretStr | str) -> None:
        value = token.get_secret_value() if isinstance(token, SecretStr) else token
        if not _HEADER_SAFE.fullmatch(value):
            # never echo the token: it is a secret
            raise ValueError("bearer token must be 1-8192 visible ASCII characters")
        self._headers = {"Authorization": f"Bearer {value}"}

    def headers(self) -> Mapping[str, str]:
        return self._headers

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "BearerTokenAuth(token='**********')"
