"""Validation errors and secrets said in tickwork's words, not pydantic's: one line that
says what was expected and what was given, with any password masked. Settings, CLI
options and API input all use it, so one bad value reads the same everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


def hide_password(value: str) -> str:
    """A URL with its password replaced by ``***`` (other text unchanged); in a
    comma-separated list of URLs (a cluster's nodes), every URL's."""
    if "," in value:
        return ",".join(hide_password(part) for part in value.split(","))
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not parts.password:
        return value
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{netloc[1]}").geturl()


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def in_plain_words(
    error: Mapping[str, Any],
    *,
    bounds: Mapping[str, Any] | None = None,
    whole: bool | None = None,
    secret: bool = False,
) -> str:
    """One pydantic error as tickwork says it: what was expected, what was given.

    ``bounds`` (``ge``/``gt``/``le``/``lt``) and ``whole`` (int or float) describe the
    value wanted, when the caller knows them; ``secret`` keeps the value out of the text.
    """
    kind = str(error.get("type", ""))
    ctx = dict(error.get("ctx") or {})
    value = error.get("input")
    if secret or isinstance(value, dict):
        shown = ""
    else:
        shown = repr(hide_password(value) if isinstance(value, str) else value)
    got = f", got {shown}" if shown else ""
    numeric = (
        "int_parsing", "int_type", "int_from_float", "float_parsing", "float_type",
        "finite_number", "greater_than", "greater_than_equal", "less_than", "less_than_equal",
    )  # fmt: skip
    if kind in numeric:
        if whole is None:
            whole = kind.startswith("int")
        limits = dict(bounds or {}) or ctx
        low = ("ge", limits["ge"]) if "ge" in limits else ("gt", limits.get("gt"))
        high = ("le", limits["le"]) if "le" in limits else ("lt", limits.get("lt"))
        wanted = "a whole number" if whole else "a number"
        if low[1] is not None and high[1] is not None and (low[0], high[0]) == ("ge", "le"):
            wanted += f" from {_number(low[1])} to {_number(high[1])}"
        else:
            parts = []
            if low[1] is not None:
                parts.append(("at least " if low[0] == "ge" else "above ") + _number(low[1]))
            if high[1] is not None:
                parts.append(("at most " if high[0] == "le" else "below ") + _number(high[1]))
            if parts:
                wanted += (" of " if parts[0].startswith("at ") else " ") + " and ".join(parts)
        return f"expected {wanted}{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false (also yes/no, on/off, 1/0){got}"
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"expected {expected}{got}"
    if kind == "missing":
        return "is required"
    if kind == "string_too_long":
        return f"expected at most {ctx.get('max_length')} characters{got}"
    if kind == "string_too_short":
        return f"expected at least {ctx.get('min_length')} characters{got}"
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    message = message.removeprefix("Assertion failed, ")
    if message.startswith("Input should be "):
        return "expected " + message.removeprefix("Input should be ").split(",")[0] + got
    return f"{message} (got {shown})" if shown else message
