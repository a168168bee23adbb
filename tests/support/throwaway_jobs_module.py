"""A job module of the throw-away jobs (tests/support/throwaway_jobs.py), for child
processes: ``TICKWORK_JOB_MODULES=tests.support.throwaway_jobs_module``. Importing it
declares them; the test process itself uses the ``tj`` fixture instead."""

from tests.support.throwaway_jobs import ThrowawayJobs

ThrowawayJobs().declare()
