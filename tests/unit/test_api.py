"""The admin API (given / when / then), on each ``system``: SQLite + the in-process
broker, and PostgreSQL + RabbitMQ (``[services]``, marked ``integration``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from schema.identity import ApiToken
from schema.messaging import DeadLetter
from schema.scheduling import ScheduledJobConfig
from tests.support.throwaway_jobs import ThrowawayJobs


def test_no_or_bad_or_expired_token_is_401(client: Any) -> None:
    # Given the API, when asked without a token or with a bad one, then 401;
    http, headers, system = client
    assert http.get("/api/jobs").status_code == 401
    assert http.get("/api/jobs", headers={"Authorization": "Bearer tw_nope"}).status_code == 401
    # when the token is past its stored expiry, then 401 too;
    with system.db.session() as s:
        for row in s.scalars(select(ApiToken)):
            row.expires_at = row.created_at - dt.timedelta(seconds=1)
    assert http.get("/api/jobs", headers=headers).status_code == 401
    # and a token from before expiry was stored counts 30 days from its creation.
    with system.db.session() as s:
        for row in s.scalars(select(ApiToken)):
            row.expires_at = None
    assert http.get("/api/jobs", headers=headers).status_code == 200
    with system.db.session() as s:
        for row in s.scalars(select(ApiToken)):
            row.created_at = row.created_at - dt.timedelta(days=31)
    assert http.get("/api/jobs", headers=headers).status_code == 401
    assert http.get("/health").status_code == 200  # health needs no token


def test_list_jobs_and_trigger_a_run(client: Any, tj: ThrowawayJobs) -> None:
    # Given the jobs listed, with their schedules in words,
    http, headers, system = client
    jobs = {j["name"]: j for j in http.get("/api/jobs", headers=headers).json()}
    assert jobs["heartbeat"]["schedule_words"] == "every minute" and jobs["heartbeat"]["enabled"]
    # When a job is triggered, then 202 with the run id, and it runs once a worker is free.
    answer = http.post("/api/jobs/t_count/trigger", headers=headers)
    assert answer.status_code == 202
    run_id = answer.json()["run_id"]
    system.drain()
    runs = http.get("/api/jobs/t_count/runs", headers=headers).json()
    assert runs[0]["id"] == run_id and runs[0]["status"] == "succeeded"
    assert runs[0]["output"] == "counted 3" and runs[0]["trigger"] == "manual"
    assert tj.calls == ["t_count"]


def test_history_only_failures(client: Any) -> None:
    # Given a job that succeeded and one that failed,
    http, headers, system = client
    http.post("/api/jobs/t_count/trigger", headers=headers)
    http.post("/api/jobs/t_fail/trigger", headers=headers)
    system.drain()
    # when each one's history is asked for failures only, then only failures come.
    failed = http.get("/api/jobs/t_fail/runs?failures=true", headers=headers).json()
    assert failed and all(r["status"] == "failed" for r in failed)
    assert "RuntimeError" in failed[0]["error"]
    assert http.get("/api/jobs/t_count/runs?failures=true", headers=headers).json() == []


def test_enable_disable_notify_and_unknown_job(client: Any) -> None:
    # When a job is disabled, enabled, or told to mail its successes, then it says so;
    http, headers, _system = client
    assert http.post("/api/jobs/t_count/disable", headers=headers).json()["enabled"] is False
    assert http.post("/api/jobs/t_count/enable", headers=headers).json()["enabled"] is True
    notify = http.put(
        "/api/jobs/t_count/notify-on-success", json={"enabled": True}, headers=headers
    )
    assert notify.json()["notify_on_success"] is True
    # when the job does not exist, then 404 naming it.
    missing = http.post("/api/jobs/nope/trigger", headers=headers)
    assert missing.status_code == 404 and "no job named 'nope'" in missing.json()["detail"]


def test_override_times_or_interval_but_not_both(client: Any) -> None:
    # When an override gives both times and an interval,
    http, headers, system = client
    both = http.put(
        "/api/jobs/t_count/schedule", json={"times": "02:30", "interval": "05:00"}, headers=headers
    )
    # Then 422 with a clear message, and nothing was saved.
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    with system.db.session() as s:
        assert s.get(ScheduledJobConfig, "t_count") is None
    # A bad time is refused naming it; good times are saved, and an empty body clears them.
    bad = http.put("/api/jobs/t_count/schedule", json={"times": "25:00"}, headers=headers)
    assert bad.status_code == 422 and "25:00" in bad.json()["detail"]
    ok = http.put("/api/jobs/t_count/schedule", json={"times": "02:30"}, headers=headers)
    assert ok.status_code == 200 and ok.json()["schedule_source"] == "override times"
    cleared = http.put("/api/jobs/t_count/schedule", json={}, headers=headers)
    assert cleared.json()["schedule_source"] == "default"


def test_hold_and_release(client: Any) -> None:
    # When held, then the health page says so; when released (a bad mode refused),
    # then it no longer does.
    http, headers, _system = client
    assert http.post("/api/hold", headers=headers).json() == {"held": True}
    assert http.get("/health").json()["held"] is True
    assert http.post("/api/release", json={"mode": "sideways"}, headers=headers).status_code == 422
    assert (
        http.post("/api/release", json={"mode": "reschedule"}, headers=headers).status_code == 200
    )
    assert http.get("/health").json()["held"] is False


def test_dead_letters_list_replay_purge(client: Any, tj: ThrowawayJobs) -> None:
    # Given three dead letters of one queue, then they are listed with their reason;
    http, headers, system = client
    with system.db.session() as s:
        for n in range(3):
            s.add(
                DeadLetter(
                    queue_name="default",
                    message_id=f"m{n}",
                    actor_name="t_count",
                    reason="kwargs: unexpected field 'x'",
                    message={"queue_name": "default", "actor_name": "t_count", "kwargs": {}},
                )
            )
    listed = http.get("/api/dead-letters?queue=default", headers=headers).json()
    assert len(listed) == 3 and listed[0]["reason"].startswith("kwargs")
    # when one is replayed, it is sent again and runs (an unknown one: 404); when the queue
    # is purged, then the other two are removed.
    replayed = http.post(f"/api/dead-letters/{listed[0]['id']}/replay", headers=headers)
    assert replayed.json() == {"count": 1}
    system.drain()
    assert tj.calls == ["t_count"]
    assert http.post("/api/dead-letters/999999/replay", headers=headers).status_code == 404
    assert http.delete("/api/dead-letters?queue=default", headers=headers).json() == {"count": 2}


def test_a_malformed_dead_letter_cannot_be_replayed(client: Any) -> None:
    # Given a dead letter recorded for a body that was not a message at all,
    http, headers, system = client
    with system.db.session() as s:
        letter = DeadLetter(
            queue_name="default",
            message_id="malformed-1",
            actor_name="(undecodable)",
            reason="body is not JSON",
            message={"body": "b'{nope'"},
        )
        s.add(letter)
        s.flush()
        letter_id = letter.id
    # when it is replayed, then the refusal says why, and the letter stays (replay-all too).
    refused = http.post(f"/api/dead-letters/{letter_id}/replay", headers=headers)
    assert refused.status_code == 409 and "cannot be replayed" in refused.json()["detail"]
    assert http.post("/api/dead-letters/replay", headers=headers).json() == {"count": 0}
    assert len(http.get("/api/dead-letters", headers=headers).json()) == 1


def test_page_and_openapi_are_served(client: Any) -> None:
    # When the page, its script and the OpenAPI document are asked for, then served.
    http, _headers, _system = client
    assert "<title>tickwork</title>" in http.get("/").text
    assert "Bearer" in http.get("/app.js").text
    spec = http.get("/openapi.json").json()
    assert "/api/jobs/{name}/trigger" in spec["paths"]
