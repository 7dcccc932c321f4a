"""One validated settings object for every careloom process.

Values come from ``CARELOOM_*`` environment variables (and a ``.env`` file in
the working directory), plus Temporal's own ``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE`` and ``TEMPORAL_API_KEY``. A bad value fails at start
with a message naming the variable, never later inside a workflow.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from runtime.database_url import check_url

__all__ = ["ARTIFACTS_SETTING", "REGISTRY_SETTING", "Settings", "get_settings", "registry_sqlalchemy_url"]

_PLACEHOLDER_SALT = "careloom-development-pseudonym-salt"
Role = Literal["care_coordinator", "rn", "md"]
"""Approver roles as settings name them (``guardrails.policy.Role``; the settings layer holds values only)."""


class Settings(BaseSettings):
    """careloom configuration; every field maps to ``CARELOOM_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="CARELOOM_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Literal["development", "production"] = "development"

    # --- Temporal -----------------------------------------------------------
    temporal_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CARELOOM_TEMPORAL_ADDRESS", "TEMPORAL_ADDRESS"),
        description="host:port of a Temporal cluster or Temporal Cloud. Unset: "
        "careloom starts its embedded dev server.",
    )
    temporal_namespace: str = Field(
        default="default",
        validation_alias=AliasChoices("CARELOOM_TEMPORAL_NAMESPACE", "TEMPORAL_NAMESPACE"),
    )
    temporal_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CARELOOM_TEMPORAL_API_KEY", "TEMPORAL_API_KEY"),
    )
    temporal_tls: bool = Field(
        default=False, description="Use TLS to reach the cluster (implied by an API key)."
    )
    temporal_tls_cert: Path | None = Field(default=None, description="mTLS client certificate (PEM).")
    temporal_tls_key: Path | None = Field(default=None, description="mTLS client private key (PEM).")
    temporal_tls_ca: Path | None = Field(default=None, description="CA bundle for the server (PEM).")
    task_queue: str = "careloom"

    # --- embedded dev server --------------------------------------------------
    embedded_port: int = Field(default=7233, ge=1, le=65535)
    embedded_ui_port: int = Field(default=8233, ge=1, le=65535)
    embedded_ui: bool = True

    # --- local state ------------------------------------------------------------
    state_dir: Path = Field(default=Path(".careloom"), description="Folder for the embedded "
                            "server's database and the care records store.")
    database_url: str | None = Field(
        default=None,
        description="The care records database (records, idempotency keys, decision ledger, access log): "
        "sqlite:///PATH, or postgresql://USER[:PASSWORD]@HOST:5432/DATABASE for several worker hosts sharing one "
        "store. Unset means <state_dir>/records.db.",
    )
    model_registry_uri: str | None = Field(
        default=None,
        description="The model registry's database (MLflow's tracking and registry URI): sqlite:///PATH, or "
        "postgresql://USER[:PASSWORD]@HOST:5432/DATABASE (psycopg, as the records database; "
        "postgresql+pg8000:// for pg8000), a database of its own on the project's server, never the records "
        "database. Unset means <state_dir>/mlflow.db.",
    )
    model_artifacts_dir: Path | None = Field(
        default=None,
        description="Folder of the registered model copies (what workers load); shared storage mounted at the "
        "same path on every host when several hosts share a PostgreSQL registry. Unset means "
        "<state_dir>/model-registry.",
    )
    database_pool_size: int = Field(default=16, ge=1, le=200, description=(
        "PostgreSQL connections each process keeps (plus 4 overflow): match the worker's activity threads "
        "(16). The server's max_connections must cover every host's pool."))
    pseudonym_salt: SecretStr = Field(
        default=SecretStr(_PLACEHOLDER_SALT),
        description="Secret salt for member pseudonyms shown in summaries and search attributes.",
    )

    # --- approvers and the HTTP API ------------------------------------------------
    auth_mode: Literal["tokens", "jwt"] = Field(
        default="tokens", description="tokens: users and hashed API tokens in users_file; jwt: signed bearer "
        "tokens from an identity provider.")
    users_file: Path | None = Field(default=None, description="Unset means <state_dir>/users.json.")
    jwt_key_file: Path | None = Field(default=None, description="PEM public key (or HS secret file) of the IdP.")
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_roles_claim: str = "roles"
    jwt_jwks_url: str | None = Field(default=None, description="The IdP's JWKS URL (keys cached, refetched for "
                                     "an unknown key id: rotation); instead of CARELOOM_JWT_KEY_FILE. Unset with "
                                     "CARELOOM_OIDC_ISSUER set: the issuer's discovery document names it.")
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300, description="Clock difference allowed for exp/nbf/iat.")
    jwt_user_claim: str = Field(default="sub", description="The claim holding the approver's user id.")
    jwt_role_map: dict[str, Role] | None = Field(default=None, description=(
        'IdP role name → careloom role, JSON, e.g. {"CM-Nurse": "rn", "CM-MedicalDirector": "md"}; unset: the '
        "names care_coordinator, rn and md themselves."))
    oidc_issuer: str | None = Field(default=None, description="OpenID Connect issuer for inbox sign-in "
                                    "(authorization code + PKCE); its /.well-known/openid-configuration is read.")
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = Field(default=None, description="Unset: a public client (PKCE only).")
    oidc_redirect_url: str | None = Field(default=None, description="Where the IdP sends the browser back; unset: "
                                          "http://<api_host>:<api_port>/auth/callback.")
    oidc_scopes: str = "openid profile"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    session_idle_minutes: int = Field(default=30, ge=1, le=720, description="Inbox sign-out after this long "
                                      "without a request.")
    session_absolute_hours: int = Field(default=8, ge=1, le=24, description="Inbox sign-out this long after "
                                        "sign-in, active or not.")
    web_ui_origin: str | None = Field(default=None, description="Origin of the Temporal Web UI allowed to call "
                                      "/codec (CORS), e.g. https://temporal.plan.example; unset: the embedded "
                                      "UI (http://127.0.0.1:<embedded_ui_port>).")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Larger request bodies are refused "
                                "(413).")
    pa_max_items: int = Field(default=50, ge=1, le=999, description="Service lines (Claim.item) a "
                              "prior-authorization request may carry; more is refused (422).")
    pa_max_notes: int = Field(default=20, ge=1, le=500, description="DocumentReferences a prior-authorization "
                              "request may carry; more is refused (422).")
    pa_max_note_bytes: int = Field(default=200_000, ge=1000, description="Decoded bytes of one attachment of a "
                                   "prior-authorization request's note; larger is refused (413).")

    # --- PHI protection ---------------------------------------------------------------
    payload_keys: SecretStr | None = Field(
        default=None, description="AES-256 payload encryption keys 'kid=BASE64,old=BASE64'; the first encrypts, "
        "all decrypt. Unset: payloads are not encrypted (development only).")

    # --- signed decisions (guardrails/signing.py) ------------------------------------------------
    signing_keys: SecretStr | None = Field(
        default=None, description="Ed25519 private keys 'kid=BASE64,old=BASE64' the API and CLI sign decisions "
        "with (the first signs). Unset in development: a key made on first use in <state_dir>/signing-keys.")
    decision_keys: str | None = Field(
        default=None, description="Public keys 'kid=BASE64[@RETIRED_AT],...' runs accept decisions from (for "
        "hosts that start runs but hold no private key). Unset: derived from the signing keys.")
    decision_max_age_seconds: int = Field(default=300, ge=10, le=3600, description="A signed decision older "
                                          "than this when it reaches the run is refused.")

    # --- the planner's language model (unset: the offline rules plan) -------------------
    model: str | None = Field(default=None, description="Model name (Azure: the deployment name). Unset: the "
                              "offline planner.")
    model_base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint ending in /v1 "
                                       "(vLLM, Ollama, a gateway); unset means api.openai.com. Azure: the "
                                       "resource URL, with model_api_version set.")
    model_api_key: SecretStr | None = Field(default=None, description="API key; unset falls back to "
                                            "OPENAI_API_KEY, then to a placeholder for keyless local servers.")
    model_api_version: str | None = Field(default=None, description="Set for Azure OpenAI (e.g. 2024-10-21).")
    model_timeout_seconds: float = Field(default=30.0, gt=0, le=120, description="Per model request (two fit "
                                         "in one planning attempt of 5 minutes).")
    model_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    model_logprobs: bool = Field(default=True, description="Ask for token log-probabilities (confidence); turn "
                                 "off for endpoints that reject the parameter.")
    model_phi: Literal["safe-harbor", "limited-data-set"] = Field(
        default="safe-harbor", description="What reaches the model: safe-harbor tokenises identifiers and "
        "dates and caps ages at 90; limited-data-set (a self-hosted model inside the plan's network, under a "
        "data use agreement) also sees dates and exact ages. Direct identifiers are tokenised in both.")
    model_input_usd_per_mtok: float = Field(default=0.0, ge=0.0, description="Price of 1M prompt tokens, "
                                            "for the cost estimate recorded on every planner step.")
    model_output_usd_per_mtok: float = Field(default=0.0, ge=0.0, description="Price of 1M completion tokens.")

    # --- logging ----------------------------------------------------------------
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- guardrail thresholds (copied into the versioned policy) ---------------
    min_confidence: float = Field(default=0.75, ge=0.0, le=1.0)
    high_risk_lace: int = Field(default=10, ge=0, le=19)
    contact_window_start_hour: int = Field(default=8, ge=0, le=23)
    contact_window_end_hour: int = Field(default=21, ge=1, le=24)

    approval_routing_file: Path | None = Field(
        default=None, description="JSON file of approval queues, SLA clocks and escalation chains "
        "(guardrails.policy.ApprovalRouting); unset uses the built-in queues.")
    quality_sample_rate: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Share of automatically executed actions sampled for a "
        "retrospective human quality review (careloom quality list); 0 turns sampling off. Overrides the "
        "routing file's value when set.")
    holiday_calendar: Literal["US", "none"] = Field(
        default="US", description="Non-business days for TCM clocks: US federal holidays, or none.")

    # --- prior authorization (utilization management) ------------------------------
    um_criteria_file: Path | None = Field(
        default=None, description="The plan's medical-policy criteria (tools.criteria JSON); unset uses the "
        "criteria careloom ships (tools/criteria/um-medical-policy-2026.1.json).")
    um_auto_approve: bool = Field(
        default=True, description="Approvals with every criterion met and cited may be issued without a "
        "reviewer where the service's medical policy allows it; false sends every determination to a reviewer.")

    # --- event feeds: the ADT listener and the discharge sweep ----------------------
    adt_host: str = Field(default="127.0.0.1", description="Address the HL7 v2 MLLP listener binds.")
    adt_port: int = Field(default=2575, ge=1, le=65535, description="MLLP port (2575 is HL7's registered port).")
    adt_max_connections: int = Field(default=64, ge=1, le=10_000, description="MLLP connections held at once; "
                                     "beyond it the least recently active one is closed (docs/adt-listener.md).")
    adt_idle_timeout_seconds: float = Field(default=300, gt=0, description="An MLLP connection silent this "
                                            "long is closed (the sender reconnects).")
    adt_frame_timeout_seconds: float = Field(default=30, gt=0, description="A frame (and a TLS handshake) must "
                                             "complete within this time of its first byte, or the connection is "
                                             "closed.")
    adt_frame_limit_bytes: int = Field(default=1 << 20, ge=4096, le=64 << 20, description="Largest HL7 message "
                                       "(bytes); a larger frame is answered AR and never held in memory.")
    adt_parse_threads: int = Field(default=2, ge=1, le=64, description="Threads that parse HL7 messages (off "
                                   "the event loop).")
    adt_tls_cert_file: Path | None = Field(default=None, description="MLLP over TLS: the server certificate "
                                           "chain (PEM); unset: plain MLLP.")
    adt_tls_key_file: Path | None = Field(default=None, description="The server certificate's private key (PEM).")
    adt_tls_client_ca_file: Path | None = Field(default=None, description="CA bundle (PEM) that senders' client "
                                                "certificates must chain to; set: a client certificate is required.")
    adt_allowed_facilities: list[str] = Field(default_factory=list, description="Sending facilities accepted "
                                              "(MSH-4, or MSH-3^MSH-4); empty: any (JSON list in the environment).")
    adt_allowed_sources: list[str] = Field(default_factory=list, description="Source addresses accepted "
                                           "(CIDRs, e.g. 10.20.0.0/16); empty: any (JSON list in the environment).")
    plan_time_zone: str = Field(default="America/New_York", description="IANA zone of the plan's business "
                                "day: schedules' cron times are in it.")
    sweep_cron: str = Field(default="0 6 * * *", description="When the discharge sweep runs (5-field cron, in "
                            "plan_time_zone).")
    sweep_lookback_days: int = Field(default=30, ge=1, le=365, description="A first sweep (no watermark yet) "
                                     "looks this far back for discharges without a run.")
    outreach_lookback_days: int | None = Field(default=None, ge=1, le=3650, description="`import "
                                               "--start-outreach` and the ADT listener start outreach only for "
                                               "discharges this recent (older ones are listed, not contacted; "
                                               "--include-old starts them); unset: sweep_lookback_days.")
    max_stay_days: int = Field(default=365, ge=1, le=3650, description="A stay longer than this (or ending "
                               "before it starts) is reported as implausible and never started.")
    sweep_batch: int = Field(default=500, ge=1, le=10_000, description="Members per sweep run before it "
                             "continues as new (bounds its history).")
    sweep_concurrency: int = Field(default=20, ge=1, le=500, description="Outreach starts in flight at once.")

    # --- the care-gap campaign (docs/care-gaps.md) ---------------------------------------
    gap_campaign_cron: str = Field(default="0 6 1 * *", description="When the care-gap campaign's schedule runs "
                                   "(5-field cron, in plan_time_zone; default 06:00 on the 1st of every month).")
    gap_campaign_page: int = Field(default=200, ge=1, le=10_000, description="Members the campaign evaluates per "
                                   "activity.")
    gap_campaign_batch: int = Field(default=2_000, ge=1, le=100_000, description="Members per campaign run before "
                                    "it continues as new (bounds its history).")
    gap_campaign_concurrency: int = Field(default=20, ge=1, le=500, description="Care-gap run starts in flight "
                                          "at once.")

    # --- rate limits and metrics ----------------------------------------------------
    model_task_queue: str | None = Field(default=None, description="Task queue of model (planner) calls; unset: "
                                         "<task_queue>-model.")
    model_activities_per_second: float | None = Field(
        default=None, gt=0, description="Cap on planner/recommender activities per second across all workers "
        "(Temporal's max_task_queue_activities_per_second); unset: no cap.")
    messages_task_queue: str | None = Field(default=None, description="Task queue of member messages; unset: "
                                            "<task_queue>-messages.")
    messages_per_second: float | None = Field(
        default=None, gt=0, description="Cap on member messages per second across all workers; unset: no cap.")
    metrics_host: str = Field(default="127.0.0.1", description="Address the Prometheus endpoint binds.")
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535, description="The worker's Prometheus "
                                            "endpoint (/metrics); unset: not served. The API serves /metrics "
                                            "on its own port.")

    # --- tracing and worker deployment (docs/operations.md) ----------------------------
    tracing_exporter: Literal["none", "console", "otlp"] = Field(
        default="none", description="OpenTelemetry traces (API -> workflow -> activity -> model): none (off), "
        "console (stderr, for a developer) or otlp (OTLP/HTTP to tracing_otlp_endpoint).")
    tracing_otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP traces endpoint, e.g. "
                                              "http://otel-collector:4318/v1/traces (tracing_exporter=otlp).")
    tracing_service_name: str = Field(default="careloom", description="service.name on every span.")
    worker_deployment_name: str | None = Field(default=None, description="Temporal Worker Versioning: the "
                                               "Worker Deployment this worker belongs to; unset: unversioned.")
    worker_build_id: str | None = Field(default=None, description="This worker's build id within the deployment "
                                        "(e.g. the release's git sha); required with worker_deployment_name.")

    # --- activity behaviour -------------------------------------------------------
    tool_attempts: int = Field(default=10, ge=1, description="Attempts for a retryable tool failure.")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value)
        return value

    @field_validator("model_registry_uri")
    @classmethod
    def _known_registry(cls, value: str | None) -> str | None:
        if value is not None:
            registry_sqlalchemy_url(value)
        return value

    @field_validator("model_artifacts_dir")
    @classmethod
    def _a_folder(cls, value: Path | None) -> Path | None:
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{ARTIFACTS_SETTING}: {value} is a file; give a folder (created on the first "
                             "`careloom model register`)")
        return value

    @field_validator("um_criteria_file", "approval_routing_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        # The file's content is checked where it is used (guardrails.configured.check_deployment, at start).
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file: give the path of an existing JSON file")
        return value

    @model_validator(mode="after")
    def _production_guards(self) -> "Settings":
        if self.contact_window_end_hour <= self.contact_window_start_hour:
            raise ValueError(
                "CARELOOM_CONTACT_WINDOW_END_HOUR must be after CARELOOM_CONTACT_WINDOW_START_HOUR"
            )
        if self.environment == "production":
            if self.pseudonym_salt.get_secret_value() == _PLACEHOLDER_SALT:
                raise ValueError(
                    "CARELOOM_PSEUDONYM_SALT still has its development placeholder; "
                    "set a secret value in production"
                )
            if self.payload_keys is None:
                raise ValueError(
                    "CARELOOM_ENVIRONMENT=production needs CARELOOM_PAYLOAD_KEYS: histories must not hold "
                    "plaintext PHI; make a key with `careloom keys generate`"
                )
            if self.signing_keys is None and self.decision_keys is None:
                raise ValueError(
                    "CARELOOM_ENVIRONMENT=production needs CARELOOM_SIGNING_KEYS (API and CLI hosts) or "
                    "CARELOOM_DECISION_KEYS (hosts that only start runs): decisions must be signed; make a key "
                    "with `careloom keys signing-generate KEY_ID`"
                )
            if self.temporal_address is None:
                raise ValueError(
                    "CARELOOM_ENVIRONMENT=production needs TEMPORAL_ADDRESS: the embedded "
                    "dev server is for development only"
                )
        keys = self.jwt_key_file or self.jwt_jwks_url or self.oidc_issuer
        if self.auth_mode == "jwt" and not (keys and self.jwt_issuer and self.jwt_audience):
            raise ValueError("CARELOOM_AUTH_MODE=jwt needs CARELOOM_JWT_ISSUER, CARELOOM_JWT_AUDIENCE and the "
                             "IdP's keys: CARELOOM_JWT_JWKS_URL (or CARELOOM_OIDC_ISSUER) or CARELOOM_JWT_KEY_FILE")
        if self.jwt_key_file and self.jwt_jwks_url:
            raise ValueError("set CARELOOM_JWT_KEY_FILE or CARELOOM_JWT_JWKS_URL, not both")
        if self.oidc_issuer and not self.oidc_client_id:
            raise ValueError("CARELOOM_OIDC_ISSUER needs CARELOOM_OIDC_CLIENT_ID (the inbox's client at the IdP)")
        if self.oidc_issuer and self.auth_mode != "jwt":
            raise ValueError("CARELOOM_OIDC_ISSUER needs CARELOOM_AUTH_MODE=jwt: sign-in and API tokens come "
                             "from the same identity provider")
        if self.model_registry_uri is not None and _same_database(self.model_registry_uri, self.database_location):
            raise ValueError(f"{REGISTRY_SETTING} names the care records database: MLflow and careloom both keep "
                             "their schema version in its alembic_version table; give the registry a database of "
                             "its own on the same server (e.g. createdb careloom_registry)")
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("set both CARELOOM_TEMPORAL_TLS_CERT and CARELOOM_TEMPORAL_TLS_KEY, or neither")
        return self

    @property
    def database_location(self) -> str | Path:
        """The care records database: its PostgreSQL URL, or the path of its SQLite file."""
        if self.database_url is None:
            return self.state_dir / "records.db"
        if self.database_url.startswith("sqlite:"):
            return Path(make_url(self.database_url).database or "")
        return self.database_url

    @property
    def codec_cors_origins(self) -> list[str]:
        """The one Web UI origin /codec answers cross-origin (never a reflected Origin)."""
        if self.web_ui_origin:
            return [self.web_ui_origin.rstrip("/")]
        return [f"http://127.0.0.1:{self.embedded_ui_port}", f"http://localhost:{self.embedded_ui_port}"]

    @property
    def users_path(self) -> Path:
        return self.users_file or self.state_dir / "users.json"

    @property
    def embedded(self) -> bool:
        """True when careloom must run its own Temporal dev server."""
        return self.temporal_address is None

    @property
    def target_host(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.embedded_port}"


REGISTRY_SETTING = "CARELOOM_MODEL_REGISTRY_URI"
ARTIFACTS_SETTING = "CARELOOM_MODEL_ARTIFACTS_DIR"
_REGISTRY_FORMS = ("use sqlite:///PATH or postgresql://USER@HOST:5432/DATABASE (postgresql+psycopg:// and "
                   "postgresql+pg8000:// name the driver)")
_REGISTRY_DRIVERS = {"postgresql": "postgresql+psycopg", "postgresql+psycopg": "postgresql+psycopg",
                     "postgresql+pg8000": "postgresql+pg8000", "sqlite": "sqlite", "sqlite+pysqlite": "sqlite"}


def registry_sqlalchemy_url(uri: str) -> str:
    """The SQLAlchemy URL MLflow opens for a ``CARELOOM_MODEL_REGISTRY_URI``: a plain ``postgresql://`` names
    psycopg (the records database's driver; SQLAlchemy's own default, psycopg2, is not installed). ValueError
    naming the setting and the accepted forms; the message never carries the URL (it may hold a password)."""
    try:
        parsed = make_url(uri)
    except ArgumentError:
        raise ValueError(f"{REGISTRY_SETTING} is not a database URL; {_REGISTRY_FORMS}") from None
    driver = _REGISTRY_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(f"{REGISTRY_SETTING}: unknown scheme {parsed.drivername!r}; {_REGISTRY_FORMS}")
    if driver == "sqlite" and (not parsed.database or parsed.database == ":memory:"):
        raise ValueError(f"{REGISTRY_SETTING}: sqlite:/// needs a file path (an in-memory registry keeps "
                         f"nothing); {_REGISTRY_FORMS}")
    if driver != "sqlite" and not (parsed.host and parsed.database):
        raise ValueError(f"{REGISTRY_SETTING}: a PostgreSQL URL needs a host and a database; {_REGISTRY_FORMS}")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _same_database(registry_uri: str, records: str | Path) -> bool:
    """Whether the registry's URL names the care records database (one SQLite file, or one server database)."""
    registry = make_url(registry_uri)
    if isinstance(records, Path):
        return registry.get_backend_name() == "sqlite" and Path(registry.database or "").resolve() == records.resolve()
    other = make_url(records)
    return (registry.get_backend_name() == other.get_backend_name() == "postgresql"
            and (registry.host, registry.port or 5432, registry.database)
            == (other.host, other.port or 5432, other.database))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
