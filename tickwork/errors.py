"""One exception hierarchy: callers catch by meaning, never by message text."""


class TickworkError(Exception):
    """Base of every error tickwork raises on purpose."""


class ConfigError(TickworkError):
    """A setting is unknown, missing or malformed. Raised at start-up."""


class ScheduleError(TickworkError):
    """A schedule expression or override cannot be understood."""


class UnknownJobError(TickworkError):
    """A schedule, override or request names a job that is not registered."""


class ValidationError(TickworkError):
    """A message payload or request body does not match its contract."""


class ServiceUnavailableError(TickworkError):
    """The database or the broker cannot be reached."""


class MigrationError(TickworkError):
    """The database schema is not at the revision this code expects."""


class JobBusyError(TickworkError):
    """A job asked to run now already has a run going (run it anyway with force)."""


class NoRunningSystemError(TickworkError):
    """Embedded mode: nothing would run the work, no ``tickwork run`` is running."""


class UnstorableInputError(ValidationError):
    """A text input the database cannot hold: a NUL character, an unpaired surrogate, or
    longer than its column (PostgreSQL refuses all three; SQLite would store them)."""


class UnknownRunError(TickworkError):
    """A request names a run that does not exist."""


class RunStateError(TickworkError):
    """A run is not in a state the request applies to (cancel a finished run, retry one
    that did not fail)."""


class RunCancelled(TickworkError):
    """Raised by ``ctx.check_cancelled()`` in a job whose run an operator canceled: the
    job stops there, and its run is recorded ``canceled``."""
