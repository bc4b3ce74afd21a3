"""The configuration of the FHIR EMR connector (see :mod:`connectors.fhir_emr.connector`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_core.core_schema import ValidationInfo

from connectors.fhir_emr.auth import Algorithm, load_private_key
from connectors.fhir_rest.connector import FhirRestConfig
from connectors.fhir_rest.cursor import RESOURCE_TYPE

__all__ = ["DEFAULT_SCOPE", "HUB_IDENTIFIER_SYSTEM", "FhirEmrConfig"]

DEFAULT_SCOPE = "system/*.rs system/Patient.cu system/ServiceRequest.cu system/Task.cu system/CarePlan.cu"
HUB_IDENTIFIER_SYSTEM = "urn:therapy-hub:id"

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
    reference_mode: Literal["resolve", "keep"] = Field(
        default="resolve",
        description="resolve: references become the EMR's ids (dependencies written first) and polled "
        "references become identifiers; keep: hub ids sent and polled as they are (an EMR mirroring them)",
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
