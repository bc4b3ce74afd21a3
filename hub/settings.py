"""Settings of the hub, read from the environment (prefix ``HUB_``) or a ``.env`` file.

Every setting is documented in README.md ("Configuration"); keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_VAR_DIR = Path("var")
PLACEHOLDER_SECRET = "change-me-development-only"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_VAR_DIR}/hub.db",
        description="SQLAlchemy URL of the store; SQLite file by default, PostgreSQL in production.",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker URL (redis://..., amqp://...); empty means the embedded broker.",
    )
    base_url: str = Field(
        default="",
        description="Public base URL of the hub (e.g. https://hub.example.org), used for absolute "
        "Location headers and Bundle links; empty means the URL each request came to.",
    )
    default_tenant: str = Field(default="default", description="Tenant used until authentication lands.")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Largest accepted body.")
    default_page_size: int = Field(default=20, ge=1, le=1000)
    max_page_size: int = Field(default=500, ge=1, le=10000)
    secret_key: SecretStr = Field(default=SecretStr(PLACEHOLDER_SECRET))
    log_level: str = "INFO"

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.environment == "production" and self.secret_key.get_secret_value() == PLACEHOLDER_SECRET:
            raise ValueError("HUB_SECRET_KEY must be set to a real secret when HUB_ENVIRONMENT=production")
        return self

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"


@lru_cache
def get_settings() -> Settings:
    return Settings()
