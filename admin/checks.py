"""``tickwork check``: is this deployment able to run? Each check prints one line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from schema import migrate
from schema.engine import Database
from tickwork.errors import TickworkError
from tickwork.settings import Settings
from workers.app import import_job_modules
from workers.registry import all_jobs, check_chains
from workers.scheduler.effective import check_overrides_name_known_jobs


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
        from tickwork.rabbitmq import connect  # pika only when a broker is configured

        connect(settings.broker_urls, timeout_s=5).close()
        return "RabbitMQ reachable"

    report("broker", broker)

    def schedules() -> str:
        import_job_modules(settings)  # @job refuses a schedule that does not parse
        check_chains(all_jobs())  # a chain to an unknown job, or a cycle
        if db_holder:
            check_overrides_name_known_jobs(db_holder[0], all_jobs())
        return f"{len(all_jobs())} jobs, every schedule and chain valid"

    report("schedules", schedules)

    if settings.org_backend.endswith(":CumulusCIOrgBackend"):

        def cumulusci() -> str:
            # Only this backend needs its own interpreter; the check starts its runner.
            from workers.installs.backends.cumulusci import check_environment

            return check_environment(settings)

        report("cumulusci", cumulusci)
    for db in db_holder:
        db.dispose()
    return results


def run_checks(settings: Settings, say: Callable[[str], None]) -> bool:
    """The checks as text lines (``ok    database: ...``); True if all passed."""
    results = collect_checks(settings)
    for result in results:
        say(f"{'ok  ' if result.ok else 'FAIL'}  {result.name}: {result.detail}")
    return all(result.ok for result in results)
