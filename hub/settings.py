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
    token_audiences: list[str] = Field(
        default_factory=list,
        description="The token endpoint URLs a client assertion's aud may name (JSON list); default: "
        "HUB_BASE_URL + /auth/token. One of the two is required in production: the Host header is never trusted.",
    )
    default_tenant: str = Field(default="default", description="Tenant used until authentication lands.")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Largest accepted body.")
    default_page_size: int = Field(default=20, ge=1, le=1000)
    max_page_size: int = Field(default=500, ge=1, le=10000)
    secret_key: SecretStr = Field(
        default=SecretStr(PLACEHOLDER_SECRET),
        description="Key for payloads and connector secrets at rest; must be set in production.",
    )
    secret_key_previous: str = Field(
        default="", description="Comma-separated older keys, still accepted for reading during a rotation."
    )
    task_queue: str = Field(
        default="hub",
        pattern=r"^[A-Za-z0-9_.\-]{1,100}$",
        description="Broker queue of the delivery tasks (separate hubs sharing a broker use different queues).",
    )
    sweep_interval_seconds: float = Field(
        default=10.0, gt=0, description="How often beat runs the sweeper that re-enqueues lost jobs."
    )
    poll_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often beat polls the connectors that can poll (EMR feeds)."
    )
    billing_poll_seconds: float = Field(
        default=300.0, gt=0, description="How often beat polls the clearinghouses (x12_billing) for response files."
    )
    worker_shutdown_seconds: float = Field(
        default=10.0, gt=0, description="A stopping worker finishes its running tasks within this time, then exits."
    )
    var_dir: Path = Field(
        default=DEFAULT_VAR_DIR, description="Where the embedded broker and the beat schedule live (./var)."
    )
    requeue_grace_seconds: float = Field(
        default=30.0, ge=0, description="A due job not picked up within this time is enqueued again."
    )
    certification_rules: dict[str, dict[str, int | bool | None]] = Field(
        default_factory=dict,
        description="Per-payer certification rules as JSON, payer id -> {initial_certification_days, "
        "max_certification_days, progress_report_visits, recert_on_plan_change}; others follow Medicare.",
    )
    clinics: dict[str, dict[str, str | list[str]]] = Field(
        default_factory=dict,
        description="Per-tenant clinic details as JSON, tenant -> {name, line: [...], city, state, postal_code, "
        "phone, fax, direct}: written onto the tenant's Organization and printed on the plan of care.",
    )
    message_retention_days: int = Field(
        default=30, ge=1, description="Payloads of finished messages are erased after this many days."
    )
    log_level: str = "INFO"
    auth_disabled: bool = Field(
        default=False,
        description="DEVELOPMENT ONLY: no authentication, every caller is an administrator of the default "
        "tenant. Refused when HUB_ENVIRONMENT=production.",
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (none by default).")
    db_pool_size: int = Field(
        default=20, ge=1, le=500, description="PostgreSQL connections each process keeps open (its pool)."
    )
    db_max_overflow: int = Field(
        default=20, ge=0, le=500, description="Extra PostgreSQL connections a busy process may open for a while."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a Prometheus scraper sends to GET /metrics for every tenant's series "
        "(an administrator's access token shows its own tenant's). Unset: administrators only.",
    )
    rate_limit_per_minute: int = Field(default=1200, ge=0, description="Requests a minute per client (0: no limit).")
    fault_pause_before_commit: str = Field(
        default="", description="Test environment only: a receive path (fax-receive, direct-receive) that "
        "blocks just before its commit, until the process is killed (see hub.faults). Ignored elsewhere.",
    )
    fault_pause_after_commit: str = Field(
        default="", description="Test environment only: a receive path that blocks just after its commit, "
        "before it answers, until the process is killed (see hub.faults). Ignored elsewhere.",
    )

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.environment == "production" and self.secret_key.get_secret_value() == PLACEHOLDER_SECRET:
            raise ValueError("HUB_SECRET_KEY must be set to a real secret when HUB_ENVIRONMENT=production")
        if self.environment not in ("development", "test") and not (self.base_url or self.token_audiences):
            raise ValueError(
                "HUB_BASE_URL (or HUB_TOKEN_AUDIENCES) must be set when HUB_ENVIRONMENT=production: the token "
                "endpoint checks client assertions against it instead of the Host header of each request"
            )
        if self.environment == "production" and self.auth_disabled:
            raise ValueError("HUB_AUTH_DISABLED is a development flag and is refused when HUB_ENVIRONMENT=production")
        return self

    @property
    def effective_broker_url(self) -> str:
        """The configured broker, else the embedded one (kombu's SQLAlchemy transport on SQLite)."""
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{self.var_dir.resolve()}/broker.sqlite"

    @property
    def previous_keys(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.secret_key_previous.split(",") if k.strip())

    @property
    def assertion_audiences(self) -> list[str]:
        """The configured audiences of client assertions (empty: development and tests take the URL a
        request came to)."""
        if self.token_audiences:
            return [a.rstrip("/") for a in self.token_audiences]
        return [f"{self.base_url}/auth/token"] if self.base_url else []

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"


@lru_cache
def get_settings() -> Settings:
    return Settings()
