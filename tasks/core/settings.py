"""One validated settings object from the TOML file and ``CLUSTER_EVAL_*`` environment.

Precedence: environment (``CLUSTER_EVAL_<SECTION>__<KEY>``) over the TOML file named by
``CLUSTER_EVAL_CONFIG`` (default ``./cluster-eval.toml`` if present) over built-in defaults.
Secrets are never settings: see ``tasks.core.secrets``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from tasks.core.errors import ConfigError

ENV_PREFIX = "CLUSTER_EVAL_"
CONFIG_ENV = "CLUSTER_EVAL_CONFIG"
DEFAULT_CONFIG_FILE = Path("cluster-eval.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudySettings(_Section):
    """Which evaluation this is and its study window (extract-v1.md §2)."""

    cluster: str = Field("pilot", description="key of this cluster/council; every study row carries it")
    window_start: date = date(2021, 1, 1)
    window_end: date = date(2021, 6, 30)
    data_as_of: date | None = Field(
        None, description="the date the extract's data describes: open episodes are censored at "
        "it; default the latest date found in the extract data")

    @field_validator("cluster")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", value):
            raise ValueError("must be 1-40 characters of a-z, 0-9, '-' or '_'")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> StudySettings:
        if self.window_end < self.window_start:
            raise ValueError("window_end must not be before window_start")
        return self


class IngestSettings(_Section):
    """Limits applied to an incoming extract."""

    max_bad_row_fraction: float = Field(0.05, ge=0, le=1)
    max_members: int = Field(50, ge=1)
    max_total_mb: int = Field(500, ge=1)
    max_ratio: float = Field(100.0, gt=1)
    inbox_settle_seconds: float = Field(
        60, ge=0, description="the inbox pick-up leaves a file (and its .sha256) alone until it has not "
        "changed for this many seconds, so a download still being written is never ingested")


StratifyField = Literal["primary_issue", "referral_route", "lead_carer_ethnicity", "household_size_band"]


class SurveySettings(_Section):
    """Sampling, invitations, reminders and interview sub-sample."""

    sample_size: int = Field(50, ge=1)
    seed: int = 20220110
    stratify_by: StratifyField = "primary_issue"
    min_per_stratum: int = Field(0, ge=0)
    expected_response_rate: float = Field(0.5, gt=0, le=1)
    low_response_threshold: float = Field(
        0.4, ge=0, le=1, description="no longer used: a top-up is needed by the one rule of "
        "tasks/survey/need.py (respondents below the target once every wave's fieldwork is over); "
        "still accepted so existing files keep working")
    reminder_days: tuple[int, ...] = (7, 14)
    reminder_routes: tuple[Literal["same", "phone"], ...] = ("same", "phone")
    survey_url_template: str = "https://survey.example.invalid/s/{token}"
    fieldwork_end: date | None = None
    response_grace_days: int = Field(
        28, ge=0, le=366, description="responses submitted up to this many days after "
        "survey.fieldwork_end are still imported (late paper returns); later ones are quarantined")
    interview_min: int = Field(5, ge=1)
    interview_max: int = Field(10, ge=1)
    reminder_cron: str = Field("0 9 * * *", description="when `serve` sends due reminders (UK time)")
    monitor_cron: str = Field("0 10 * * *", description="when `serve` checks the response rate (UK time)")
    approval_poll_seconds: int = Field(
        10, ge=1, le=3600, description="how often a top-up paused for approval checks for the "
        "decision (seconds)")
    lonely_stratum: Literal["certainty", "adjust", "conservative"] = Field(
        "certainty", description="variance of a single-respondent stratum, as R survey's lonely.psu "
        "certainty / adjust / average")
    ci: Literal["normal", "t"] = Field(
        "normal", description="95% CI of survey means: normal (1.96) or t with n - H degrees of freedom")

    @field_validator("survey_url_template")
    @classmethod
    def _has_token(cls, value: str) -> str:
        if "{token}" not in value:
            raise ValueError("must contain {token}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SurveySettings:
        if len(self.reminder_routes) != len(self.reminder_days):
            raise ValueError("reminder_routes must have one entry per reminder_days entry")
        if list(self.reminder_days) != sorted(set(self.reminder_days)) or any(
            d < 1 for d in self.reminder_days
        ):
            raise ValueError("reminder_days must be increasing whole days >= 1")
        if self.interview_max < self.interview_min:
            raise ValueError("interview_max must be >= interview_min")
        return self

    @property
    def target_respondents(self) -> int:
        """Respondents the survey aims for: sample size x expected response rate."""
        return max(1, round(self.sample_size * self.expected_response_rate))


class SmtpSettings(_Section):
    """Outgoing mail for e-mail invitations (password: secret ``smtp_password``)."""

    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    sender: str = "research-team@example.invalid"
    timeout_seconds: float = Field(10.0, gt=0)
    retries: int = Field(3, ge=0)
    retry_delay_seconds: float = Field(2.0, ge=0)


class RetentionSettings(_Section):
    """Deletion schedule (protocol: everything within 24 months of publication)."""

    publication_date: date | None = None
    raw_extract_days: int = Field(30, ge=0)
    contact_days_after_fieldwork: int = Field(30, ge=0)
    months_after_publication: int = Field(24, ge=1, le=24)
    prefect_history_days: int = Field(90, ge=1)
    sweep_cron: str = "0 2 * * *"


class DisclosureSettings(_Section):
    """Small-number suppression of publication tables."""

    threshold: int = Field(5, ge=1, le=20)


class DeliverySettings(_Section):
    """Indicators of delivery as intended (protocol RQ 1c), table ``delivery_indicators``.

    * ``allocation``: in-window episodes allocated a lead worker at most
      ``allocation_target_days`` days after referral (``within_target``), later
      (``over_target``), or with no allocation date (``not_allocated``);
    * ``goals_recorded``: in-window episodes with at least one goal in the family plan;
    * ``goals_reviewed``: of the episodes with goals, those with at least one goal reviewed
      (a latest score or a latest review date);
    * ``specialist_returned``: RES Team / Early Help Hub referrals of in-window episodes that
      have ended (outcome other than ``ongoing``), by whether the family was returned to the
      Cluster.
    """

    allocation_target_days: int = Field(10, ge=0, le=365)


ThemeQuestion = Literal["1a", "1b", "1c", "2a", "2b", "2c"]


class QualitativeSettings(_Section):
    """The qualitative strand (shared/spec/qualitative-v1.md): codebook, deny-list, de-identification."""

    codebook: Path | None = Field(None, description="the study codebook CSV: theme, subtheme, "
                                  "research_question, description")
    deny_list: Path | None = Field(None, description="de-identification deny-list (term,tag rows), "
                                   "mode 0600, read where it is and never copied")
    allow_list: Path | None = Field(None, description="capitalised terms the review list leaves out "
                                    "(one per line), e.g. acronyms")
    team_labels: tuple[str, ...] = Field(("Interviewer", "Facilitator", "Researcher"),
                                         description="speaker labels of the research team")
    raw_transcript_days: int = Field(30, ge=0, description="days after approval the encrypted "
                                     "transcript delivery is deleted")
    register_days_after_approval: int = Field(30, ge=0, description="days after the last session's "
                                              "approval the register's personal data are deleted")
    max_quote_words: int = Field(60, ge=5, le=500)

    @field_validator("team_labels")
    @classmethod
    def _labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not label.strip() or ":" in label for label in value):
            raise ValueError("must be one or more non-empty labels without ':'")
        return value


class DeploymentSettings(_Section):
    """Schedules of the deployments that ``cluster-eval serve`` serves (UK time, Europe/London).

    The reminders, monitor and retention crons stay in their own sections
    (``survey.reminder_cron``, ``survey.monitor_cron``, ``retention.sweep_cron``).
    """

    inbox_cron: str = Field("*/15 * * * *", description="when `serve` picks up new extracts from "
                            "HOME/inbox (UK time)")


class Settings(BaseSettings):
    """Everything a command needs to know, validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    home: Path = Path("var")
    database_url: str | None = None
    study: StudySettings = StudySettings()
    ingest: IngestSettings = IngestSettings()
    survey: SurveySettings = SurveySettings()
    smtp: SmtpSettings = SmtpSettings()
    retention: RetentionSettings = RetentionSettings()
    disclosure: DisclosureSettings = DisclosureSettings()
    delivery: DeliverySettings = DeliverySettings()
    qualitative: QualitativeSettings = QualitativeSettings()
    deployments: DeploymentSettings = DeploymentSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges the TOML file and the environment it was given into init
        # kwargs, so the process environment is never read behind its back.
        return (init_settings,)

    @property
    def database(self) -> str:
        """The SQLAlchemy URL: the configured one or a SQLite file under home."""
        return self.database_url or f"sqlite:///{(self.home / 'cluster-eval.db').resolve()}"


def _config_path(environ: dict[str, str]) -> Path | None:
    named = environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"config file {path} (from {CONFIG_ENV}) does not exist")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None


def _describe(error: Mapping[str, Any], source: str) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "settings"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "is not a known setting (see cluster-eval.example.toml)"
    elif error["type"] == "literal_error":
        message = message.replace("Input should be", "allowed:")
    return f"{source}: {key}: {message}"


class _MappingEnvSource(EnvSettingsSource):
    """``CLUSTER_EVAL_<SECTION>__<KEY>`` variables read from a given mapping, not ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file and environment into one Settings, or raise one-line ConfigError.

    The environment (``os.environ`` unless one is given) is read once, here; the variables
    win over the file.
    """
    env = dict(os.environ if environ is None else environ)
    path = _config_path(env)
    file_values = _read_toml(path) if path else {}
    source = f"config {path}" if path else "settings"
    try:
        return Settings(**_merge(file_values, _MappingEnvSource(Settings, env)()))
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0], source)) from None
