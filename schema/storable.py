"""What the database can store, checked before it is asked to.

PostgreSQL refuses a NUL character in text (``psycopg.DataError``), psycopg cannot
encode an unpaired surrogate, and ``VARCHAR(n)`` refuses a longer value; SQLite takes
all three. Every text input (API path, query and JSON body — ``admin/api/input_checks``
— and values the CLI and API store) is checked here, so both backends and both front
ends refuse the same input with the same sentence, naming what was wrong, and nothing
is changed. Lengths are read from the models' column types, so a widened column needs
no second edit.
"""

from __future__ import annotations

from typing import Any

from tickwork.errors import UnstorableInputError


def column_length(attribute: Any) -> int | None:
    """The length of a mapped ``String(n)`` column (``Model.attr``); None when unbounded."""
    (column,) = attribute.property.columns
    length = getattr(column.type, "length", None)
    return int(length) if length is not None else None


def text_problem(value: str) -> str | None:
    """Why the database cannot store ``value`` whatever its column, or None."""
    if "\x00" in value:
        return "contains a NUL character (\\x00), which the database cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        return f"contains an unpaired surrogate (\\u{ord(bad):04x}), which is not valid Unicode"
    return None


def printable(value: str) -> str:
    """``value`` with what cannot be encoded escaped (safe to put in a message)."""
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def check_text(value: str, what: str, column: Any = None) -> str:
    """``value`` if the database can store it (in ``column``, a ``Model.attr``, when
    given); else :class:`UnstorableInputError` naming ``what``."""
    problem = text_problem(value)
    if problem is None and column is not None:
        limit = column_length(column)
        if limit is not None and len(value) > limit:
            problem = f"is {len(value)} characters long; at most {limit} fit"
    if problem is not None:
        raise UnstorableInputError(f"{what} {problem}")
    return value
