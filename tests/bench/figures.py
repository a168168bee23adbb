"""Figures of a benchmark run: repeated rounds, median and spread, ratios and goals."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Figure:
    """One measured quantity over several rounds."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    higher_is_better: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def spread(self) -> str:
        """min to max as a percentage of the median: how much to trust the figure."""
        if len(self.values) < 2 or not self.median:
            return "-"
        return f"±{(max(self.values) - min(self.values)) / 2 / self.median * 100:.0f}%"


@dataclass
class Comparison:
    """Ours against a reference, with the goal the issue sets (ratio ≥ or ≤ goal)."""

    label: str
    ours: str
    reference: str
    goal: float | None
    at_least: bool = True  # goal is a floor (≥) or a ceiling (≤)


@dataclass
class Results:
    figures: dict[str, Figure] = field(default_factory=dict)

    def add(self, name: str, unit: str, value: float, higher_is_better: bool = True) -> None:
        fig = self.figures.setdefault(name, Figure(name, unit, higher_is_better=higher_is_better))
        fig.values.append(value)

    def ratio(self, ours: str, reference: str) -> float | None:
        a, b = self.figures.get(ours), self.figures.get(reference)
        if a is None or b is None or not b.median:
            return None
        return a.median / b.median


def repeat(rounds: int, measure: Callable[[int], None], say: Callable[[str], None]) -> None:
    for k in range(rounds):
        say(f"  round {k + 1}/{rounds}")
        measure(k)


def render(
    results: Results,
    comparisons: list[Comparison],
    ceilings: list[tuple[str, str, float]] = (),  # type: ignore[assignment]
    width: int = 100,
) -> str:
    """Absolute figures, ratios against the references with their goals, and goals on
    absolute figures (label, figure name, ceiling)."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    figures = Table(title="Absolute figures (median of rounds, spread = half range)")
    for column in ("measurement", "median", "unit", "spread", "rounds"):
        figures.add_column(column, justify="left" if column == "measurement" else "right")
    for fig in results.figures.values():
        shown = f"{fig.median:,.3f}" if fig.median < 10 else f"{fig.median:,.0f}"
        figures.add_row(fig.name, shown, fig.unit, fig.spread, str(len(fig.values)))

    ratios = Table(title="Ratios (ours / reference, medians of the same run)")
    for column in ("comparison", "ratio", "goal", "met"):
        ratios.add_column(column, justify="left" if column == "comparison" else "right")
    for c in comparisons:
        value = results.ratio(c.ours, c.reference)
        if value is None:
            ratios.add_row(c.label, "n/a", "-", "-")
            continue
        goal = "-" if c.goal is None else (f"≥ {c.goal}" if c.at_least else f"≤ {c.goal}")
        met = "-"
        if c.goal is not None:
            met = "yes" if (value >= c.goal if c.at_least else value <= c.goal) else "NO"
        ratios.add_row(c.label, f"{value:.2f}x", goal, met)

    limits = Table(title="Goals on absolute figures (median)")
    for column in ("goal", "median", "met"):
        limits.add_column(column, justify="left" if column == "goal" else "right")
    for label, name, ceiling in ceilings:
        fig = results.figures.get(name)
        if fig is None:
            limits.add_row(label, "n/a", "-")
        else:
            limits.add_row(label, f"{fig.median:,.3f}", "yes" if fig.median < ceiling else "NO")

    out = StringIO()
    console = Console(file=out, width=width, force_terminal=False)
    console.print(figures)
    console.print(ratios)
    if ceilings:
        console.print(limits)
    return out.getvalue()
