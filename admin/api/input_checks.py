"""Hostile input stops at the door of the admin API: a clear 422, never a 500.

Three places where input the database (or JSON) cannot hold used to become a 500:

- the URL: a NUL (``?queue=%00``) reached PostgreSQL, which refuses NUL in text;
  :class:`HostileInputMiddleware` refuses a path or query parameter holding a NUL, an
  unpaired surrogate or bytes that are not UTF-8, before routing or authentication;
- the JSON body: ``NaN``, ``Infinity`` and ``1e400`` (Python's ``json`` reads them as
  floats JSON does not have) and strings with a NUL or an unpaired surrogate; the same
  middleware refuses them, naming where in the body they are;
- FastAPI's validation errors echo the input, and could not encode it:
  :func:`validation_error` answers the same 422 with an input it cannot encode replaced
  by its escaped ``repr``.

Text checks are :mod:`schema.storable`'s, so the API and the CLI refuse alike; a value
the database refuses anyway (:func:`database_error`) is a 422 when it is the value's
fault and a 503 when the database cannot be reached, never a traceback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError

from schema.storable import printable, text_problem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class HostileInput(ValueError):
    """A request part that no route could store or answer about."""


Problem = tuple[list[str | int], str]  # where (FastAPI's ``loc``), and what is wrong


def url_problem(path: str, query_string: bytes) -> Problem | None:
    """Why the path or a query parameter cannot be accepted, or None."""
    problem = text_problem(path)
    if problem is not None:
        return ["path"], f"the path {problem}"
    for pair in query_string.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name = unquote_to_bytes(raw_name.replace(b"+", b" "))
        value = unquote_to_bytes(raw_value.replace(b"+", b" "))
        shown = printable(name.decode("utf-8", "backslashreplace"))
        for part, what in ((name, "the name of query parameter"), (value, "query parameter")):
            loc: list[str | int] = ["query", shown]
            if b"\x00" in part:
                return loc, f"{what} {shown!r} contains a NUL character (\\x00), not accepted"
            try:
                text = part.decode("utf-8")
            except UnicodeDecodeError:
                return loc, f"{what} {shown!r} is not valid UTF-8"
            problem = text_problem(text)
            if problem is not None:
                return loc, f"{what} {shown!r} {problem}"
    return None


def _refuse_constant(name: str) -> float:
    raise HostileInput(f"the JSON body holds {name}, which JSON does not allow")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise HostileInput(f"the JSON body holds the number {text}, out of range")
    return value


def _walk(value: Any, loc: list[str | int]) -> Problem | None:
    if isinstance(value, str):
        problem = text_problem(value)
        return (loc, f"the text at {_where(loc)} {problem}") if problem else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _walk(item, [*loc, i])
            if found:
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key)
            if problem:
                return [*loc, printable(key)], f"a key at {_where(loc)} {problem}"
            found = _walk(item, [*loc, key])
            if found:
                return found
    return None


def _where(loc: list[str | int]) -> str:
    return "/".join(printable(str(part)) for part in loc)


def json_problem(body: bytes) -> Problem | None:
    """Why a JSON body cannot be accepted, or None (malformed JSON is left to FastAPI,
    whose 422 says where it breaks)."""
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return ["body"], "the JSON body is not valid UTF-8"
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except HostileInput as exc:
        return ["body"], str(exc)
    except ValueError:
        return None
    return _walk(value, ["body"])


def refusal(msg: str, loc: list[str | int] | None = None) -> JSONResponse:
    """A 422 shaped like FastAPI's own (``detail``: a list of ``loc``/``msg``/``type``),
    so it matches the OpenAPI document of every route."""
    error = {"loc": loc or [], "msg": msg, "type": "value_error"}
    return JSONResponse({"detail": [error]}, status_code=422)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # FastAPI reads a body without a content type as JSON


class HostileInputMiddleware:
    """Refuses (422) a request whose path, query or JSON body holds what no route could
    store: see the module docstring. Other requests pass unchanged (the body replayed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = url_problem(scope.get("path", ""), scope.get("query_string", b""))
        if problem is None and scope.get("method") in BODY_METHODS and _is_json(scope):
            body, receive = await _buffer(receive)
            problem = json_problem(body)
        if problem is not None:
            await refusal(problem[1], problem[0])(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it on again."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _encodable(value: Any) -> Any:
    """``value`` as FastAPI would echo it, or its escaped repr when JSON cannot hold it."""
    try:
        encoded = jsonable_encoder(value)
        json.dumps(encoded, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError):
        shown = printable(repr(value))
        return shown if len(shown) <= 200 else shown[:200] + "..."
    return encoded


def _safe_error(error: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {
        "type": error.get("type"),
        "loc": [x if isinstance(x, int) else printable(str(x)) for x in error.get("loc", ())],
        "msg": printable(str(error.get("msg", ""))),
    }
    if "input" in error:
        safe["input"] = _encodable(error["input"])
    if error.get("ctx"):
        safe["ctx"] = {str(k): _encodable(v) for k, v in error["ctx"].items()}
    return safe


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for a malformed request, with nothing it cannot encode."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_safe_error(e) for e in exc.errors()]}, status_code=422)


async def unstorable(request: Request, exc: Exception) -> JSONResponse:
    """A value :mod:`schema.storable` refused (too long for its column...): 422."""
    return refusal(printable(str(exc)))


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    """A database error: 422 when the database refused a value (the request's fault,
    never "is it reachable"), 503 when it could not be reached; anything else is a bug
    and stays a 500."""
    if isinstance(exc, DataError) or not isinstance(exc, DBAPIError):
        detail = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        return refusal(f"the database refused a value: {printable(detail)}")
    if isinstance(exc, OperationalError | InterfaceError):
        return JSONResponse(
            {"detail": f"the database is unavailable ({type(exc.orig).__name__})"},
            status_code=503,
        )
    raise exc
