"""Your own jobs: TICKWORK_JOB_MODULES names modules every process imports."""

from __future__ import annotations

import sys

import pytest

from tickwork.errors import ConfigError
from tickwork.settings import load_settings
from workers.app import import_job_modules
from workers.registry import all_jobs

MODULE = "tests.support.throwaway_jobs_module"


def test_listed_module_declares_its_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a module with @job declarations, not imported yet (its jobs are forgotten
    # after the test: tests/conftest.py),
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    assert "t_count" not in all_jobs()
    # when it is listed, then its jobs are registered.
    settings = load_settings({"TICKWORK_JOB_MODULES": f"{MODULE}, workers.jobs"})
    import_job_modules(settings)
    assert {"t_count", "heartbeat"} <= set(all_jobs())


def test_bad_module_name_is_a_settings_error() -> None:
    with pytest.raises(ConfigError, match="TICKWORK_JOB_MODULES: 'my-jobs' is not a Python module"):
        load_settings({"TICKWORK_JOB_MODULES": "my-jobs"})


def test_module_that_cannot_import_is_named() -> None:
    settings = load_settings({"TICKWORK_JOB_MODULES": "no_such_package.jobs"})
    with pytest.raises(ConfigError, match=r"cannot import 'no_such_package\.jobs'"):
        import_job_modules(settings)
