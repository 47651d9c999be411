"""labbot's one settings class: every knob, read from the environment (and ``.env``) at start-up.

Slack keeps Bolt's usual variable names (``SLACK_BOT_TOKEN`` ...); everything else is ``LABBOT_*``.
Validation fails fast and names the variable, so a typo stops start-up instead of a lab half-way.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.errors import ConfigError

_PLACEHOLDER = re.compile(r"(changeme|change-me|your[-_]|example|placeholder|xxxx|<.*>)", re.IGNORECASE)
_DURATION = re.compile(r"^(\d+)([mhd])$")


def parse_duration(text: str) -> timedelta:
    """Turn ``90m``, ``4h`` or ``2d`` into a timedelta; raise ValueError on anything else."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90m, 4h or 2d")
    amount, unit = int(match.group(1)), match.group(2)
    if amount <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    if amount > 100_000:
        raise ValueError(f"{text!r} is far too long")
    return {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[unit]


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Everything labbot can be told from outside. See ``.env.example`` for each variable."""

    model_config = SettingsConfigDict(
        env_prefix="LABBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # --- Slack (Bolt's own names) ---
    slack_bot_token: SecretStr | None = Field(None, validation_alias=AliasChoices("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET"))
    slack_app_token: SecretStr | None = Field(None, validation_alias=AliasChoices("SLACK_APP_TOKEN"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=AliasChoices("SLACK_API_URL"))
    channel: str | None = None
    allowed_channels: CommaList = Field(default_factory=list)
    admin_users: CommaList = Field(default_factory=list)
    # Who may create labs: Slack user ids (U…, W…) and user group ids (S…); empty: everyone. Admins always may.
    allowed_users: CommaList = Field(default_factory=list)

    # --- storage ---
    database_url: str = "sqlite+aiosqlite:///./labbot.db"
    state_dir: Path = Path("./var")
    # Encrypts per-lab SSH keys and passwords at rest. The default is only fit for the embedded demo.
    secret_key: SecretStr = SecretStr("labbot-demo-secret-key-change-me-in-production")

    # --- the lab platform (outer ZStack) ---
    platform_url: str = "http://127.0.0.1:8080/zstack/v1"
    platform_account: str = "admin"
    platform_password: SecretStr = SecretStr("password")
    platform_timeout_seconds: float = 30.0
    nested_admin_password: SecretStr = SecretStr("password")

    # --- labs ---
    profiles_dir: Path = Path(__file__).parent / "profiles"
    default_profile: str = "zcct"
    max_labs_per_user: int = Field(2, ge=1)
    max_labs_total: int = Field(20, ge=1)
    max_labs_per_class: int = Field(30, ge=1, le=99)
    pool_interval_seconds: int = Field(60, ge=1)
    resource_prefix: str = "labbot"
    ssh_user: str = "root"

    # --- scheduler ---
    scheduler_enabled: bool = True
    expiry_interval_seconds: int = Field(60, ge=5)
    expiry_warning_offsets: CommaList = Field(default_factory=lambda: ["30m"])
    destroy_retry_base_seconds: int = Field(60, ge=1)
    health_interval_minutes: int = Field(10, ge=1)
    orphan_interval_minutes: int = Field(60, ge=1)
    orphan_grace_minutes: int = Field(120, ge=0)
    orphan_delete: bool = False
    lease_seconds: int = Field(60, ge=10)
    # Builds and destroys this process runs at once; the rest wait, unclaimed, so another replica may take them.
    max_concurrent_jobs: int = Field(10, ge=1, le=200)
    # --- scheduler: re-driven destroys, health fan-out, orphan reminders, leader election (services.scheduler) ---
    destroy_retry_max_seconds: int = Field(6 * 3600, ge=60)
    health_concurrency: int = Field(5, ge=1, le=100)
    # On-demand health (/lab health, the card's button): at most once per lab per this many seconds (0: no limit).
    health_on_demand_interval_seconds: int = Field(60, ge=0, le=86_400)
    # Health rows older than this are pruned by the health sweep.
    health_retention_days: int = Field(7, ge=1, le=3650)
    orphan_report_hours: int = Field(24, ge=1)
    leader_check_seconds: float = Field(5.0, ge=0.1, le=300)

    # --- the HTTP server (bot.connections): slow and idle connections ---
    http_header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    http_body_timeout_seconds: float = Field(20.0, gt=0, le=600)
    http_max_connections: int = Field(256, ge=8, le=10_000)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # The language of channel cards, notices, the console and the CLI; a Slack user whose locale Slack reports as
    # Chinese or English is answered in theirs (services.i18n).
    language: Literal["en", "zh_CN"] = "en"

    _split = field_validator("allowed_channels", "admin_users", "allowed_users", "expiry_warning_offsets",
                             mode="before")(_split_list)

    @field_validator("language", mode="before")
    @classmethod
    def _language_tag(cls, value: object) -> object:
        # zh-CN (a BCP 47 tag, as Slack and browsers write it) means zh_CN (the gettext name).
        return value.replace("-", "_") if isinstance(value, str) else value

    @field_validator("expiry_warning_offsets")
    @classmethod
    def _offsets_are_durations(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_duration(item)
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_token(value, "xoxb-", "SLACK_BOT_TOKEN")

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_token(value, "xapp-", "SLACK_APP_TOKEN")

    @field_validator("slack_signing_secret")
    @classmethod
    def _signing_secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (len(value.get_secret_value()) < 8 or _PLACEHOLDER.search(value.get_secret_value())):
            raise ValueError("looks like a placeholder, not a real signing secret")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("platform_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _slack_pairs(self) -> Settings:
        if self.slack_bot_token is not None and self.slack_app_token is None and self.slack_signing_secret is None:
            raise ValueError("SLACK_SIGNING_SECRET is required in HTTP mode (when SLACK_APP_TOKEN is not set)")
        return self

    @model_validator(mode="after")
    def _real_secret_key_with_slack(self) -> Settings:
        if self.slack_bot_token is not None and "demo-secret-key" in self.secret_key.get_secret_value():
            raise ValueError("LABBOT_SECRET_KEY must be set to a real secret before connecting to Slack")
        return self

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is the embedded SQLite (single-process mode)."""
        return self.database_url.startswith("sqlite")

    def require_slack(self) -> None:
        """Refuse to start the Slack front end without a bot token (named in the error)."""
        if self.slack_bot_token is None:
            raise ConfigError("SLACK_BOT_TOKEN is not set: the Slack front end needs a bot token (xoxb-...)")


def _check_token(value: SecretStr | None, prefix: str, name: str) -> SecretStr | None:
    if value is None:
        return None
    raw = value.get_secret_value()
    if not raw.startswith(prefix):
        raise ValueError(f"must start with {prefix!r}")
    if _PLACEHOLDER.search(raw) or len(raw) < len(prefix) + 8:
        raise ValueError("looks like a placeholder, not a real token")
    return value


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning validation errors into one ConfigError that names each variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        problems = []
        for error in err.errors():
            field = str(error["loc"][0]) if error["loc"] else "settings"
            env = field if field.isupper() else f"LABBOT_{field.upper()}"
            problems.append(f"{env}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None

