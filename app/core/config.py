"""One `Settings` object for the whole service, read from `HEREABOUTS_*` environment variables."""

from __future__ import annotations

import ipaddress
import os
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.localtime import known_zone

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Secrets that appear in docs, examples and earlier defaults: refused in every environment.
PLACEHOLDER_SECRETS = {
    "",
    "changethis",
    "change-me",
    "changeme",
    "change_me",
    "secret",
    "jwt-secret",
    "jwt_secret",
    "your-secret-key",
    "supersecret",
    "dev-only-insecure-secret",
}
JWT_SECRET_FILE = "jwt_secret"
MIN_JWT_SECRET_CHARS = 32
DEFAULT_PUSH_HOSTS = [
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "*.push.services.mozilla.com",
    "web.push.apple.com",
    "*.notify.windows.com",
]


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    """Every setting, its default and its meaning is listed in the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="HEREABOUTS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Environment = Environment.development
    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://... URL. Unset: embedded PostGIS under data_dir.",
    )
    data_dir: Path = PROJECT_ROOT / ".data"
    embedded_port: int = 54329
    db_pool_size: int = 10
    # 0: overflow connections are opened and closed again under load — each a new backend that
    # loads PostGIS and re-plans everything (measured: 3-4 ms of PostgreSQL CPU per request)
    db_max_overflow: int = 0
    db_statement_timeout_ms: int = 15_000
    db_pool_pre_ping: bool = False

    # unset: outside production, a random key generated once into <data_dir>/jwt_secret (0600)
    jwt_secret: str = ""
    jwt_previous_secrets: list[str] = Field(default_factory=list)
    jwt_algorithm: str = "HS256"
    access_token_ttl_s: int = 1800

    max_body_bytes: int = 1_048_576
    rate_limit_enabled: bool = True
    rate_limit_per_caller_per_minute: dict[str, float] = Field(
        default_factory=lambda: {
            "auth": 10.0,
            "devices": 20.0,
            "ingest": 240.0,
            "checkins": 30.0,
            "subscriptions": 20.0,
            "imports": 10.0,
            "shifts": 30.0,
        }
    )
    rate_limit_per_ip_per_minute: dict[str, float] = Field(
        default_factory=lambda: {
            "auth": 30.0,
            "devices": 60.0,
            "ingest": 6000.0,
            "checkins": 3000.0,
            "subscriptions": 600.0,
            "imports": 60.0,
            "shifts": 3000.0,
        }
    )
    # failed logins: per (account, client IP) pair, and a slower limit per account that spares
    # IPs which logged in to that account successfully before (docs/security.md)
    login_failures_per_account_ip_per_hour: int = Field(default=10, ge=1)
    login_failures_per_account_per_hour: int = Field(default=100, ge=1)
    # proxies whose X-Forwarded-For is believed (IPs or CIDRs); none by default
    trusted_proxies: list[str] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    # the service's address as phones reach it (GPS app setup links); unset: the request's own
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    log_level: str = "INFO"
    log_json: bool = True

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    run_worker_in_process: bool = True

    # geofences
    geofence_max_vertices: int = 2000
    geofence_max_area_km2: float = 500.0
    geofence_extra_categories: list[str] = Field(default_factory=list)
    geofence_import_chunk_size: int = 500

    # check-ins and pings
    checkin_max_accuracy_m: float = 100.0
    ping_max_accuracy_m: float = 250.0
    max_future_skew_s: int = 300
    checkin_max_reach_m: float = 200.0
    checkin_cooldown_s: int = 600
    checkin_max_age_s: int = 86_400
    implausible_speed_mps: float = 70.0
    stats_min_cell_size: int = 10
    # location pings and presence (docs/presence.md)
    ping_retention_h: int = Field(default=24, ge=1, le=168)
    ping_max_batch: int = 1000
    # group commit of ping requests arriving together (app/presence/groups.py): groups running
    # at once per process, and the most requests / pings one group takes. One slot: the groups
    # are twice as large as with two, and cheaper per ping (docs/benchmarks.md)
    ping_group_slots: int = Field(default=1, ge=1, le=16)
    ping_group_max_requests: int = Field(default=64, ge=1, le=1000)
    ping_group_max_pings: int = Field(default=2000, ge=1, le=100_000)
    # the asynchronous ingest (202, app/presence/evaluator.py): run an evaluator in each API
    # process; subjects per evaluated set; how long a woken evaluator lets a set gather; how
    # often it looks for fixes other processes queued
    run_ping_evaluator_in_process: bool = True
    ping_evaluator_max_subjects: int = Field(default=500, ge=1, le=10_000)
    ping_evaluator_delay_ms: int = Field(default=100, ge=0, le=5000)
    ping_evaluator_poll_s: float = Field(default=0.5, gt=0, le=60)
    # how many sets may be evaluated at once across every process on the database (evaluators
    # take a slot, a transaction-scoped advisory lock, per set): one evaluator at a time makes
    # larger sets and costs less CPU per fix on two cores than one per API process
    # (docs/benchmarks.md); more for more cores or for `hereabouts worker`s on other machines
    ping_evaluator_slots: int = Field(default=1, ge=1, le=64)
    # ... the slots beyond the first taken only while the queue is behind: its oldest fix has
    # waited this long (0: whenever free). On the API's own cores, a second evaluator that
    # joins only when behind keeps the delay down under overload, at some CPU per fix
    # (docs/benchmarks.md); evaluators on cores of their own want 0
    ping_evaluator_extra_slots_after_ms: int = Field(default=0, ge=0, le=60_000)
    # device tokens resolved in memory while LISTEN/NOTIFY tells this process of revocations
    # (app/accounts/tokens.py; ~0.5 KiB each); 0 entries: every request asks the database
    device_token_cache_entries: int = Field(default=50_000, ge=0, le=10_000_000)
    presence_exit_margin_m: float = 25.0
    presence_enter_max_accuracy_m: float = 100.0
    presence_pass_through_max_gap_s: float = 120.0
    # a crossing between two fixes faster than this is a glitch, not a pass-through
    presence_pass_through_max_speed_mps: float = Field(default=35.0, gt=0)
    # how much evidence (a log-likelihood ratio, docs/presence.md) an enter needs: higher is
    # surer and later, lower is sooner with more enters from people passing by
    presence_enter_evidence: float = Field(default=4.0, ge=2.5, le=20.0)
    events_stream_poll_s: float = 1.0

    # web push
    vapid_private_key: str | None = None
    vapid_private_key_file: Path | None = None
    vapid_subject: str = "mailto:it@council.example"
    push_allowed_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_PUSH_HOSTS))
    push_allow_loopback: bool = False
    push_default_ttl_s: int = 86_400
    push_connect_timeout_s: float = 5.0
    push_timeout_s: float = 10.0
    push_per_origin_concurrency: int = 64
    push_worker_concurrency: int = 256
    push_worker_batch: int = 200
    push_max_attempts: int = 8
    push_lease_s: float = 60.0
    push_poll_interval_s: float = 2.0
    push_backoff_base_s: float = 2.0
    push_backoff_cap_s: float = 900.0
    push_jwt_ttl_s: int = 43_200
    push_max_subscriptions_per_person: int = 10
    webhook_allow_loopback: bool = False
    webhook_connect_timeout_s: float = 5.0
    webhook_timeout_s: float = 10.0
    webhook_per_endpoint_concurrency: int = 8
    webhook_worker_concurrency: int = 64
    webhook_lease_s: float = 60.0
    webhook_poll_interval_s: float = 1.0
    webhook_backoff_base_s: float = 5.0
    webhook_backoff_cap_s: float = 3_600.0
    webhook_retry_for_s: float = 259_200.0
    webhook_secret_overlap_s: float = 86_400.0
    webhook_max_endpoints_per_organisation: int = 20
    # the key that encrypts endpoints' signing secrets at rest (Fernet, docs/webhooks.md):
    # the value, else a file holding it, else (not in production) one generated once into
    # <data_dir>/webhook_secret_key; earlier keys still decrypt (rotation)
    webhook_secret_key: str | None = None
    webhook_secret_key_file: Path | None = None
    webhook_previous_secret_keys: list[str] = Field(default_factory=list)

    # the zone of times written in text for people (lone-working pushes), unless the organisation
    # has its own (organisations.time_zone): app/core/localtime.py
    time_zone: str = "UTC"

    # notification rules (docs/rules.md)
    rules_default_time_zone: str = "Europe/London"
    rules_default_quiet_start: str = "21:00"
    rules_default_quiet_end: str = "08:00"
    rules_default_max_per_day: int = Field(default=3, ge=1)
    rules_place_cooldown_s: int = Field(default=3600, ge=0)
    rules_task_cooldown_s: int = Field(default=3600, ge=0)
    rules_max_event_age_s: int = Field(default=900, ge=1)
    rules_broadcast_recent_checkin_min: int = Field(default=30, ge=0)
    # privacy: retention (docs/privacy.md) and abuse limits
    checkin_identifiable_days: int = Field(default=90, ge=1, le=3650)
    staff_track_retention_days: int = Field(default=30, ge=1, le=3650)
    # field workers (docs/tasks.md, "Shifts"): an ad-hoc shift ends by itself after this long
    staff_adhoc_shift_max_h: float = Field(default=12.0, gt=0, le=24)
    # how often the scheduled job closes ad-hoc shifts that reached their maximum length
    staff_shift_sweep_interval_s: float = Field(default=60.0, gt=0)
    presence_event_retention_days: int = Field(default=30, ge=1, le=3650)
    notification_retention_days: int = Field(default=30, ge=1, le=3650)
    delivery_log_retention_days: int = Field(default=30, ge=1, le=3650)
    purge_interval_s: float = 3600.0
    # tasks (docs/tasks.md): a check-in proves a visit for tasks completed within this window
    task_visit_window_min: int = Field(default=120, ge=1, le=24 * 60)
    task_photo_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=20 * 1024 * 1024)
    # photos go this long after their task was closed (done or cancelled)
    task_photo_retention_days: int = Field(default=90, ge=1, le=3650)
    geofence_max_per_organisation: int = 200_000
    # lone working (docs/tasks.md, "Lone working"): a visit's expected length when neither its
    # task nor its place's category says; then the grace before the worker is asked "Are you
    # OK?", the second grace before the alarm, and the ladder of re-sends until acknowledged
    lone_working_default_visit_min: int = Field(default=60, ge=1, le=24 * 60)
    lone_working_grace_s: int = Field(default=600, ge=0, le=24 * 3600)
    lone_working_alarm_grace_s: int = Field(default=600, ge=0, le=24 * 3600)
    lone_working_ladder_s: list[int] = Field(default_factory=lambda: [120, 300, 600])
    lone_working_extend_max_min: int = Field(default=240, ge=1, le=24 * 60)
    lone_working_tick_s: float = Field(default=15.0, gt=0, le=3600)
    # ended visits go after STAFF_TRACK_RETENTION_DAYS; acknowledged alerts (incident records,
    # with the worker's last known position) after this many days
    lone_working_alert_retention_days: int = Field(default=365, ge=1, le=3650)

    # Open311 GeoReport v2 (app/open311, docs/open311.md)
    open311_description_max_chars: int = Field(default=4000, ge=1, le=100_000)
    open311_duplicate_radius_m: float = Field(default=25.0, ge=0, le=1000)
    open311_duplicate_window_h: float = Field(default=24.0, ge=0, le=24 * 30)
    open311_adhoc_radius_m: float = Field(default=25.0, ge=1, le=1000)
    open311_notify_workers_within_m: float = Field(default=500.0, ge=0, le=50_000)
    open311_notify_fix_max_age_s: int = Field(default=900, ge=1)
    open311_closed_exact_days: int = Field(default=90, ge=1, le=3650)
    open311_default_key_rate_per_minute: int = Field(default=60, ge=1, le=100_000)
    open311_anonymous_rate_per_minute: int = Field(default=120, ge=1, le=100_000)

    # web console and PWA
    tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    tile_attribution: str = "© OpenStreetMap contributors"

    @model_validator(mode="after")
    def _secrets_and_production_rules(self) -> Self:
        if not self.jwt_secret and self.environment is not Environment.production:
            self.jwt_secret = load_or_create_jwt_secret(self.data_dir)
        for value in (self.jwt_secret, *self.jwt_previous_secrets):
            if is_placeholder_secret(value):
                raise ValueError(
                    "HEREABOUTS_JWT_SECRET (or a previous secret) is a known placeholder or empty: "
                    "set a random value of at least 32 characters, e.g. `openssl rand -base64 48`"
                    + ("" if self.environment is Environment.production else ", or unset it")
                )
        if self.environment is Environment.production:
            if len(self.jwt_secret) < MIN_JWT_SECRET_CHARS:
                raise ValueError(
                    "HEREABOUTS_JWT_SECRET must be set to a random value of at least 32 characters "
                    "in production, e.g. the output of `openssl rand -base64 48`"
                )
            if self.push_allow_loopback:
                raise ValueError("HEREABOUTS_PUSH_ALLOW_LOOPBACK must not be enabled in production")
            if self.webhook_allow_loopback:
                raise ValueError(
                    "HEREABOUTS_WEBHOOK_ALLOW_LOOPBACK must not be enabled in production"
                )
        if not self.lone_working_ladder_s or any(
            not 1 <= s <= 24 * 3600 for s in self.lone_working_ladder_s
        ):
            raise ValueError(
                "HEREABOUTS_LONE_WORKING_LADDER_S: one or more re-send delays in seconds "
                "(1-86400 each), e.g. [120, 300, 600]"
            )
        if not known_zone(self.time_zone):
            raise ValueError(
                f"HEREABOUTS_TIME_ZONE: {self.time_zone!r} is not an IANA time zone "
                "(e.g. UTC, Europe/London, America/New_York)"
            )
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"HEREABOUTS_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR network"
                ) from exc
        return self

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None


def is_placeholder_secret(value: str) -> bool:
    return value.strip().lower() in PLACEHOLDER_SECRETS


def load_or_create_jwt_secret(data_dir: Path) -> str:
    """The key in `<data_dir>/jwt_secret`, created (random, mode 0600) on first use.

    Written atomically and never over an existing file, so processes starting at once all end up
    with the same key (the same pattern as the generated VAPID key).
    """
    path = data_dir / JWT_SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
    value = path.read_text().strip()
    if len(value) < MIN_JWT_SECRET_CHARS:
        raise ValueError(f"{path} holds no usable JWT secret (delete it to generate a new one)")
    return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
