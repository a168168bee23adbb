"""The admin page in headless Chromium (Debian's package) against a real `tickwork run`:
log in with a token, run a job now, see its run appear with its output; edit a job,
cancel and retry runs, the failures feed and the audit log; a viewer's page at a phone's
width, in another time zone, by keyboard, refreshed in place."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from tests.conftest import (
    FAST_RETRIES,
    IN_CI,
    REPO_ROOT,
    free_port,
    run_tickwork,
    tickwork_command,
    tickwork_env,
)
from tests.support.processes import ProcessStarter
from tests.support.waiting import http_ok, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The screenshots in the docs are refreshed with TICKWORK_TEST_SCREENSHOTS=1 (read at
# import: the autouse fixture removes every TICKWORK_* variable before a test runs).
REFRESH_SHOTS = bool(os.environ.get("TICKWORK_TEST_SCREENSHOTS"))
SCREENSHOT = REPO_ROOT / "docs" / "img" / "admin-page.png"
PHONE_SCREENSHOT = REPO_ROOT / "docs" / "img" / "admin-page-phone.png"


class Served(NamedTuple):
    base: str
    token: str  # scope admin
    viewer: str  # scope viewer


# One `tickwork run` per kind, shared by the module's tests (each starts in ~25 s on the
# shared CI machine); the tests sharing one tolerate each other's runs and rows.
@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real `tickwork run` (embedded: worker, scheduler and API), an admin and a viewer
    token."""
    yield from _serve(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def running_test_jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The same, with the throw-away test jobs (``t_fail``, ``t_steps``), the workflow
    jobs (a chain, a job of several entries) and fast retries."""
    yield from _serve(
        tmp_path_factory.mktemp("web-test-jobs"),
        TICKWORK_JOB_MODULES="tests.support.throwaway_jobs_module,tests.support.workflow_jobs_module",
        **FAST_RETRIES,
    )


def _token(tmp_path: Path, env: dict[str, str], name: str, scope: str) -> str:
    created = run_tickwork("api-token", "create", name, "--scope", scope, cwd=tmp_path, **env)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def _serve(tmp_path: Path, **settings: str) -> Iterator[Served]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("chromium is not installed, and CI=true (.ci/apt-packages.txt lists it)")
        pytest.skip("chromium is not installed")
    port = free_port()
    env = {"TICKWORK_API_PORT": str(port), **settings}
    assert run_tickwork("migrate", cwd=tmp_path, **env).returncode == 0
    token = _token(tmp_path, env, "browser test", "admin")
    viewer = _token(tmp_path, env, "wall screen", "viewer")
    starter = ProcessStarter(tmp_path, tickwork_command, tickwork_env)
    try:
        proc = starter("run", env)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{base}/health"), 60, "tickwork run serving", processes=[proc])
        yield Served(base, token, viewer)
        proc.stop()
    finally:
        starter.kill_all()


def test_log_in_run_a_job_and_see_its_run(running: Served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, token, _viewer = running
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/")
        # Given the login form, when a wrong token is tried, then it is refused;
        page.fill("#token", "tw_wrong")
        page.click("#login button")
        expect(page.locator("#error")).to_contain_text("refused")
        # when the real token is used, the jobs table appears with the built-in jobs;
        page.fill("#token", token)
        page.click("#login button")
        expect(page.locator("#jobs tr[data-job='prune_run_history']")).to_contain_text(
            "daily at 03:17", timeout=15_000
        )
        row = page.locator("#jobs tr[data-job='heartbeat']")
        expect(row).to_contain_text("every minute")
        # and when "Run now" is clicked, the manual run appears in its history, succeeds,
        # and shows its output.
        row.get_by_role("button", name="Run now").click()
        expect(page.locator("#history-title")).to_have_text("Runs of heartbeat")
        manual = page.locator("#history tbody tr", has_text="manual").first
        expect(manual).to_be_visible(timeout=15_000)
        expect(manual.locator(".status")).to_have_text("succeeded", timeout=30_000)
        expect(manual).to_contain_text("alive; started")
        shot = SCREENSHOT if REFRESH_SHOTS else tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        browser.close()


def test_dead_letters_of_the_broker_are_listed_replayed_and_purged(
    running_test_jobs: Served,
) -> None:
    """Issue 17, defect 6: a job that failed for good is dead-lettered by the broker
    itself (no row written by a worker); the page lists it, replays it and purges it."""
    from playwright.sync_api import expect, sync_playwright

    base, token, _viewer = running_test_jobs
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/")
        page.fill("#token", token)
        page.click("#login button")
        # Given no dead letters, then the page says so;
        expect(page.locator("#dead-empty")).to_have_text("No dead letters.", timeout=15_000)
        # given t_fail run now (it always raises; its one retry fails too),
        page.locator("#jobs tr[data-job='t_fail']").get_by_role("button", name="Run now").click()
        # then its dead letter appears, with its queue, actor, message id and reason;
        letter = page.locator("#dead tbody tr", has_text="t_fail").first
        expect(letter).to_contain_text("retries exhausted", timeout=30_000)
        expect(letter).to_contain_text("RuntimeError")
        expect(letter).to_contain_text("default")
        first_message = letter.locator("td").nth(2).inner_text()
        expect(page.locator("#dead-count")).to_have_text("(1)")
        # when Replay is clicked, then that letter is gone (it ran again, as a new message,
        # and failed again: a new letter comes);
        letter.get_by_role("button", name="Replay").click()
        expect(page.locator("#dead tbody tr", has_text=first_message)).to_have_count(0)
        again = page.locator("#dead tbody tr", has_text="t_fail").first
        expect(again).to_contain_text("retries exhausted", timeout=30_000)
        assert again.locator("td").nth(2).inner_text() != first_message
        # and when Purge all is confirmed, then the count is shown and the table is empty.
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#dead-purge")
        expect(page.locator("#dead-note")).to_have_text("purged 1")
        expect(page.locator("#dead tbody tr")).to_have_count(0)
        browser.close()


def test_edit_a_job_cancel_and_retry_runs_failures_and_audit(
    running_test_jobs: Served, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, token, _viewer = running_test_jobs
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/")
        page.fill("#token", token)
        page.click("#login button")
        expect(page.locator("#who")).to_have_text("browser test (admin)", timeout=15_000)
        row = page.locator("#jobs tr[data-job='t_count']")
        # Given the edit form of t_count, when both times and an interval are saved,
        row.get_by_role("button", name="Edit").click()
        expect(page.locator("#edit-title")).to_have_text("Edit t_count")
        page.fill("#edit-times", "02:30")
        page.fill("#edit-interval", "05:00")
        page.get_by_role("checkbox", name="Enabled").uncheck()
        page.get_by_role("button", name="Save").click()
        # then the API's error is shown and nothing is saved (still enabled, default);
        expect(page.locator("#edit-error")).to_contain_text("not both")
        job = httpx.get(f"{base}/api/jobs/t_count", headers={"Authorization": f"Bearer {token}"})
        assert job.json()["schedule_source"] == "default" and job.json()["enabled"] is True
        # when an interval alone is saved, disabled, e-mailing successes,
        page.fill("#edit-times", "")
        page.fill("#edit-interval", "10 minutes")
        page.get_by_role("checkbox", name="E-mail successes").check()
        page.get_by_role("button", name="Save").click()
        # then the row shows the override and that it is disabled, and the audit log
        # says who changed what, before → after.
        expect(page.locator("#edit")).to_be_hidden()
        expect(row).to_contain_text("every 10 minutes (override interval)")
        expect(row).to_contain_text("disabled")
        audit = page.locator("#audit tbody")
        expect(audit.locator("tr", has_text="set-schedule")).to_contain_text("browser test")
        expect(audit.locator("tr", has_text="set-schedule")).to_contain_text('"interval_s":600')
        expect(audit.locator("tr", has_text="notify-on-success")).to_have_count(1)
        expect(audit.locator("tr", has_text="disable")).to_contain_text('{"enabled":true}')

        # Given a running job that works in steps, when its run is canceled from its
        # history, then it stops and is shown canceled.
        steps = page.locator("#jobs tr[data-job='t_steps']")
        steps.get_by_role("button", name="Run now").click()
        run = page.locator("#history tbody tr", has_text="manual").first
        expect(run.locator(".status")).to_have_text("running", timeout=15_000)
        run.get_by_role("button", name="Cancel").click()
        expect(run.locator(".status")).to_have_text("canceled", timeout=15_000)
        expect(run).to_contain_text("was canceled")

        # Given t_fail run now, then its failure is in the failures feed, filterable by
        # job; when it is retried from there, then a linked retry run appears.
        page.locator("#jobs tr[data-job='t_fail']").get_by_role("button", name="Run now").click()
        failure = page.locator("#failures tbody tr", has_text="t_fail").first
        expect(failure).to_contain_text("RuntimeError", timeout=30_000)
        page.select_option("#failures-job", "t_count")
        expect(page.locator("#failures-empty")).to_be_visible()
        page.select_option("#failures-job", "t_fail")
        failed_id = failure.get_attribute("data-run")
        failure.get_by_role("button", name="Retry").click()
        expect(page.locator("#history-title")).to_have_text("Runs of t_fail")
        retry = page.locator("#history tbody tr", has_text=f"retry of #{failed_id}")
        expect(retry).to_have_count(1, timeout=15_000)
        expect(audit.locator("tr", has_text="retry")).to_contain_text(f"run:{failed_id}")
        # An admin sees the tokens with their scope and last use, creates one (shown
        # once) and revokes it; the audit log says so.
        tokens = page.locator("#tokens tbody")
        expect(tokens.locator("tr", has_text="browser test")).to_contain_text("admin")
        expect(tokens.locator("tr", has_text="wall screen")).to_contain_text("never")
        page.fill("#token-name", "pager")
        page.select_option("#token-scope", "operator")
        page.get_by_role("button", name="Create token").click()
        expect(page.locator("#token-new")).to_contain_text("not shown again: tw_")
        pager = tokens.locator("tr", has_text="pager")
        expect(pager).to_contain_text("operator")
        page.once("dialog", lambda dialog: dialog.accept())
        pager.get_by_role("button", name="Revoke").click()
        expect(pager).to_have_count(0)
        expect(audit.locator("tr", has_text="token-revoke")).to_contain_text("browser test")
        shot = tmp_path / "controls.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()


def test_a_viewer_at_phone_width_in_another_zone_by_keyboard(
    running: Served, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, token, viewer = running
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(
            viewport={"width": 400, "height": 800},
            timezone_id="America/New_York",
            locale="en-US",
        )
        page = context.new_page()
        page.goto(base + "/")
        page.fill("#token", viewer)
        page.keyboard.press("Enter")
        # Given a viewer's token, then the page names it and its zone, and offers no
        # control the scope does not allow; descriptions are shown, not only on hover;
        expect(page.locator("#who")).to_have_text("wall screen (viewer)", timeout=15_000)
        expect(page.locator("#zone")).to_have_text("times in America/New_York")
        heartbeat = page.locator("#jobs tr[data-job='heartbeat']")
        expect(heartbeat.locator(".desc")).to_be_visible()
        expect(heartbeat.locator(".desc")).to_contain_text("Proves tick")
        expect(page.get_by_role("button", name="Run now")).to_have_count(0)
        expect(page.locator("#tokens-section")).to_be_hidden()
        expect(page.locator("#hold-btn")).to_be_hidden()
        # empty states say so;
        expect(page.locator("#dead-empty")).to_be_visible()
        expect(page.locator("#failures-empty")).to_be_visible()
        # nothing is wider than the phone;
        assert page.evaluate("document.documentElement.scrollWidth") <= 400
        # the controls are reached and used by keyboard alone;
        page.evaluate("window.notReloaded = true")
        for _ in range(80):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.dataset.key") == "history:heartbeat":
                break
        else:
            pytest.fail("the heartbeat's History button is not reachable with Tab")
        page.keyboard.press("Enter")
        expect(page.locator("#history-title")).to_have_text("Runs of heartbeat")
        # and when a run happens elsewhere (the API, another operator), then the page
        # shows it without reloading, times in the viewer's zone, the focus kept.
        answer = httpx.post(
            f"{base}/api/jobs/heartbeat/trigger", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        run = page.locator(f"#history tbody tr[data-run='{run_id}']")
        expect(run.locator(".status")).to_have_text("succeeded", timeout=30_000)
        expect(heartbeat.locator(".at")).to_contain_text("EST")
        assert page.evaluate("window.notReloaded") is True
        assert page.evaluate("document.activeElement.dataset.key") == "history:heartbeat"
        shot = PHONE_SCREENSHOT if REFRESH_SHOTS else tmp_path / "phone.png"
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shot))  # what a phone shows first
        assert shot.stat().st_size > 10_000


def test_chains_entries_and_run_with_arguments(running_test_jobs: Served) -> None:
    """Issue 19: the page shows chains, entries and policies; runs a job with arguments;
    a run's chain is shown from its history."""
    from playwright.sync_api import expect, sync_playwright

    base, token, _viewer = running_test_jobs
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/")
        page.fill("#token", token)
        page.click("#login button")
        # Given the jobs table, then it shows the chain, the entries and the policy;
        first = page.locator("#jobs tr[data-job='w_first']")
        expect(first).to_contain_text("then → w_second", timeout=15_000)
        sync = page.locator("#jobs tr[data-job='w_sync']")
        expect(sync).to_contain_text('entry b: daily at 00:00 {"source":"B"}')
        expect(sync).to_contain_text("pauses after 3 failures in a row")
        # when w_sync is run with arguments typed in, then its run shows them and succeeds;
        page.once("dialog", lambda dialog: dialog.accept('{"source": "typed"}'))
        sync.get_by_role("button", name="Run with…").click()
        manual = page.locator("#history tbody tr", has_text="manual").first
        expect(manual).to_contain_text('{"source":"typed"}', timeout=15_000)
        expect(manual.locator(".status")).to_have_text("succeeded", timeout=30_000)
        expect(manual).to_contain_text("synced typed")
        # and bad arguments are refused, naming the field.
        page.once("dialog", lambda dialog: dialog.accept('{"source": 5}'))
        sync.get_by_role("button", name="Run with…").click()
        expect(page.locator("#error")).to_contain_text("'source'", timeout=15_000)
        # When w_sync is backfilled over the last three hours (two prompts: from, to),
        # then one run per hourly and daily slot in it is queued, and said so.
        # (ending before `tickwork run` started, so none of its slots ran already)
        end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=2)
        start = end - dt.timedelta(hours=3)
        answers = [start.isoformat(), end.isoformat()]
        page.on("dialog", lambda dialog: dialog.accept(answers.pop(0)))
        sync.get_by_role("button", name="Backfill…").click()
        minutes = [start + dt.timedelta(minutes=m) for m in range(1, 181)]
        slots = sum(t.minute == 0 for t in minutes) + sum(t.minute == t.hour == 0 for t in minutes)
        expect(page.locator("#note")).to_have_text(
            f"backfill of w_sync: queued {slots} run(s)", timeout=15_000
        )
        expect(page.locator("#history tbody tr", has_text="backfill")).to_have_count(slots)
        # When w_first runs, then w_second's run is queued after it, and the chain of
        # w_first's run lists it.
        first.get_by_role("button", name="Run now").click()
        expect(page.locator("#history-title")).to_have_text("Runs of w_first")
        parent = page.locator("#history tbody tr", has_text="manual").first
        expect(parent.locator(".status")).to_have_text("succeeded", timeout=30_000)
        parent.locator("a").click()
        child = page.locator("#chain li", has_text="w_second")
        expect(child).to_contain_text("queued: #", timeout=15_000)
        expect(child).to_contain_text("(chain)")
        browser.close()
