"""``tickwork check``: is this deployment able to run? Each check prints one line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, text

from tickwork.errors import ScheduleError, TickworkError, UnknownJobError
from tickwork.settings import Settings

if TYPE_CHECKING:
    from schema.engine import Database


def check_registered_schedules(settings: Settings) -> None:
    """Every declared job (built-in and ``TICKWORK_JOB_MODULES``) has a schedule that parses;
    raises naming the job otherwise."""
    from workers.registry import all_jobs, import_job_modules

    import_job_modules(settings)
    from workers.scheduler.schedules import parse_schedule

    for spec in all_jobs().values():
        if spec.schedule is None:
            continue
        try:
            parse_schedule(spec.schedule, spec.timezone)
        except ScheduleError as exc:
            raise ScheduleError(f"job {spec.name!r}: {exc}") from None


def check_configured_jobs(db: object) -> None:
    """Every override row in the database names a registered job."""
    from schema.engine import Database
    from schema.scheduling import ScheduledJobConfig
    from workers.registry import all_jobs

    assert isinstance(db, Database)
    known = set(all_jobs())
    with db.session() as session:
        names = list(session.scalars(select(ScheduledJobConfig.job_name)))
    for name in names:
        if name not in known:
            raise UnknownJobError(
                f"scheduled_job_configs has settings for {name!r}, which is not a registered "
                f"job (known: {', '.join(sorted(known))})"
            )


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def collect_checks(
    settings: Settings, open_db: Callable[[Settings], Database] | None = None
) -> list[CheckResult]:
    """Every check, in order; a failure is one line of detail, never an exception.

    ``open_db`` opens the database (the CLI's creates and migrates an embedded SQLite file
    on first use); by default the database is only opened.
    """
    from schema import migrate
    from schema.engine import Database

    results: list[CheckResult] = []

    def report(name: str, fn: Callable[[], str]) -> None:
        try:
            results.append(CheckResult(name, True, fn()))
        except Exception as exc:  # every failure becomes one line
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            results.append(CheckResult(name, False, text))

    results.append(
        CheckResult(
            "settings",
            True,
            ("embedded" if settings.embedded_broker else "rabbitmq")
            + (" + sqlite" if settings.is_sqlite else " + postgresql"),
        )
    )
    db_holder: list[Database] = []

    def database() -> str:
        db = open_db(settings) if open_db is not None else Database(settings)
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current, head = migrate.current_revision(db.engine), migrate.head_revision()
        if current != head:
            db.dispose()
            raise TickworkError(
                f"reachable, but at revision {current} not {head}: run `tickwork migrate`"
            )
        db_holder.append(db)  # only a migrated database is read by later checks
        return f"reachable, at head ({head})"

    report("database", database)

    def broker() -> str:
        if settings.embedded_broker:
            return "in-process (embedded mode)"
        import pika

        params = pika.URLParameters(settings.broker_url or "")
        params.socket_timeout = 5
        params.blocked_connection_timeout = 5
        connection = pika.BlockingConnection(params)
        connection.close()
        return "RabbitMQ reachable"

    report("broker", broker)

    def schedules() -> str:
        from workers.registry import all_jobs

        check_registered_schedules(settings)
        if db_holder:
            check_configured_jobs(db_holder[0])
        return f"{len(all_jobs())} jobs, every schedule valid"

    report("schedules", schedules)
    for db in db_holder:
        db.dispose()
    return results


def run_checks(settings: Settings, say: Callable[[str], None]) -> bool:
    """The checks as text lines (``ok    database: ...``); True if all passed."""
    results = collect_checks(settings)
    for result in results:
        say(f"{'ok  ' if result.ok else 'FAIL'}  {result.name}: {result.detail}")
    return all(result.ok for result in results)
