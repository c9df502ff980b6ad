"""The service's settings, read from the environment (prefix ``ACPROP_TUNER_``).

Owns every knob of the API process: where the database is, how long to wait for it, the
request-size limit, the per-key rate limit and the per-tenant quotas. The database URL is a
``SecretStr`` so that a password in it never reaches a log line, an error or a ``repr``;
use :meth:`Settings.database_url_value` where the real URL is needed and
:meth:`Settings.database_url_redacted` everywhere else.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from optimizer.tasks.trust import TaskTrust

APP_NAME = "acprop-tuner"


def default_data_dir() -> Path:
    """The per-user data directory (XDG on Linux, the platform's usual place elsewhere)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / APP_NAME


class Settings(BaseSettings):
    """Everything the API process can be told; each field is ``ACPROP_TUNER_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="ACPROP_TUNER_", extra="ignore")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="where the embedded SQLite database lives when no DATABASE_URL is given",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db; "
        "default: sqlite file acprop-tuner.sqlite in DATA_DIR",
    )

    # The database must never make a request hang: short waits, then 503.
    db_connect_timeout_s: int = Field(default=3, ge=1, le=60)
    db_statement_timeout_ms: int = Field(default=10_000, ge=100, le=600_000)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_pool_timeout_s: float = Field(default=5.0, gt=0, le=120)
    retry_after_unavailable_s: int = Field(default=2, ge=1, le=600)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Users' data sets (service/datasets.py): the upload as sent (a streamed body, counted as
    # it arrives; MAX_BODY_BYTES holds for every other route) and its arrays unpacked (an
    # .npz may be compressed: a zip bomb stops here, before anything is inflated).
    max_dataset_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=1024**3)
    max_dataset_unpacked_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=1024**3)

    # Per API key: a token bucket. Busy workers send a few calls per second each and a live
    # dashboard polls about once a second, so the defaults leave plenty of headroom.
    rate_limit_per_s: float = Field(default=50.0, gt=0, le=1_000_000)
    rate_limit_burst: int = Field(default=200, ge=1, le=1_000_000)

    # Per tenant: exceeding one answers 429.
    quota_active_jobs: int = Field(default=20, ge=1, le=1_000_000)
    quota_trials_per_job: int = Field(default=10_000, ge=1, le=1_000_000)
    quota_steps_per_trial: int = Field(default=1_000_000, ge=1, le=100_000_000)
    quota_seeds_per_trial: int = Field(default=32, ge=1, le=1024)
    retry_after_quota_s: int = Field(default=60, ge=1, le=86_400)

    # The worker protocol (service.broker). A lease not renewed within its TTL is taken back
    # by the reaper within about one period; workers heartbeat at a fraction of the TTL.
    lease_ttl_s: float = Field(default=60.0, ge=1.0, le=86_400)
    reaper_period_s: float = Field(default=2.0, gt=0, le=3_600)
    lease_retry_after_s: float = Field(default=2.0, gt=0, le=3_600)
    max_lease_capacity: int = Field(default=256, ge=1, le=4_096)

    # The recommendation endpoint (service/recommendation_cache.py): a request with no answer
    # it may serve waits for the fit under way until that fit has run this long; an answer on
    # older trials is served while it is at most max_lag_s old.
    recommendation_wait_s: float = Field(default=10.0, ge=0, le=600)
    recommendation_max_lag_s: float = Field(default=300.0, gt=0, le=86_400)
    # Fit in child processes, off the server's interpreter lock (service/recommendation_fitter.py);
    # `acprop-tuner serve` turns it on unless this is set.
    recommendation_fit_process: bool = False

    log_level: str = Field(default="info", pattern="^(critical|error|warning|info|debug)$")

    # Task code is trusted code (optimizer/tasks/trust.py): besides built-in tasks and
    # installed entry points, a job may name `package.module:factory` only under these
    # comma-separated module prefixes. Each worker checks its own setting again.
    allowed_task_modules: str = Field(
        default="",
        max_length=4_000,
        description="comma-separated module prefixes whose `module:factory` task names jobs "
        "may use (default: none)",
    )

    @field_validator("allowed_task_modules")
    @classmethod
    def _prefixes(cls, value: str) -> str:
        TaskTrust.of(value.split(","), environ=False)  # ValueError names a bad prefix
        return value

    def task_trust(self) -> TaskTrust:
        """The task modules this server's operator allowed."""
        return TaskTrust.of(self.allowed_task_modules.split(","), environ=False)

    def database_url_value(self) -> str:
        """The real database URL (may hold a password: never log it)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'acprop-tuner.sqlite'}"

    def database_url_redacted(self) -> str:
        """The database URL with any password masked, safe for logs and messages."""
        try:
            return make_url(self.database_url_value()).render_as_string(hide_password=True)
        except Exception:  # an unparsable URL is reported without its text
            return "<unparsable database URL>"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url_value().startswith("sqlite")


def get_settings() -> Settings:
    """Settings from the current environment (a new object each call: tests change env)."""
    return Settings()
