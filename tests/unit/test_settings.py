"""Settings: defaults give the embedded mode; bad values fail with one named line."""

from pathlib import Path

import pytest

from tickwork.errors import ConfigError
from tickwork.settings import load_settings


def test_defaults_are_the_embedded_mode() -> None:
    settings = load_settings({})
    assert settings.embedded_broker
    assert settings.is_sqlite
    assert settings.sqlalchemy_url.endswith(str(Path(".tickwork/tickwork.sqlite3").resolve()))
    assert settings.job_time_limit_s == 3600
    assert settings.preflight_lifetime_minutes == 10


def test_postgres_url_gets_the_psycopg_driver() -> None:
    settings = load_settings({"TICKWORK_DATABASE_URL": "postgresql://u@db:5432/x"})
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@db:5432/x"
    assert not settings.is_sqlite


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"TICKWORK_DATABSE_URL": "x"}, "TICKWORK_DATABSE_URL: unknown setting"),
        ({"TICKWORK_DATABASE_URL": "mysql://x/y"}, "TICKWORK_DATABASE_URL: must start with"),
        ({"TICKWORK_DATABASE_URL": "postgresql:///x"}, "TICKWORK_DATABASE_URL: has no host"),
        ({"TICKWORK_BROKER_URL": "redis://x"}, "TICKWORK_BROKER_URL: must start with amqp"),
        (
            {"TICKWORK_BROKER_URL": "amqp://h:notaport/"},
            "TICKWORK_BROKER_URL: has a malformed port",
        ),
        (
            {"TICKWORK_WORKER_THREADS": "many"},
            "TICKWORK_WORKER_THREADS: expected a whole number from 1 to 256, got 'many'",
        ),
        (
            {"TICKWORK_WORKER_THREADS": "0"},
            "TICKWORK_WORKER_THREADS: expected a whole number from 1 to 256, got '0'",
        ),
        (
            {"TICKWORK_SYNC_TIMEOUT_S": "0"},
            "TICKWORK_SYNC_TIMEOUT_S: expected a number above 0 and at most 600, got '0'",
        ),
        (
            {"TICKWORK_SMTP_STARTTLS": "maybe"},
            "TICKWORK_SMTP_STARTTLS: expected true or false",
        ),
        ({"TICKWORK_FERNET_KEY": "short"}, "TICKWORK_FERNET_KEY: is not a valid Fernet key"),
        (
            {"TICKWORK_LOG_LEVEL": "LOUD"},
            "TICKWORK_LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR, got 'LOUD'",
        ),
        ({"TICKWORK_QUEUE_PREFIX": "a b"}, "TICKWORK_QUEUE_PREFIX: may hold only"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    # Given a bad value, when settings load, then one line names the variable.
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert str(error.value).startswith(names)
    assert "\n" not in str(error.value)
    # in tickwork's words, not pydantic's
    assert "Input should" not in str(error.value) and "Value error" not in str(error.value)


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"TICKWORK_FERNET_KEY": "my-very-secret-value"})
    assert "my-very-secret-value" not in str(error.value)


def test_queue_prefix_applies_to_every_queue() -> None:
    settings = load_settings({"TICKWORK_QUEUE_PREFIX": "blue."})
    assert settings.queue("default") == "blue.default"


def test_a_bad_url_list_hides_every_password(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a broker URL list whose second URL is wrong and holds a password,
    monkeypatch.setenv(
        "TICKWORK_BROKER_URL", "amqp://u:first-secret@a:5672/,foo://v:second-secret@b"
    )
    # when the settings load, then the error names the URL and shows neither password.
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "URL 2 of 2" in str(refused.value)
    assert "first-secret" not in str(refused.value)
    assert "second-secret" not in str(refused.value)
