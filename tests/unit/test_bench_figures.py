"""The benchmark suite's plumbing: parsing the reference output, medians and ratios."""

from __future__ import annotations

import pytest

from tests.bench import anchors
from tests.bench.anchors import rate
from tests.bench.figures import Comparison, Results, render


def test_reference_rates_are_read_from_their_output() -> None:
    celery = "celery enqueue 1200 msg/s  drain(incl. worker start) 3100 msg/s  threads=8"
    assert rate(celery, "drain") == 3100 and rate(celery, "enqueue") == 1200
    assert rate("pika publish 9 msg/s  consume+ack 45.5 msg/s", "consume+ack") == 45.5
    with pytest.raises(ValueError, match="no 'drain' rate"):
        rate("garbage", "drain")


def test_table_shows_median_spread_ratio_and_goal() -> None:
    results = Results()
    for ours, ref in ((90, 100), (80, 100), (100, 100)):
        results.add("ours", "msg/s", ours)
        results.add("ref", "msg/s", ref)
    assert results.figures["ours"].median == 90
    assert results.figures["ours"].spread == "±11%"
    text = render(
        results,
        [Comparison("ours / ref", "ours", "ref", 0.8), Comparison("x", "missing", "ref", 1.0)],
    )
    assert "0.90x" in text and "yes" in text and "n/a" in text
    strict = render(results, [Comparison("ours / ref", "ours", "ref", 0.95)])
    assert "NO" in strict


def test_ceilings_report_met_and_missing() -> None:
    results = Results()
    results.add("cpu", "s", 0.5)
    text = render(results, [], [("cpu < 1 s", "cpu", 1.0), ("other < 1 s", "nope", 1.0)])
    assert "0.500" in text and "yes" in text and "n/a" in text


def test_exact_labels_tell_apart_figures_that_share_a_word() -> None:
    out = "celery-db enqueue 3649 msg/s  drain 240 msg/s  drain(incl. worker start) 232 msg/s"
    assert rate(out, "drain", exact=True) == 240
    assert rate(out, "drain(incl. worker start)", exact=True) == 232
    late = "x drain(incl. worker start) 232 msg/s  drain 240 msg/s"
    assert rate(late, "drain", exact=True) == 240 and rate(late, "drain") == 232
    with pytest.raises(ValueError):
        rate("overdrain 5 msg/s", "drain")


PEER_OUTPUT = {
    "anchor_pgqueuer.py": "pgqueuer enqueue(one-by-one) 2295 msg/s  enqueue(batch) 45572 msg/s  "
    "drain 2134 msg/s  concurrency=8 batch_size=4 batch=1000 driver=connection",
    "anchor_procrastinate.py": "procrastinate enqueue(one-by-one) 799 msg/s  enqueue(batch) "
    "15795 msg/s  drain 219 msg/s  concurrency=8 batch=1000 task=async",
    "anchor_celery_db.py": "celery-db enqueue 3649 msg/s  drain 240 msg/s  "
    "drain(incl. worker start) 232 msg/s  threads=8 engine=pooled",
}


def test_peers_run_in_a_database_of_their_own_and_their_rates_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, tuple[str, ...], dict[str, object]]] = []

    def fake_run(script: str, *args: str, **kw: object) -> str:
        calls.append((script, args, kw))
        return PEER_OUTPUT[script]

    monkeypatch.setattr(anchors, "_run", fake_run)
    results = Results()
    for name in ("pgqueuer", "procrastinate", "celery-db"):
        anchors.ANCHORS[name].measure(results, 5000, 8, "amqp://x", "postgresql://pg/test")
    medians = {name: fig.median for name, fig in results.figures.items()}
    assert medians["pgqueuer drain"] == 2134
    assert medians["pgqueuer enqueue (batches)"] == 45572
    assert medians["procrastinate drain"] == 219
    assert medians["procrastinate enqueue (one by one)"] == 799
    assert medians["Celery + DB results drain"] == 240
    assert medians["Celery + DB results drain (incl. worker start)"] == 232
    for script, args, kw in calls:
        assert args == ("--messages", "5000", "--threads", "8")
        assert kw["pg_url"] == "postgresql://pg/test"
        assert kw["db_prefix"] == script.removesuffix(".py") + "_"


def test_issue_17_goals_are_the_ones_compared() -> None:
    from tests.bench.__main__ import COMPARISONS, ONE, TWO

    goals = {(c.ours, c.reference): (c.goal, c.at_least) for c in COMPARISONS}
    assert goals[(ONE, "bare Dramatiq drain")] == (0.8, True)
    assert goals[(ONE, "pgqueuer drain")] == (1.5, True)
    assert goals[(ONE, "procrastinate drain")] == (4.0, True)
    assert goals[(ONE, "Celery + DB results drain")] == (4.0, True)
    assert goals[(TWO, ONE)] == (1.6, True)
    assert goals[("batched cleanup of expired rows", "raw DELETE of expired rows")] == (1.5, False)
    assert goals[(TWO, "bare Dramatiq drain")] == (None, True)  # issue 10's 0.9: superseded
