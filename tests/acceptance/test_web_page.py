"""The admin page in headless Chromium (Debian's package) against a real `tickwork run`:
log in with a token, run a job now, see its run appear with its output."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST_RETRIES, IN_CI, REPO_ROOT, free_port, run_tickwork
from tests.support.processes import ProcessStarter
from tests.support.waiting import http_ok, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The screenshot in the docs is refreshed with TICKWORK_TEST_SCREENSHOTS=1.
SCREENSHOT = REPO_ROOT / "docs" / "img" / "admin-page.png"


@pytest.fixture
def running(tmp_path: Path, start_process: ProcessStarter) -> Iterator[tuple[str, str]]:
    """A real `tickwork run` (embedded: worker, scheduler and API) and a fresh token."""
    yield from _serve(tmp_path, start_process)


@pytest.fixture
def running_test_jobs(tmp_path: Path, start_process: ProcessStarter) -> Iterator[tuple[str, str]]:
    """The same, with the throw-away test jobs (``t_fail``) and fast retries."""
    yield from _serve(
        tmp_path,
        start_process,
        TICKWORK_JOB_MODULES="tests.support.throwaway_jobs_module",
        **FAST_RETRIES,
    )


def _serve(
    tmp_path: Path, start_process: ProcessStarter, **settings: str
) -> Iterator[tuple[str, str]]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("chromium is not installed, and CI=true (.ci/apt-packages.txt lists it)")
        pytest.skip("chromium is not installed")
    port = free_port()
    env = {"TICKWORK_API_PORT": str(port), **settings}
    assert run_tickwork("migrate", cwd=tmp_path, **env).returncode == 0
    created = run_tickwork("api-token", "create", "browser test", cwd=tmp_path, **env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    proc = start_process("run", env)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_ok(f"{base}/health"), 60, "tickwork run serving", processes=[proc])
    yield base, token
    proc.stop()


def test_log_in_run_a_job_and_see_its_run(running: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, token = running
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
        shot = SCREENSHOT if os.environ.get("TICKWORK_TEST_SCREENSHOTS") else tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        browser.close()


def test_dead_letters_of_the_broker_are_listed_replayed_and_purged(
    running_test_jobs: tuple[str, str],
) -> None:
    """Issue 17, defect 6: a job that failed for good is dead-lettered by the broker
    itself (no row written by a worker); the page lists it, replays it and purges it."""
    from playwright.sync_api import expect, sync_playwright

    base, token = running_test_jobs
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/")
        page.fill("#token", token)
        page.click("#login button")
        # Given t_fail run now (it always raises; its one retry fails too),
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


@pytest.fixture
def running_workflow_jobs(
    tmp_path: Path, start_process: ProcessStarter
) -> Iterator[tuple[str, str]]:
    """A real `tickwork run` with a chained job and a job of several entries."""
    yield from _serve(
        tmp_path, start_process, TICKWORK_JOB_MODULES="tests.support.workflow_jobs_module"
    )


def test_chains_entries_and_run_with_arguments(running_workflow_jobs: tuple[str, str]) -> None:
    """Issue 19: the page shows chains, entries and policies; runs a job with arguments;
    a run's chain is shown from its history."""
    from playwright.sync_api import expect, sync_playwright

    base, token = running_workflow_jobs
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
        expect(page.locator("#error")).to_contain_text("'source'")
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
