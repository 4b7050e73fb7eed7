"""Settings: read once, at an entry point, into one :class:`GraceSettings`.

Sources, highest priority first: keyword arguments, ``GRACE_*`` environment variables
(nested with ``__``, e.g. ``GRACE_LEDGER__CHECKPOINT_EVERY=500``), the TOML file named by
``GRACE_CONFIG_FILE`` or ``./grace.toml`` if present, then defaults. Components never read
the environment; they receive small frozen config objects built from these settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from grace.errors import ConfigError
from grace.ledger import LedgerConfig
from grace.trust import TrustConfig

__all__ = ["GovernanceSettings", "GraceSettings", "LedgerSettings", "load_settings"]

CONFIG_FILE_ENV = "GRACE_CONFIG_FILE"
DEFAULT_CONFIG_FILE = "grace.toml"


class LedgerSettings(BaseModel):
    """``[ledger]``: the audit ledger."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origin: str = Field(
        default="grace.local/ledger",
        pattern=r"^[^\s+]+$",
        description="Name of this log in signed checkpoints; unique per deployment.",
    )
    synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "FULL"
    max_payload_bytes: int = Field(default=1 << 20, ge=2)
    checkpoint_every: int = Field(default=1000, ge=0, description="0 disables")
    checkpoint_interval_s: float = Field(default=60.0, ge=0, description="0 disables")

    def to_config(self) -> LedgerConfig:
        """The ledger's own frozen config."""
        return LedgerConfig(
            origin=self.origin,
            synchronous=self.synchronous,
            max_payload_bytes=self.max_payload_bytes,
            checkpoint_every=self.checkpoint_every,
            checkpoint_interval_s=self.checkpoint_interval_s,
        )


class GovernanceSettings(BaseModel):
    """``[governance]``: the gate and its HTTP enforcement point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["off", "log", "critical", "enforce"] = "enforce"
    mode_overrides: dict[str, Literal["off", "log", "critical", "enforce"]] = Field(
        default_factory=dict,
        description="Action pattern (shell-style) -> mode; first match wins over `mode`.",
    )
    policy_dir: Path | None = Field(
        default=None, description="A directory of *.cedar files and one schema; default: packaged."
    )
    policy_reload_interval_s: float = Field(
        default=2.0, ge=0, description="How often policy_dir is checked for changes (0: never)."
    )
    trust_threshold: float = Field(default=0.5, ge=0, le=1)
    parliament_quorum: int = Field(default=2, ge=2)
    decision_timeout_s: float = Field(default=2.0, gt=0)
    approval_ttl_s: float = Field(default=3600.0, gt=0)
    exempt_paths: tuple[str, ...] = (
        "/health",
        "/ready",
        "/metrics",
        "/favicon.ico",
        "/",
        "/console/*",
        "/docs",
        "/docs/oauth2-redirect",
        "/openapi.json",
    )
    """Paths served without governance (exact, or a prefix ending in ``/*``): probes,
    metrics, the API description, and the web console's static files (it signs in with
    an API key itself). Everything they show is public; every API call is governed."""
    max_body_bytes: int = Field(default=1 << 20, ge=1)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    jwt_key_files: tuple[Path, ...] = ()
    trusted_proxy_token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class TrustSettings(BaseModel):
    """``[trust]``: the reputation model (ADR 0007)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    half_life_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    prior_alpha: float = Field(
        default=3.0, gt=0, description="With prior_beta: a stranger scores alpha/(alpha+beta)."
    )
    prior_beta: float = Field(default=1.0, gt=0)
    reliability_weight: float = Field(default=0.30, ge=0)
    governance_compliance_weight: float = Field(default=0.30, ge=0)
    verification_record_weight: float = Field(default=0.20, ge=0)
    anomaly_history_weight: float = Field(default=0.20, ge=0)
    max_update: float = Field(default=5.0, gt=0)
    confidence_k: float = Field(default=10.0, gt=0)

    def to_config(self) -> TrustConfig:
        """The trust store's own frozen config."""
        return TrustConfig(**self.model_dump())


class ProcessSettings(BaseModel):
    """A process Grace supervises (``restart_process`` restarts it for real)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    argv: tuple[str, ...] = Field(min_length=1)
    cwd: Path | None = None
    env: dict[str, str] | None = None
    stop_timeout_s: float = Field(default=5.0, gt=0)
    autostart: bool = True


class ImmuneSettings(BaseModel):
    """``[immune]``: the immune kernel (ADR 0009)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    playbooks: Path | None = Field(
        default=None, description="A playbook YAML file (default: the packaged playbooks)."
    )
    dedup_window_s: float = Field(default=300.0, gt=0)
    budget_max_runs: int = Field(default=3, ge=1)
    budget_window_s: float = Field(default=3600.0, gt=0)
    budget_cooldown_s: float = Field(default=1800.0, ge=0)
    lease_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an incident's healing lease lives unless renewed (ADR 0012).",
    )
    processes: tuple[ProcessSettings, ...] = ()
    restart_commands: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Resource -> argv restarting it (no shell)."
    )
    shell_commands: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="The allow-list of shell_command steps: name -> argv."
    )
    webhook_prefixes: tuple[str, ...] = Field(
        default=(), description="URL prefixes http_webhook steps may call (each ends in /)."
    )


class HealthCheckSettings(BaseModel):
    """One health check: an HTTP GET (``url``) or a TCP connect (``tcp`` = host:port)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str | None = None
    tcp: str | None = Field(default=None, pattern=r"^[^:\s]+:\d{1,5}$")
    resource: str = ""
    interval_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    degraded_latency_s: float | None = Field(default=1.0, gt=0)
    fail_after: int = Field(default=2, ge=1)
    recover_after: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> HealthCheckSettings:
        if (self.url is None) == (self.tcp is None):
            raise ValueError(f"health check {self.name!r} needs exactly one of url or tcp")
        return self


class ScrapeSettings(BaseModel):
    """A Prometheus text endpoint whose samples feed the metrics monitor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    interval_s: float = Field(default=15.0, gt=0)


class MonitoringSettings(BaseModel):
    """``[monitoring]``: health checks and metric sources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    health_checks: tuple[HealthCheckSettings, ...] = ()
    scrape: tuple[ScrapeSettings, ...] = ()
    detector: str = Field(default="default", description="grace.immune.detectors name.")
    score_threshold: float = Field(default=0.5, gt=0, le=1)
    baseline_factor: float = Field(default=3.0, gt=1, description="The seed's 3x baseline rule.")
    cooldown_s: float = Field(default=300.0, ge=0)


class MeshSectionSettings(BaseModel):
    """``[mesh]``: the trigger mesh's transport and limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: Literal["memory", "nats"] = Field(
        default="memory",
        description="memory (embedded default) or nats (NATS JetStream, for several instances)",
    )
    nats_servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    nats_stream: str = Field(default="GRACE", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    nats_subject_prefix: str = Field(default="grace", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    nats_ack_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="How long JetStream waits for a handler's ack before redelivering "
        "(a crashed instance's events go to another after this).",
    )
    queue_capacity: int = Field(default=10_000, ge=1)
    workers: int = Field(default=4, ge=1)
    handler_timeout_s: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)


class GraceSettings(BaseSettings):
    """All of Grace's settings (``GRACE_`` environment prefix, optional ``grace.toml``)."""

    model_config = SettingsConfigDict(
        env_prefix="GRACE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(
        default=Path(".grace"), description="Where ledger, keys and stores live."
    )
    database_url: str | None = Field(
        default=None,
        description="postgresql://… for the scaled-out shape (GRACE_DATABASE_URL); the "
        "ledger's signing key stays in data_dir/ledger.key, the same file on every instance.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    ledger: LedgerSettings = LedgerSettings()
    governance: GovernanceSettings = GovernanceSettings()
    trust: TrustSettings = TrustSettings()
    mesh: MeshSectionSettings = MeshSectionSettings()
    immune: ImmuneSettings = ImmuneSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=1, le=65535)
    enable_governance_gate: bool = Field(
        default=True,
        validation_alias=AliasChoices(
            "enable_governance_gate", "GRACE_ENABLE_GOVERNANCE_GATE", "ENABLE_GOVERNANCE_GATE"
        ),
        description="The seed's flag: false boots the gate in mode off (nothing governed).",
    )
    enable_avn_immune: bool = Field(
        default=True,
        validation_alias=AliasChoices(
            "enable_avn_immune", "GRACE_ENABLE_AVN_IMMUNE", "ENABLE_AVN_IMMUNE"
        ),
        description="The seed's flag: false boots without the immune kernel and monitors.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then environment, then the TOML file."""
        toml_path = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )


def load_settings(**overrides: Any) -> GraceSettings:
    """Build settings; :class:`ConfigError` names each bad key and what is wrong with it."""
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit and not Path(explicit).is_file():
        raise ConfigError(f"{CONFIG_FILE_ENV}={explicit} does not name a readable file")
    try:
        return GraceSettings(**overrides)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from e
    except ValueError as e:  # malformed TOML
        raise ConfigError(f"invalid settings file: {e}") from e
