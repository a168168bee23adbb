"""Built-in jobs. Importing this package declares them all (see workers.registry)."""

from workers.jobs import (
    barycenter,  # noqa: F401
    housekeeping,  # noqa: F401
    installs,  # noqa: F401
    metadeploy_maintenance,  # noqa: F401
    sync_jobs,  # noqa: F401
)
