"""Incremental pull of remote resources: fetch, validate, upsert by external id.

All pages are fetched and validated before anything is written, so a source that answers
garbage or times out changes nothing. Rows are then upserted in bounded batches, and the
cursor (the newest ``updated_at`` seen) is saved last: a run that fails half-way leaves the
cursor where the last good run ended, and the next run redoes the same idempotent upserts.

A pull with no cursor is a full pull; only then can "missing upstream" be known: rows of
the source that the pull did not touch are kept, marked (``missing_since``) or terminated,
per ``TICKWORK_SYNC_MISSING_POLICY``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import Table, and_, case
from sqlalchemy.dialects import postgresql, sqlite

from schema.base import utcnow
from schema.engine import Database
from schema.sync import RemoteResource, SyncCursor
from workers.batching import update_in_batches
from workers.sync.source import RemoteItem, Source, SourceError

RESOURCES = cast(Table, RemoteResource.__table__)
MAX_PAGES = 10_000  # a source that never stops paging is broken, not big


@dataclass(frozen=True)
class PullReport:
    fetched: int
    upserted: int
    missing: int
    full: bool
    cursor: str | None

    @property
    def records(self) -> int:
        return self.upserted + self.missing


def pull(
    db: Database,
    source: Source,
    name: str,
    missing_policy: Literal["keep", "mark", "terminate"],
    batch_size: int,
    full: bool = False,
) -> PullReport:
    started = utcnow()
    with db.session() as session:
        saved = session.get(SyncCursor, name)
        since = None if full or saved is None else saved.cursor
    items = _fetch_all(source, since)
    upserted = 0
    for start in range(0, len(items), batch_size):
        upserted += _upsert(db, name, items[start : start + batch_size], started)
    missing = 0
    if since is None and missing_policy != "keep":
        missing = _missing(db, name, missing_policy, started, batch_size)
    newest = max((i.updated_at for i in items if i.updated_at), default=None)
    cursor = newest.isoformat() if newest else since
    with db.session() as session:
        row = session.get(SyncCursor, name, with_for_update=True)
        if row is None:
            session.add(SyncCursor(source=name, cursor=cursor, last_success_at=utcnow()))
        else:
            row.cursor = cursor
            row.last_success_at = utcnow()
    return PullReport(len(items), upserted, missing, since is None, cursor)


def _fetch_all(source: Source, since: str | None) -> list[RemoteItem]:
    items: dict[str, RemoteItem] = {}
    page: str | None = None
    for _ in range(MAX_PAGES):
        answer = source.fetch(since, page)
        for item in answer.items:
            items[item.external_id] = item  # a later page wins
        if answer.next_page is None:
            return list(items.values())
        if answer.next_page == page:
            raise SourceError(f"source repeated page {page!r}: refusing to loop")
        page = answer.next_page
    raise SourceError(f"source still paging after {MAX_PAGES} pages")


def _upsert(db: Database, name: str, items: list[RemoteItem], now: dt.datetime) -> int:
    if not items:
        return 0
    insert = postgresql.insert if db.is_postgresql else sqlite.insert
    rows: list[dict[str, Any]] = [
        {
            "source": name,
            "external_id": i.external_id,
            "name": i.name,
            "state": i.state,
            "data": i.data,
            "end_date": i.end_date,
            "remote_updated_at": i.updated_at,
            "state_changed_at": now,
            "synced_at": now,
            "missing_since": None,
        }
        for i in items
    ]
    stmt = insert(RESOURCES).values(rows)
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[RESOURCES.c.source, RESOURCES.c.external_id],
        set_={
            "name": new.name,
            "data": new.data,
            "end_date": new.end_date,
            "remote_updated_at": new.remote_updated_at,
            "synced_at": new.synced_at,
            "missing_since": None,
            "state_changed_at": case(
                (RESOURCES.c.state != new.state, new.state_changed_at),
                else_=RESOURCES.c.state_changed_at,
            ),
            "state": new.state,
        },
    )
    with db.engine.begin() as connection:
        connection.execute(stmt)
    return len(rows)


def _missing(
    db: Database,
    name: str,
    policy: Literal["mark", "terminate"],
    started: dt.datetime,
    batch_size: int,
) -> int:
    untouched = and_(RESOURCES.c.source == name, RESOURCES.c.synced_at < started)
    if policy == "mark":
        return update_in_batches(
            db,
            RESOURCES,
            and_(untouched, RESOURCES.c.missing_since.is_(None)),
            {"missing_since": started},
            batch_size,
        ).rows
    return update_in_batches(
        db,
        RESOURCES,
        and_(untouched, RESOURCES.c.state != "terminated"),
        {"state": "terminated", "state_changed_at": started, "missing_since": started},
        batch_size,
    ).rows
