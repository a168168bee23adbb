"""E-mail about finished runs (pgeu): failures always, successes only when the job
has notify-on-success set *and* the run produced output — cron's behaviour.

Mail goes to ``TICKWORK_SCHEDULED_JOBS_EMAIL``; with it unset nothing is sent. A mail
server that is down is logged and never fails or retries the job itself.
"""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from schema.engine import Database
from schema.scheduling import JobRun, ScheduledJobConfig
from tickwork.settings import Settings

logger = logging.getLogger(__name__)


def should_notify(run: JobRun, config: ScheduledJobConfig | None) -> bool:
    if run.status == "failed":
        return True
    return (
        run.status == "succeeded"
        and config is not None
        and config.notify_on_success
        and bool((run.output or "").strip())
    )


def compose(run: JobRun, settings: Settings) -> EmailMessage:
    outcome = "FAILED" if run.status == "failed" else "succeeded"
    slot = run.scheduled_for.isoformat() if run.scheduled_for else f"{run.trigger} run"
    message = EmailMessage()
    message["Subject"] = f"[tickwork] {run.job_name} {outcome} ({slot})"
    message["From"] = settings.mail_from
    message["To"] = settings.scheduled_jobs_email or ""
    lines = [
        f"Job:       {run.job_name}",
        f"Slot:      {slot}",
        f"Run id:    {run.id}",
        f"Status:    {run.status}",
        f"Started:   {run.started_at.isoformat() if run.started_at else '-'}",
        f"Finished:  {run.finished_at.isoformat() if run.finished_at else '-'}",
        f"Records:   {run.records_processed}",
        f"Attempts:  {run.attempts}",
        "",
    ]
    if run.error:
        lines += ["Error:", run.error, ""]
    if run.output:
        lines += ["Output:", run.output, ""]
    message.set_content("\n".join(lines))
    return message


def send(message: EmailMessage, settings: Settings) -> None:
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(message)


class RunNotifier:
    """A RunRecordMiddleware.on_finished hook."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def __call__(self, run: JobRun) -> None:
        if not self.settings.scheduled_jobs_email:
            return
        with self.db.session() as session:
            config = session.get(ScheduledJobConfig, run.job_name)
        if not should_notify(run, config):
            return
        try:
            send(compose(run, self.settings), self.settings)
        except (OSError, smtplib.SMTPException):
            logger.exception("could not e-mail about run %s of %s", run.id, run.job_name)
