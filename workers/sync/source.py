"""Where remote resources come from: a ``Source`` answers pages of resource records.

Two real sources: an HTTP JSON endpoint (httpx, with a timeout and retries) and a JSON
file. A page is ``{"items": [...], "next": <cursor or null>}``; each item is
``{"id", "state", "name"?, "end_date"?, "updated_at"?, ...}``. Anything else — bad JSON,
a missing field, a state we do not know, a timeout — raises :class:`SourceError` naming
what was wrong, and the caller writes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from tickwork.errors import TickworkError

STATES = ("provisioning", "ok", "updating", "deleting", "erred", "terminated")


class SourceError(TickworkError):
    """The source answered something unusable, or did not answer in time."""


@dataclass(frozen=True)
class RemoteItem:
    external_id: str
    state: str
    name: str = ""
    end_date: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    items: list[RemoteItem]
    next_page: str | None  # None: this was the last page


class Source(Protocol):
    """Answers the resources changed since ``since`` (all of them when None), a page at
    a time; ``page`` is the ``next_page`` of the previous answer."""

    def fetch(self, since: str | None, page: str | None) -> Page: ...


class HttpJsonSource:
    """``GET url?since=...&page=...`` returning a page as JSON."""

    def __init__(self, url: str, timeout_s: float, retries: int) -> None:
        self.url = url
        self.retries = retries
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=True)

    def fetch(self, since: str | None, page: str | None) -> Page:
        params = {k: v for k, v in (("since", since), ("page", page)) if v is not None}
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                response = self.client.get(self.url, params=params)
                if response.status_code >= 500:
                    raise httpx.HTTPStatusError(
                        f"server error {response.status_code}",
                        request=response.request,
                        response=response,
                    )
                if response.status_code >= 400:
                    raise SourceError(
                        f"{self.url} answered {response.status_code}: {response.text[:200]!r}"
                    )
                return parse_page(response.content, where=self.url)
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                last = exc
                if attempt < self.retries:
                    time.sleep(min(0.2 * 2**attempt, 5))
        raise SourceError(
            f"{self.url} failed after {self.retries + 1} attempts: {type(last).__name__}: {last}"
        )

    def close(self) -> None:
        self.client.close()


class FileSource:
    """A JSON file holding one page (``next`` ignored): for exports and tests."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fetch(self, since: str | None, page: str | None) -> Page:
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read {self.path}: {exc.strerror}") from None
        parsed = parse_page(raw, where=str(self.path))
        items = [i for i in parsed.items if since is None or _after(i.updated_at, since)]
        return Page(items, None)


def source_from_url(url: str, timeout_s: float, retries: int) -> HttpJsonSource | FileSource:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FileSource(Path(unquote(parts.path)))
    return HttpJsonSource(url, timeout_s, retries)


def parse_page(raw: bytes, where: str) -> Page:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise SourceError(f"{where} did not answer JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise SourceError(f'{where}: expected an object with an "items" list')
    next_page = body.get("next")
    if next_page is not None and not isinstance(next_page, str | int):
        raise SourceError(f'{where}: "next" must be a string, a number or null')
    items = [_item(entry, where, n) for n, entry in enumerate(body["items"])]
    return Page(items, None if next_page is None else str(next_page))


def _item(entry: Any, where: str, n: int) -> RemoteItem:
    if not isinstance(entry, dict):
        raise SourceError(f"{where}: item {n} is not an object")
    external_id = entry.get("id")
    if not isinstance(external_id, str | int) or isinstance(external_id, bool) or external_id == "":
        raise SourceError(f'{where}: item {n} has no usable "id"')
    state = entry.get("state")
    if state not in STATES:
        raise SourceError(f"{where}: item {n} ({external_id}) has unknown state {state!r}")
    name = entry.get("name", "")
    if not isinstance(name, str):
        raise SourceError(f'{where}: item {n} ({external_id}): "name" must be a string')
    return RemoteItem(
        external_id=str(external_id),
        state=state,
        name=name[:255],
        end_date=_when(entry.get("end_date"), where, n, "end_date"),
        updated_at=_when(entry.get("updated_at"), where, n, "updated_at"),
        data=entry,
    )


def _when(value: Any, where: str, n: int, key: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise SourceError(
            f'{where}: item {n}: "{key}" is not an ISO 8601 time: {value!r}'
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _after(updated_at: dt.datetime | None, since: str) -> bool:
    return updated_at is None or updated_at > dt.datetime.fromisoformat(since)
