"""The FHIR EMR connector: ``fhir_rest`` + SMART Backend Services + writes keyed by business identifiers.

An EMR assigns its own resource ids, so the hub cannot ``PUT`` by its id as ``fhir_rest`` does. It
writes by *business identifier* instead, so that a re-sent or replayed delivery updates the
resource the first one created rather than making a duplicate::

    PUT <base>/<type>?identifier=<emr system>|<value>        (conditional update; the default)
    POST <base>/<type>                                        (conditional create; create_only_types)
    If-None-Exist: identifier=<emr system>|<value>

    Content-Type: application/fhir+json
    Idempotency-Key: <delivery.idempotency_key>
    X-Correlation-ID: <delivery.correlation_id>
    Authorization: Bearer <SMART access token>             (connectors.fhir_emr.auth)

The body is the delivery's resource with, in this order:

1. ``id`` removed (it is the hub's id; a conditional update with an id that differs from the
   matching resource's is a 400) and ``meta.versionId``/``meta.lastUpdated`` removed (the hub's
   version, meaningless to the EMR; the rest of ``meta`` - profiles, tags - is kept);
2. the *key identifier* chosen: the first ``identifier`` with a ``system`` and a ``value`` whose
   system is a key of ``identifier_system_map`` (identifiers both sides know), else the first with a
   system and a value. A resource without one gets ``{"system": hub_identifier_system, "value":
   <hub id>}`` appended and is keyed by it (so its re-sends update it too);
3. every identifier system in the resource mapped through ``identifier_system_map`` (hub system ->
   EMR system): ``identifier``, ``requisition``, ``groupIdentifier`` and ``valueIdentifier``
   anywhere in the tree (``Reference.identifier`` and contained resources included).

Search values are escaped as FHIR requires (``\\``, ``|``, ``,``, ``$``). Outcome: conditional
update 201 -> created, 200 -> updated; conditional create 201 -> created, 200 -> already there
(left unchanged: the EMR owns it after creation). More than one match is the server's 412 ->
``PermanentError`` (the identifier is not unique on the EMR: a human must merge). Other statuses as
``fhir_rest`` (401 -> one token refresh and retry; 403 -> ``AuthError``, e.g. a scope without
``.cu``; 408/429/5xx -> ``TransientError`` with ``retry_after``). ``SendResult.remote_id`` is the
EMR's id (from the returned resource or ``Location``), None if the server shows neither. Messages
name the hub's ``<type>/<id>`` and the identifier *system*, never the identifier value (an MRN is PHI).

Why conditional update rather than If-None-Exist everywhere: a conditional create ignores every later
change, so an updated referral would never reach the EMR. ``create_only_types`` is for types the EMR
takes over after creation (or whose scope is only ``.c``).

Poll is ``fhir_rest``'s (``_lastUpdated`` marks, same cursor), with identifier systems mapped back
(EMR system -> hub system) in each payload; ``external_id`` stays ``<type>/<EMR id>/_history/<v>``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

import httpx
from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator
from pydantic_core.core_schema import ValidationInfo

from connectors.base import Delivery, PermanentError, PollBatch, PolledItem, SendResult
from connectors.fhir_emr.auth import Algorithm, SmartBackendAuth, load_private_key
from connectors.fhir_rest.auth import FhirAuth
from connectors.fhir_rest.connector import (
    FHIR_JSON,
    FhirRestConfig,
    FhirRestConnector,
    _json_object,
    _raise_for_status,
    _remote_ref,
    _resource_ref,
)
from connectors.fhir_rest.cursor import RESOURCE_TYPE
from connectors.httputil import excerpt
from mappings.fhir import jsonio

__all__ = [
    "DEFAULT_SCOPE",
    "HUB_IDENTIFIER_SYSTEM",
    "FhirEmrConfig",
    "FhirEmrConnector",
    "map_identifier_systems",
]

DEFAULT_SCOPE = "system/*.rs system/Patient.cu system/ServiceRequest.cu system/Task.cu system/CarePlan.cu"
HUB_IDENTIFIER_SYSTEM = "urn:therapy-hub:id"
IDENTIFIER_KEYS = frozenset({"identifier", "requisition", "groupIdentifier", "valueIdentifier"})

_SEND_BODY_LIMIT = 1024 * 1024
_VISIBLE = re.compile(r"[\x21-\x7e]{1,255}")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,255}")  # RFC 6749 scope-token
_SYSTEM = re.compile(r"[\x21-\x7e]{1,1024}")


class FhirEmrConfig(FhirRestConfig):
    client_id: str = Field(description="The client_id the EMR registered for the hub")
    algorithm: Algorithm = Field(default="RS384", description="RS384 (RSA >= 2048 bits) or ES384 (P-384)")
    key_id: str = Field(description="kid of the key pair, as in the JWK Set given to the EMR")
    private_key: SecretStr = Field(description="PEM private key (unencrypted) matching algorithm")
    scope: str = Field(default=DEFAULT_SCOPE, description="SMART system scopes, space separated")
    token_url: AnyHttpUrl | None = Field(
        default=None, description="Token endpoint when the EMR publishes no .well-known/smart-configuration"
    )
    identifier_system_map: dict[str, str] = Field(
        default_factory=dict, description="Hub identifier system -> the EMR's system for the same identifier"
    )
    hub_identifier_system: str = Field(
        default=HUB_IDENTIFIER_SYSTEM, description="System of the identifier added to resources without one"
    )
    create_only_types: list[str] = Field(
        default_factory=list, description="Types written with a conditional create (never updated)"
    )
    bearer_token: None = Field(default=None, description="Not used: SMART Backend Services gets tokens")

    @field_validator("client_id", "key_id")
    @classmethod
    def _visible(cls, value: str) -> str:
        if not _VISIBLE.fullmatch(value):
            raise ValueError("must be 1-255 visible ASCII characters")
        return value

    @field_validator("private_key")
    @classmethod
    def _usable_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        algorithm = info.data.get("algorithm")
        if algorithm is None:  # already invalid: reported on its own field
            return value
        load_private_key(value.get_secret_value(), algorithm)  # ValueError without key material
        return value

    @field_validator("scope")
    @classmethod
    def _scope_tokens(cls, value: str) -> str:
        tokens = value.split(" ")
        if not all(_SCOPE_TOKEN.fullmatch(token) for token in tokens):
            raise ValueError("scopes are visible ASCII tokens separated by single spaces")
        return value

    @field_validator("token_url")
    @classmethod
    def _plain_token_url(cls, value: AnyHttpUrl | None, info: ValidationInfo) -> AnyHttpUrl | None:
        if value is None:
            return None
        if value.username or value.password or value.fragment:
            raise ValueError("the token URL must not carry credentials or a fragment")
        base = info.data.get("base_url")
        if value.scheme != "https" and (base is None or base.scheme != "http"):
            raise ValueError("token_url must use https (http only for an http FHIR base)")
        return value

    @field_validator("identifier_system_map")
    @classmethod
    def _one_to_one(cls, value: dict[str, str]) -> dict[str, str]:
        if not all(_SYSTEM.fullmatch(s) for pair in value.items() for s in pair):
            raise ValueError("identifier systems are 1-1024 visible ASCII characters")
        if len(set(value.values())) != len(value):
            raise ValueError("two hub systems map to one EMR system: the way back would be ambiguous")
        return value

    @field_validator("hub_identifier_system")
    @classmethod
    def _system(cls, value: str) -> str:
        if not _SYSTEM.fullmatch(value):
            raise ValueError("identifier systems are 1-1024 visible ASCII characters")
        return value

    @field_validator("create_only_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        if not all(RESOURCE_TYPE.fullmatch(t) for t in value):
            raise ValueError("resource types are names like Patient or ServiceRequest")
        return value


class FhirEmrConnector(FhirRestConnector):
    """A FHIR R4 EMR behind SMART Backend Services. ``clock`` (Unix seconds) is for tests."""

    slug: ClassVar[str] = "fhir_emr"
    Config: ClassVar[type[BaseModel]] = FhirEmrConfig

    def __init__(
        self,
        config: FhirEmrConfig | Mapping[str, Any],
        *,
        transport: httpx.BaseTransport | None = None,
        auth: FhirAuth | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock or time.time
        super().__init__(config, transport=transport, auth=auth)
        self._forward = dict(self.emr_config.identifier_system_map)
        self._backward = {emr: hub for hub, emr in self._forward.items()}

    @property
    def emr_config(self) -> FhirEmrConfig:
        return cast(FhirEmrConfig, self.config)

    @property
    def auth(self) -> FhirAuth:
        return self._auth

    def _build_auth(self) -> FhirAuth:
        config = self.emr_config
        return SmartBackendAuth(
            self._client,
            fhir_base=self._base,
            client_id=config.client_id,
            private_key=config.private_key,
            key_id=config.key_id,
            algorithm=config.algorithm,
            scope=config.scope,
            token_url=str(config.token_url) if config.token_url is not None else None,
            timeout=config.timeout_seconds,
            clock=self._clock,
        )

    # ------------------------------------------------------------------------------- Sender

    def send(self, delivery: Delivery) -> SendResult:
        resource_type, hub_id = _resource_ref(delivery.payload)
        resource = jsonio.loads(delivery.payload)  # _resource_ref checked it is a JSON object
        body, (system, value) = self._outbound(resource, resource_type, hub_id)
        token = f"{_escape(system)}|{_escape(value)}"
        headers = {
            "Content-Type": FHIR_JSON,
            "Idempotency-Key": delivery.idempotency_key,
            "X-Correlation-ID": delivery.correlation_id,
        }
        url = f"{self._base}/{resource_type}"
        create_only = resource_type in self.emr_config.create_only_types
        kind = "create" if create_only else "update"
        what = f"FHIR conditional {kind} {self._target} {resource_type}/{hub_id} by {excerpt(system, 120)}"
        if create_only:
            answer = self._exchange(
                "POST",
                url,
                what=what,
                limit=_SEND_BODY_LIMIT,
                content=jsonio.dumpb(body),
                headers={**headers, "If-None-Exist": str(httpx.QueryParams({"identifier": token}))},
            )
        else:
            answer = self._exchange(
                "PUT",
                url,
                what=what,
                limit=_SEND_BODY_LIMIT,
                content=jsonio.dumpb(body),
                headers=headers,
                params={"identifier": token},
            )
        _raise_for_status(answer, what)
        returned = _json_object(answer.body) if answer.complete else None
        remote_id, version = _remote_ref(returned, answer.headers)
        if answer.status == 201:
            outcome = "created"
        else:
            outcome = "already there, unchanged" if create_only else "updated"
        detail = f"{what} -> {answer.status} {outcome}"
        if remote_id:
            detail += f" as {resource_type}/{remote_id}"
        if version:
            detail += f" (version {version})"
        return SendResult(
            status=answer.status, remote_id=remote_id, detail=detail, duration_ms=answer.duration_ms
        )

    def _outbound(
        self, resource: dict[str, Any], resource_type: str, hub_id: str
    ) -> tuple[dict[str, Any], tuple[str, str]]:
        """(the body to send, the key identifier as EMR system and value). See the module docstring."""
        body = {k: v for k, v in resource.items() if k != "id"}
        meta = body.get("meta")
        if isinstance(meta, dict):
            kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
            if kept:
                body["meta"] = kept
            else:
                del body["meta"]
        identifiers = body.get("identifier")
        key = _key_identifier(identifiers, self._forward)
        if key is None:
            if identifiers is not None and not isinstance(identifiers, list):
                raise PermanentError(
                    f"{resource_type}/{hub_id} has no identifier list to write it by (fhir_emr keys "
                    "writes by identifier)"
                )
            key = (self.emr_config.hub_identifier_system, hub_id)
            body["identifier"] = [*(identifiers or []), {"system": key[0], "value": key[1]}]
        body = map_identifier_systems(body, self._forward)
        return body, (self._forward.get(key[0], key[0]), key[1])

    # ------------------------------------------------------------------------------- Poller

    def poll(self, cursor: str | None, limit: int) -> PollBatch:
        batch = super().poll(cursor, limit)
        if not self._backward:
            return batch
        items = [
            PolledItem(
                item.external_id,
                jsonio.dumpb(map_identifier_systems(jsonio.loads(item.payload), self._backward)),
                item.content_type,
            )
            for item in batch.items
        ]
        return PollBatch(items=items, next_cursor=batch.next_cursor)


# ---------------------------------------------------------------------------------- helpers


def map_identifier_systems(value: Any, mapping: Mapping[str, str]) -> Any:
    """A copy of ``value`` with the ``system`` of every Identifier (see IDENTIFIER_KEYS) mapped."""
    if isinstance(value, list):
        return [map_identifier_systems(v, mapping) for v in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key in IDENTIFIER_KEYS:
            item = _map_identifiers(item, mapping)
        result[key] = map_identifier_systems(item, mapping)
    return result


def _map_identifiers(value: Any, mapping: Mapping[str, str]) -> Any:
    if isinstance(value, list):
        return [_map_identifiers(v, mapping) for v in value]
    if isinstance(value, dict):
        system = value.get("system")
        if isinstance(system, str) and system in mapping:
            return {**value, "system": mapping[system]}
    return value


def _key_identifier(identifiers: Any, mapped: Mapping[str, str]) -> tuple[str, str] | None:
    """The identifier a resource is written by (hub system, value), or None."""
    usable = [
        (i["system"], i["value"])
        for i in (identifiers if isinstance(identifiers, list) else [])
        if isinstance(i, dict)
        and isinstance(i.get("system"), str)
        and i["system"]
        and isinstance(i.get("value"), str)
        and i["value"]
    ]
    for system, value in usable:
        if system in mapped:
            return system, value
    return usable[0] if usable else None


def _escape(text: str) -> str:
    """FHIR search escaping of a token part: backslash, pipe, comma and dollar."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")
