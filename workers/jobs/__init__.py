"""Built-in jobs. Importing this package declares them all (see workers.registry)."""

from workers.jobs import (
    housekeeping,  # noqa: F401
    installs,  # noqa: F401
)
