"""Your own jobs: TICKWORK_JOB_MODULES names modules every process imports."""

from __future__ import annotations

import pytest

from tickwork.errors import ConfigError
from tickwork.settings import load_settings
from workers.app import import_job_modules
from workers.registry import all_jobs


def test_listed_module_declares_its_jobs() -> None:
    # Given a module with @job declarations, when it is listed, then its jobs are registered.
    settings = load_settings({"TICKWORK_JOB_MODULES": "tests.unit.scheduler_jobs, workers.jobs"})
    import_job_modules(settings)
    assert {"t_count", "heartbeat"} <= set(all_jobs())


def test_bad_module_name_is_a_settings_error() -> None:
    with pytest.raises(ConfigError, match="TICKWORK_JOB_MODULES: 'my-jobs' is not a Python module"):
        load_settings({"TICKWORK_JOB_MODULES": "my-jobs"})


def test_module_that_cannot_import_is_named() -> None:
    settings = load_settings({"TICKWORK_JOB_MODULES": "no_such_package.jobs"})
    with pytest.raises(ConfigError, match=r"cannot import 'no_such_package\.jobs'"):
        import_job_modules(settings)
