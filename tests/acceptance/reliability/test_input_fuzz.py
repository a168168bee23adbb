"""Fuzz settings and schedules: any input either parses or fails with a clear, typed error."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from tickwork.errors import ConfigError, ScheduleError
from tickwork.schedules import parse_schedule
from tickwork.settings import Settings, load_settings

_FIELDS = sorted(Settings.model_fields)


@settings(max_examples=300, deadline=None)
@given(expression=st.text(max_size=60), tz=st.sampled_from(["UTC", "Europe/Paris", "Nowhere/X"]))
def test_parse_schedule_never_raises_anything_but_schedule_error(expression: str, tz: str) -> None:
    # Given any text and timezone, when parsed, then it is a schedule or a ScheduleError
    # with a non-empty message (never a bare ValueError/KeyError from croniter or zoneinfo).
    try:
        parse_schedule(expression, tz)
    except ScheduleError as exc:
        assert str(exc).strip()


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(_FIELDS),
    value=st.text(max_size=40).filter(lambda v: "\x00" not in v),
)
def test_load_settings_bad_values_name_the_variable_and_change_nothing(
    field: str, value: str
) -> None:
    # Given one setting with an arbitrary value,
    environ_before = dict(os.environ)
    name = f"TICKWORK_{field.upper()}"
    # when loaded, then it parses or the ConfigError names that variable,
    try:
        load_settings({name: value})
    except ConfigError as exc:
        assert name in str(exc) or field in str(exc), str(exc)
    # and the process environment is unchanged.
    assert dict(os.environ) == environ_before


@settings(max_examples=100, deadline=None)
@given(suffix=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=20))
def test_unknown_tickwork_variable_is_refused_by_name(suffix: str) -> None:
    # Given a TICKWORK_ variable that is not a setting, when loaded, then it is named.
    name = f"TICKWORK_ZZ{suffix}"
    try:
        load_settings({name: "1"})
    except ConfigError as exc:
        assert name in str(exc)
    else:
        raise AssertionError(f"{name} was accepted")
