"""The benchmark suite's plumbing: parsing the reference output, medians and ratios."""

from __future__ import annotations

import pytest

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
