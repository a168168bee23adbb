"""Typed settings, read once from ``TICKWORK_*`` environment variables.

Every value carries its unit in its name (``time_limit_s``, ``lifetime_minutes``).
Defaults give the embedded mode: a SQLite file under ``data_dir`` and an in-process
broker. Anything unknown or malformed stops start-up with one line that names the
variable and says what was wrong (:class:`tickwork.errors.ConfigError`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickwork.errors import ConfigError
from tickwork.plain_words import in_plain_words

ENV_PREFIX = "TICKWORK_"
EMBEDDED_BROKER_URL = "stub://"


class Settings(BaseSettings):
    """All of tickwork's configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    # --- where things live -------------------------------------------------------
    data_dir: Path = Field(Path(".tickwork"), description="Embedded mode: SQLite file and keys.")
    database_url: str | None = Field(
        None, description="postgresql://... or sqlite:///path; unset: SQLite in data_dir."
    )
    broker_url: str | None = Field(
        None,
        description="amqp://user:pass@host:5672/vhost; several, comma-separated, for the "
        "nodes of a RabbitMQ cluster (each process connects to a live one and moves on when "
        "it goes away); unset or stub://: in-process.",
    )
    queue_type: Literal["classic", "quorum"] = Field(
        "classic",
        description="RabbitMQ queue type of every queue tickwork declares: classic (one "
        "node), or quorum (replicated on a cluster; needs publisher confirms). Changing it "
        "on existing queues: `tickwork queues migrate --to ...`.",
    )
    queue_delivery_limit: int = Field(
        5,
        ge=1,
        le=1000,
        description="Quorum queues: RabbitMQ dead-letters a message returned this many times "
        "without an ack (its worker died each time), even one tickwork never saw.",
    )
    rabbitmq_management_url: str | None = Field(
        None,
        description="http(s)://user:pass@host:15672: RabbitMQ's management API, for the "
        "queue type and leader node in `tickwork queues list` (unset: AMQP counts only).",
    )
    queue_prefix: str = Field("", description="Prefix for every queue name (isolation).")
    fernet_key: SecretStr | None = Field(
        None, description="Fernet key encrypting OAuth tokens at rest; unset: file in data_dir."
    )

    # --- workers ---------------------------------------------------------------------
    worker_processes: int = Field(
        1, ge=1, le=64, description="Worker processes started by `tickwork worker`."
    )
    worker_threads: int = Field(
        8, ge=1, le=256, description="Threads per worker process (and in `tickwork run`)."
    )
    worker_prefetch: int = Field(
        0,
        ge=0,
        le=65535,
        description=(
            "Messages a worker process takes from a queue before acking (0: 4 per thread): "
            "outcomes are committed in batches, and a message is acked once its outcome is."
        ),
    )
    worker_shutdown_timeout_s: int = Field(
        30, ge=1, le=3600, description="How long SIGTERM waits for in-flight messages."
    )
    max_retries: int = Field(
        5, ge=0, le=100, description="Default retries of a failing job before its run is failed."
    )
    job_modules: str = Field(
        "",
        description="Comma-separated Python modules that declare your own `@job`s; "
        "every process imports them.",
    )
    min_backoff_ms: int = Field(
        1_000, ge=1, description="First retry delay; doubles each retry, with jitter."
    )
    max_backoff_ms: int = Field(300_000, ge=1, description="Longest retry delay.")
    default_time_limit_s: int = Field(
        600, ge=1, description="Time limit of a job that does not set its own."
    )
    tick_skip_after_s: int = Field(
        60,
        ge=1,
        description=(
            "A tick a worker receives later than this after its minute is skipped "
            "(periodiq); the next tick dispatches the missed slots by catch-up policy."
        ),
    )
    message_age_limit_s: int = Field(
        86_400, ge=1, description="Messages older than this are dropped unprocessed."
    )
    broker_confirm_delivery: bool = Field(
        True, description="Wait for RabbitMQ to confirm each publish (slower, never lost)."
    )
    broker_publish_timeout_s: float = Field(
        15.0,
        ge=0,
        le=600,
        description=(
            "With confirms: a publish RabbitMQ has not confirmed after this long fails "
            "(a quorum queue without its majority never answers); 0 waits for ever."
        ),
    )
    run_heartbeat_s: int = Field(
        5,
        ge=1,
        le=300,
        description=(
            "How often a worker refreshes the heartbeat of the runs it executes; a run "
            "whose heartbeat is 3 times older is taken to have lost its worker."
        ),
    )
    max_redeliveries: int = Field(
        3, ge=1, le=100, description="Deliveries of one message before it is dead-lettered."
    )
    backfill_max_runs: int = Field(
        100,
        ge=1,
        le=100_000,
        description="A backfill refuses to queue more runs than this unless given a max.",
    )

    # --- MetaDeploy-style jobs ----------------------------------------------------------
    job_time_limit_s: int = Field(3_600, ge=1, description="run_flows time limit (long queue).")
    short_job_time_limit_s: int = Field(60, ge=1, description="Short queue time limit.")
    max_queue_length: int = Field(
        15, ge=1, description="create_scratch_org refuses new work beyond this queue length."
    )
    token_lifetime_minutes: int = Field(
        10, ge=1, description="OAuth tokens older than this are deleted (unless in use)."
    )
    preflight_lifetime_minutes: int = Field(
        10, ge=1, description="A preflight result stays valid this long."
    )
    api_token_expire_after_days: int = Field(
        30, ge=1, description="Days a new API token lasts (per token: --expires-in-days)."
    )
    audit_retention_days: int = Field(
        365, ge=1, description="Audit-log rows older than this are deleted (daily)."
    )
    inactive_user_days: int = Field(
        30, ge=1, description="Non-staff users idle this long are deleted."
    )
    exception_retention_days: int = Field(
        90, ge=1, description="Job/preflight exceptions are cleared after this long."
    )
    dead_job_grace_s: int = Field(
        120, ge=0, description="Extra time past the time limit before a started job is canceled."
    )

    # --- Barycenter-style cleanups --------------------------------------------------------
    refresh_token_grace_s: int = Field(
        120, ge=0, description="A rotated-out refresh token is kept this long, then deleted."
    )
    webauthn_challenge_lifetime_s: int = Field(
        300, ge=1, description="WebAuthn challenges older than this are deleted."
    )

    # --- Waldur-style sync ----------------------------------------------------------------
    sync_source_url: str | None = Field(
        None,
        description="Remote resources: http(s):// JSON endpoint or file:///path; unset: no sync.",
    )
    sync_source_name: str = Field("remote", description="Name the synced resources are kept under.")
    sync_timeout_s: float = Field(
        10.0, gt=0, le=600, description="HTTP source timeout per request."
    )
    sync_retries: int = Field(
        3, ge=0, le=20, description="Retries of a failed HTTP source request."
    )
    sync_missing_policy: Literal["keep", "mark", "terminate"] = Field(
        "mark",
        description="On a full pull, resources missing upstream: keep, mark (missing_since), "
        "or terminate.",
    )
    stuck_provisioning_hours: int = Field(
        3, ge=1, description="Resources provisioning longer than this are marked erred."
    )

    # --- scheduling ------------------------------------------------------------------
    run_history_days: int = Field(30, ge=1, description="Finished run records are kept this long.")
    cleanup_batch_size: int = Field(
        20_000, ge=1, le=1_000_000, description="Rows per batch (and per transaction) in cleanups."
    )
    scheduled_jobs_email: str | None = Field(None, description="Where failure e-mails go.")

    # --- e-mail ------------------------------------------------------------------------
    smtp_host: str = Field("127.0.0.1", description="SMTP server for job e-mail.")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(None, description="SMTP login (optional).")
    smtp_password: SecretStr | None = Field(None, description="SMTP password (optional; a secret).")
    smtp_starttls: bool = Field(False, description="Use STARTTLS.")
    smtp_timeout_s: float = Field(10.0, gt=0, description="SMTP connect/send timeout.")
    mail_from: str = Field("tickwork@localhost", description="From: address of job e-mail.")

    max_message_bytes: int = Field(
        1_048_576, ge=1_024, description="Larger messages are dead-lettered, not processed."
    )
    heartbeat_file: Path | None = Field(
        None,
        description="Worker/scheduler touch this while alive; `tickwork probe liveness` reads "
        "it. Unset: one file per data dir and process role in the temp dir, "
        "`tickwork-heartbeat-<role>-<hash of data_dir>` (logged at start).",
    )
    heartbeat_interval_s: float = Field(
        10.0, gt=0, le=300, description="How often the heartbeat file is touched."
    )

    # --- HTTP and metrics ------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Admin API listen address.")
    api_port: int = Field(8080, ge=1, le=65535, description="Admin API port.")
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Metrics endpoint of `tickwork worker` / `tickwork scheduler`; unset: 9191 "
        "for the worker, 9192 for the scheduler (the API serves /metrics on its own port); "
        "0 disables it.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG, INFO, WARNING or ERROR."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines of every process: text, or json (one object per line: time, "
        "level, logger, message, role, pid; for Loki/ELK).",
    )

    # --- installs ----------------------------------------------------------------------
    org_backend: str = Field(
        "workers.installs.backends.local:LocalOrgBackend",
        description="OrgBackend class (module:Class) that runs steps and creates scratch orgs.",
    )
    install_step_timeout_s: int = Field(
        1_800, ge=1, description="Longest one install step or preflight check may run."
    )
    scratch_org_timeout_s: int = Field(
        600, ge=1, description="Longest wait for the backend to create or delete a scratch org."
    )
    backend_retries: int = Field(
        3, ge=0, le=20, description="Retries of a transient backend error (refused, timeout)."
    )
    cumulusci_python: str = Field(
        "",
        description="Python of the CumulusCI virtualenv the cumulusci org backend drives; "
        "unset: .venv-cumulusci/bin/python of this checkout (scripts/install_cumulusci.sh).",
    )
    cumulusci_project_dir: Path | None = Field(
        None,
        description="CumulusCI project (a directory with cumulusci.yml) plan steps run in; "
        "unset: a fresh empty project per step (CumulusCI's standard tasks and flows only).",
    )
    cumulusci_start_timeout_s: float = Field(
        60, gt=0, description="Longest wait for the CumulusCI runner to start and say hello."
    )
    cumulusci_cancel_grace_s: float = Field(
        5,
        ge=0,
        description="After a cancel, how long the CumulusCI runner may take to stop "
        "between tasks before its process group is killed.",
    )
    token_lifetime_running_minutes: int = Field(
        1_440,
        ge=1,
        description="OAuth tokens of a user with a running job or preflight expire after this "
        "long without a login (the shorter token_lifetime_minutes applies otherwise).",
    )
    events_exchange: str = Field(
        "tickwork.events",
        description="RabbitMQ topic exchange for job/preflight/org status events (prefixed).",
    )

    @field_validator("org_backend")
    @classmethod
    def _check_org_backend(cls, value: str) -> str:
        module, _, name = value.partition(":")
        if not name or not all(p.isidentifier() for p in [*module.split("."), name]):
            raise ValueError("must be module.path:ClassName")
        return value

    # --- metrics -----------------------------------------------------------------------
    metrics_host: str = Field(
        "0.0.0.0", description="Listen address of the worker/scheduler metrics endpoint."
    )
    metrics_dir: Path | None = Field(
        None,
        description="Prometheus multiprocess files of `tickwork worker`; unset: system temp dir.",
    )

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = urlsplit(value).scheme
        if scheme.split("+")[0] not in ("postgresql", "postgres", "sqlite"):
            raise ValueError("must start with postgresql:// or sqlite:///")
        if scheme.startswith("postgres"):
            hosts = _postgres_hosts(value)
            if not hosts or not all(host for host, _port in hosts):
                raise ValueError("has no host name")
            for host, port in hosts:
                if port and not port.isdigit():
                    raise ValueError(f"has a malformed port for host {host!r}")
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() in ("", EMBEDDED_BROKER_URL):
            return None
        urls = [part.strip() for part in value.split(",")]
        for number, url in enumerate(urls, start=1):
            which = f"URL {number} of {len(urls)} " if len(urls) > 1 else ""
            if not url:
                raise ValueError(f"{which}is empty (a stray comma?)")
            parts = urlsplit(url)
            if parts.scheme not in ("amqp", "amqps"):
                raise ValueError(
                    f"{which}must start with amqp:// or amqps:// (or be unset for in-process)"
                )
            if not parts.hostname:
                raise ValueError(f"{which}has no host name")
            try:
                parts.port  # noqa: B018 - raises on a malformed port
            except ValueError as exc:
                raise ValueError(f"{which}has a malformed port ({exc})") from None
        return ",".join(urls)

    @pydantic.model_validator(mode="after")
    def _check_queue_type(self) -> Settings:
        if self.queue_type == "quorum" and not self.broker_confirm_delivery:
            raise ValueError(
                "TICKWORK_QUEUE_TYPE=quorum needs TICKWORK_BROKER_CONFIRM_DELIVERY=true: a "
                "publish to a replicated queue is safe only once RabbitMQ confirms it"
            )
        return self

    @field_validator("rabbitmq_management_url")
    @classmethod
    def _check_management_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http(s)://user:pass@host:15672")
        return value

    @field_validator("sync_source_url")
    @classmethod
    def _check_sync_source_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "file"):
            raise ValueError("must start with http://, https:// or file://")
        if parts.scheme != "file" and not parts.hostname:
            raise ValueError("has no host name")
        if parts.scheme == "file" and not parts.path:
            raise ValueError("has no file path")
        return value

    @field_validator("queue_prefix")
    @classmethod
    def _check_queue_prefix(cls, value: str) -> str:
        if value and not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("may hold only letters, digits, '-', '_' and '.'")
        return value

    @field_validator("job_modules")
    @classmethod
    def _check_job_modules(cls, value: str) -> str:
        for name in (part.strip() for part in value.split(",")):
            if name and not all(piece.isidentifier() for piece in name.split(".")):
                raise ValueError(f"{name!r} is not a Python module name")
        return value

    @property
    def job_module_names(self) -> list[str]:
        return [part.strip() for part in self.job_modules.split(",") if part.strip()]

    @field_validator("fernet_key")
    @classmethod
    def _check_fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        from cryptography.fernet import Fernet

        try:
            Fernet(value.get_secret_value())
        except (ValueError, TypeError):
            raise ValueError("is not a valid Fernet key (32 url-safe base64 bytes)") from None
        return value

    # --- derived -----------------------------------------------------------------------
    @property
    def embedded_broker(self) -> bool:
        return self.broker_url is None

    @property
    def broker_urls(self) -> list[str]:
        """The RabbitMQ node URLs (one, or a cluster's nodes); [] in the embedded mode."""
        return self.broker_url.split(",") if self.broker_url else []

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver SQLAlchemy should use."""
        if self.database_url is None:
            return f"sqlite:///{(self.data_dir / 'tickwork.sqlite3').resolve()}"
        url = _multi_host_as_query(self.database_url)
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    def queue(self, name: str) -> str:
        """The real queue name for a logical queue (``default``, ``long``...)."""
        return f"{self.queue_prefix}{name}"


def _postgres_hosts(url: str) -> list[tuple[str, str]]:
    """The (host, port) pairs of a PostgreSQL URL: libpq's several hosts in the netloc
    (``host1:5432,host2:5432``), or SQLAlchemy's ``?host=h1:5432&host=h2:5432``."""
    from urllib.parse import parse_qs

    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    found = netloc.split(",") if netloc else parse_qs(parts.query).get("host", [])
    return [(h.rpartition(":")[0], h.rpartition(":")[2]) if ":" in h else (h, "") for h in found]


def _multi_host_as_query(url: str) -> str:
    """libpq's multi-host URL (``postgresql://u@h1:5432,h2:5432/db?...``, tried in order:
    with ``target_session_attrs=read-write`` the one that accepts writes) in the form
    SQLAlchemy parses: ``postgresql://u@/db?host=h1:5432&host=h2:5432&...``."""
    from urllib.parse import quote

    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return url
    query = "&".join(f"host={quote(h, safe=':')}" for h in hosts.split(","))
    if parts.query:
        query += "&" + parts.query
    netloc = f"{userinfo}@" if userinfo else ""
    return f"{parts.scheme}://{netloc}{parts.path}?{query}"


def _env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _describe(error: Mapping[str, Any]) -> str:
    """A validation error as one line naming the variable, in plain words."""
    if not error.get("loc"):  # a rule across settings: its message names them
        return str(error.get("msg", "")).removeprefix("Value error, ")
    field = str(error["loc"][0]) if error.get("loc") else "?"
    info = Settings.model_fields.get(field)
    bounds: dict[str, Any] = {}
    whole = None
    secret = False
    if info is not None:
        for item in info.metadata:
            for key in ("ge", "gt", "le", "lt"):
                if getattr(item, key, None) is not None:
                    bounds[key] = getattr(item, key)
        whole = info.annotation is int if info.annotation in (int, float) else None
        secret = "SecretStr" in str(info.annotation)
    message = in_plain_words(error, bounds=bounds or None, whole=whole, secret=secret)
    return f"{_env_name(field)}: {message}"


_env_twin_source: Callable[[], Iterable[str]] = tuple


def accept_env_twins(source: Callable[[], Iterable[str]]) -> None:
    """Accept the environment twins of command-line options that are not settings (e.g.
    ``TICKWORK_JOBS_FORMAT`` for ``tickwork jobs --format``): the CLI reads them itself.
    The CLI registers ``source`` (read from its typer app, so the list cannot drift); it
    is called only when some ``TICKWORK_*`` name is not a setting. Processes forked by
    the CLI (Dramatiq's workers) inherit it."""
    global _env_twin_source
    _env_twin_source = source


def _cli_only_env_names() -> frozenset[str]:
    return frozenset(_env_twin_source())


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """One line per ``TICKWORK_*`` variable that is neither a setting nor an option's
    twin, with the closest known name when there is one."""
    known = {_env_name(name) for name in Settings.model_fields}
    unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)
    if not unknown:
        return []
    accepted = known | _cli_only_env_names()
    lines = []
    for name in unknown:
        if name in accepted:
            continue
        close = difflib.get_close_matches(name, sorted(accepted), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{name}: unknown setting{hint} (every setting: `tickwork settings`)")
    return lines


def _values(env: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {
        name: env[_env_name(name)] for name in Settings.model_fields if _env_name(name) in env
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``) plus explicit overrides.

    Raises :class:`ConfigError` with one line naming the first bad variable.
    """
    env = dict(os.environ if environ is None else environ)
    unknown = unknown_settings(env)
    if unknown:
        raise ConfigError(unknown[0])
    try:
        # model_validate takes exactly these values: the environment is read once, above.
        return Settings.model_validate(_values(env, overrides))
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from None


def settings_problems(environ: Mapping[str, str] | None = None, **overrides: Any) -> list[str]:
    """Every line :func:`load_settings` could stop at (it names only the first)."""
    env = dict(os.environ if environ is None else environ)
    problems = unknown_settings(env)
    try:
        Settings.model_validate(_values(env, overrides))
    except pydantic.ValidationError as exc:
        problems += [_describe(error) for error in exc.errors()]
    return problems
