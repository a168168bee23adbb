"""Waldur-style sync against a real HTTP server on loopback and a JSON file."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from schema.engine import Database
from schema.sync import RemoteResource, SyncCursor
from workers.sync.pull import pull
from workers.sync.source import FileSource, HttpJsonSource, SourceError


class Upstream:
    """What the fake remote API answers: pages of items, or misbehaviour on demand."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.page_size = 2
        self.mode = "ok"  # ok | garbage | slow | error500
        self.requests: list[dict[str, list[str]]] = []


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    state = Upstream()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            state.requests.append(query)
            if state.mode == "slow":
                time.sleep(1.5)
            if state.mode == "error500":
                self.send_response(500)
                self.end_headers()
                return
            if state.mode == "garbage":
                body = b"<html>not json"
            else:
                since = query.get("since", [None])[0]
                items = [i for i in state.items if since is None or i["updated_at"] > since]
                page = int(query.get("page", ["0"])[0])
                chunk = items[page * state.page_size : (page + 1) * state.page_size]
                more = (page + 1) * state.page_size < len(items)
                body = json.dumps({"items": chunk, "next": page + 1 if more else None}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/resources"
    server.shutdown()


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    """SQLite only: what is checked here does not depend on the database."""
    return sqlite_db


def item(n: int, state: str = "ok", updated: str = "2026-11-01T00:00:00+00:00") -> dict[str, Any]:
    return {"id": f"vm-{n}", "name": f"VM {n}", "state": state, "updated_at": updated}


def resources(db: Database) -> dict[str, RemoteResource]:
    with db.session() as s:
        return {r.external_id: r for r in s.scalars(select(RemoteResource))}


def test_full_then_incremental_pull_over_pages(
    db: Database, upstream: tuple[Upstream, str]
) -> None:
    state, url = upstream
    state.items = [item(n, updated=f"2026-11-0{n}T00:00:00+00:00") for n in range(1, 6)]
    source = HttpJsonSource(url, timeout_s=5, retries=0)
    # Given an empty mirror, a first pull is full and walks every page,
    report = pull(db, source, "cloud", "mark", batch_size=2)
    assert report.full and report.upserted == 5 and len(state.requests) == 3
    assert report.cursor == "2026-11-05T00:00:00+00:00"
    # and the next one asks only for what changed since the cursor, and upserts it.
    state.items[0] = item(1, state="erred", updated="2026-11-09T00:00:00+00:00")
    state.requests.clear()
    report = pull(db, source, "cloud", "mark", batch_size=2)
    assert not report.full and report.upserted == 1
    assert state.requests[0]["since"] == ["2026-11-05T00:00:00+00:00"]
    rows = resources(db)
    assert len(rows) == 5 and rows["vm-1"].state == "erred" and rows["vm-2"].state == "ok"
    source.close()


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("keep", ("ok", False)), ("mark", ("ok", True)), ("terminate", ("terminated", True))],
)
def test_missing_upstream_follows_the_policy(
    db: Database, tmp_path: Path, policy: Any, expected: tuple[str, bool]
) -> None:
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"items": [item(1), item(2)]}))
    pull(db, FileSource(export), "files", policy, batch_size=10)
    export.write_text(json.dumps({"items": [item(1)]}))
    pull(db, FileSource(export), "files", policy, batch_size=10, full=True)
    gone = resources(db)["vm-2"]
    assert (gone.state, gone.missing_since is not None) == expected
    assert resources(db)["vm-1"].missing_since is None


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("garbage", "did not answer JSON"),
        ("slow", "failed after 2 attempts"),
        ("error500", "failed after 2 attempts"),
    ],
)
def test_bad_source_fails_with_a_clear_error_and_changes_nothing(
    db: Database, upstream: tuple[Upstream, str], mode: str, message: str
) -> None:
    state, url = upstream
    state.items = [item(1)]
    source = HttpJsonSource(url, timeout_s=0.5, retries=1)
    pull(db, source, "cloud", "mark", batch_size=10)
    with db.session() as s:
        cursor_before = s.get(SyncCursor, "cloud")
        assert cursor_before is not None
        before = (cursor_before.cursor, cursor_before.last_success_at)
    # When the source misbehaves,
    state.mode = mode
    state.items = [
        item(1, state="erred", updated="2026-11-20T00:00:00+00:00"),
        item(2, updated="2026-11-21T00:00:00+00:00"),
    ]
    with pytest.raises(SourceError, match=message):
        pull(db, source, "cloud", "mark", batch_size=10)
    # then nothing changed, and the cursor is where the last good pull left it;
    assert resources(db)["vm-1"].state == "ok" and "vm-2" not in resources(db)
    with db.session() as s:
        cursor = s.get(SyncCursor, "cloud")
        assert cursor is not None and (cursor.cursor, cursor.last_success_at) == before
    # and once it recovers, the next pull picks up from there.
    state.mode = "ok"
    pull(db, source, "cloud", "mark", batch_size=10)
    assert resources(db)["vm-1"].state == "erred" and "vm-2" in resources(db)
    source.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"items": [{"state": "ok"}]}, 'item 0 has no usable "id"'),
        ({"items": [{"id": "a", "state": "exploded"}]}, "unknown state 'exploded'"),
        (
            {"items": [{"id": "a", "state": "ok", "end_date": "soon"}]},
            '"end_date" is not an ISO 8601 time',
        ),
        ({"things": []}, 'expected an object with an "items" list'),
    ],
)
def test_malformed_items_are_named(tmp_path: Path, body: Any, message: str) -> None:
    export = tmp_path / "bad.json"
    export.write_text(json.dumps(body))
    with pytest.raises(SourceError, match=message.replace("(", r"\(")):
        FileSource(export).fetch(None, None)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        FileSource(tmp_path / "nope.json").fetch(None, None)


def test_pull_job_uses_the_configured_source_and_skips_without_one(
    db: Database, tmp_path: Path
) -> None:
    from workers.context import RunContext
    from workers.jobs import sync_jobs

    export = tmp_path / "export.json"
    export.write_text(json.dumps({"items": [item(1), item(2, state="provisioning")]}))
    configured = db.settings.model_copy(update={"sync_source_url": f"file://{export}"})
    ctx = RunContext(
        run_id=0, job_name="pull_remote_resources", scheduled_for=None, settings=configured, db=db
    )
    result = sync_jobs.pull_remote_resources(ctx)
    assert result.records_processed == 2 and "full pull: 2 fetched" in result.output
    bare = RunContext(
        run_id=0, job_name="pull_remote_resources", scheduled_for=None, settings=db.settings, db=db
    )
    assert sync_jobs._source_configured(bare) == "TICKWORK_SYNC_SOURCE_URL is not set"
