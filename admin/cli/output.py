"""How the CLI shows things: formats, tables, colours and times, in one place.

- **Formats.** Every listing takes ``--format table|json|markdown``. JSON and markdown go
  to stdout untouched by colour or terminal width, for scripts and docs.
- **Tables fit the terminal.** Columns are sized here, not left to chance: a column that
  may wrap breaks between words only, a column that may not (names, ids) is never cut.
  When the columns cannot fit that way, the rows are printed as a stacked list (one block
  per row, one line per field) instead; nothing is dropped, nothing is cut mid-word.
- **Colours** (statuses, check results, banners) only when stdout is a terminal and
  ``NO_COLOR`` is unset; plain text when piped.
- **Times**: one format everywhere, always UTC and saying so: ``2026-11-30 14:05:00 UTC``.
  JSON gives ISO 8601 with the offset (``2026-11-30T14:05:00+00:00``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TextIO

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
NOTHING = "—"


class Format(StrEnum):
    """The ``--format`` of every listing."""

    table = "table"
    json = "json"
    markdown = "markdown"


FORMAT_HELP = "table (fits the terminal), json (for scripts) or markdown (for docs)."


# --- times -------------------------------------------------------------------------------
def as_utc(value: dt.datetime) -> dt.datetime:
    """Naive values are UTC already (the database stores UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def when(value: dt.datetime | None, missing: str = NOTHING) -> str:
    """The one way the CLI shows a moment: ``2026-11-30 14:05:00 UTC``."""
    return as_utc(value).strftime(TIME_FORMAT) if value is not None else missing


def iso(value: dt.datetime | None) -> str | None:
    """A moment for JSON: ISO 8601 in UTC with its offset, or null."""
    return as_utc(value).isoformat() if value is not None else None


# --- colour ------------------------------------------------------------------------------
STATUS_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "skipped": "yellow",
    "running": "blue",
    "queued": "cyan",
    "canceled": "magenta",
}


def colour_enabled(stream: TextIO | None = None) -> bool:
    """Colours only for a person at a terminal: not when piped, not with NO_COLOR set."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM") == "dumb":
        return False
    return _is_terminal(stream)


#: Width when stdout is not a terminal and COLUMNS is unset: rows stay on one line, so
#: ``tickwork settings | grep BROKER`` finds the whole row.
PIPE_WIDTH = 10_000


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def console(stderr: bool = False) -> Console:
    """A rich console: the terminal's width (or COLUMNS), colour only where it belongs."""
    stream = sys.stderr if stderr else sys.stdout
    colour = colour_enabled(stream)
    width = None
    if not os.environ.get("COLUMNS", "").isdigit() and not _is_terminal(stream):
        width = PIPE_WIDTH
    return Console(
        file=stream,
        width=width,
        color_system="auto" if colour else None,
        no_color=not colour,
        force_terminal=colour or None,
        highlight=False,
        emoji=False,
        markup=False,
    )


def status(value: str | None) -> Text:
    """A run status, coloured by meaning (succeeded green, failed red...)."""
    if not value:
        return Text(NOTHING)
    return Text(value, style=STATUS_STYLES.get(value, ""))


def passed(ok: bool) -> Text:
    return Text("ok", style="green") if ok else Text("FAIL", style="bold red")


def banner(message: str, *, stderr: bool = False, style: str = "bold yellow") -> None:
    """One emphasised line (e.g. "jobs are HELD"), before a listing."""
    out = console(stderr=stderr)
    _print(out, [Text(message, style=style)])


# --- rows --------------------------------------------------------------------------------
Cell = str | Text


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    #: True: may wrap, between words only. False: one line, never cut (names, ids).
    wrap: bool = True
    justify: Literal["left", "right"] = "left"
    #: The narrowest a wrapping column may get (e.g. a time keeps "14:05:00 UTC" whole).
    min_width: int = 0


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


#: A word longer than its column may break after one of these (URLs, paths, module
#: names), never inside a run of letters or digits.
_BREAK_AFTER = re.compile(r"(?<=[/:.,;=&?@-])")


def _segments(word: str) -> list[str]:
    return [piece for piece in _BREAK_AFTER.split(word) if piece]


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most ``width`` cells, broken between words, or inside a long word
    only after a separator (``/ : . , ; = & ? @ -``). A single piece longer than the
    width is left whole (the caller makes widths at least that wide)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            if cell_len(word) > width:
                if line:
                    lines.append(line)
                pieces: list[str] = []
                for segment in _segments(word):
                    if pieces and cell_len(pieces[-1] + segment) <= width:
                        pieces[-1] += segment
                    else:
                        pieces.append(segment)
                lines.extend(pieces[:-1])
                line = pieces[-1]
            elif not line:
                line = word
            elif cell_len(line) + 1 + cell_len(word) <= width:
                line += " " + word
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _wrapped(cell: Cell, width: int) -> Text:
    text = _text(cell)
    if all(cell_len(line) <= width for line in text.plain.splitlines()):
        return text
    return Text("\n".join(wrap(text.plain, width)), style=text.style)


def _min_width(column: Column, cells: Sequence[Cell]) -> int:
    texts = [column.header, *(_plain(c) for c in cells)]
    if not column.wrap:
        return max(cell_len(line) for t in texts for line in (t.splitlines() or [""]))
    longest = max(
        (cell_len(piece) for t in texts for word in t.split() for piece in _segments(word)),
        default=1,
    )
    return max(longest, column.min_width)


def _max_width(column: Column, cells: Sequence[Cell]) -> int:
    texts = [column.header, *(_plain(c) for c in cells)]
    return max(cell_len(line) for t in texts for line in (t.splitlines() or [""]))


def _new_table(columns: Sequence[Column], widths: Sequence[int]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    for column, width in zip(columns, widths, strict=True):
        table.add_column(
            column.header,
            justify=column.justify,
            width=width,
            no_wrap=not column.wrap,
            overflow="fold",
            header_style="bold",
        )
    return table


def _extra_width(columns: Sequence[Column]) -> int:
    """Padding and separators of a table with these columns (measured, not guessed)."""
    probe = _new_table(columns, [1] * len(columns))
    probe.add_row(*["x"] * len(columns))
    out = io.StringIO()
    Console(file=out, width=10_000, color_system=None).print(probe)
    return max(cell_len(line) for line in out.getvalue().splitlines()) - len(columns)


def fit_widths(
    columns: Sequence[Column], rows: Sequence[Mapping[str, Cell]], width: int
) -> list[int] | None:
    """Column widths that fit ``width`` without cutting a word, or None if none do."""
    cells = [[row[c.key] for row in rows] for c in columns]
    mins = [_min_width(c, cs) for c, cs in zip(columns, cells, strict=True)]
    maxs = [max(_max_width(c, cs), m) for c, cs, m in zip(columns, cells, mins, strict=True)]
    room = width - _extra_width(columns)
    if sum(mins) > room:
        return None
    widths = list(mins)
    spare = room - sum(mins)
    wants = [hi - lo for lo, hi in zip(mins, maxs, strict=True)]
    if sum(wants) <= spare:
        return maxs
    # Share the spare room in proportion to how much each column wants.
    total = sum(wants)
    for i, want in enumerate(wants):
        widths[i] += want * spare // total
    left = room - sum(widths)
    for i, want in enumerate(wants):  # rounding leftovers, first columns first
        if left <= 0:
            break
        extra = min(left, mins[i] + want - widths[i])
        widths[i] += extra
        left -= extra
    return widths


def print_table(
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Cell]],
    *,
    empty: str = "nothing to show",
) -> None:
    """A table that fits the terminal, or the same rows stacked when it cannot."""
    out = console()
    parts: list[RenderableType] = [Text(title, style="bold")]
    widths = fit_widths(columns, rows, out.width) if rows else None
    if not rows:
        parts.append(Text(empty))
    elif widths is None:
        parts += _stacked(out.width, columns, rows)
    else:
        table = _new_table(columns, widths)
        for row in rows:
            table.add_row(*(_wrapped(row[c.key], w) for c, w in zip(columns, widths, strict=True)))
        parts.append(table)
    _print(out, parts)


def _print(out: Console, parts: Sequence[RenderableType]) -> None:
    """Print without the spaces rich pads lines with (they only bother diffs and pipes);
    lines of text (titles, banners) wrap between words like table cells."""
    with out.capture() as captured:
        for part in parts:
            if isinstance(part, Text):
                out.print(_wrapped(part, out.width), soft_wrap=True)
            else:
                out.print(part)
    text = "\n".join(line.rstrip(" ") for line in captured.get().split("\n"))
    out.file.write(text)
    out.file.flush()


def _stacked(
    width: int, columns: Sequence[Column], rows: Sequence[Mapping[str, Cell]]
) -> list[RenderableType]:
    """One block per row, ``header  value`` per line: for terminals too narrow for a table."""
    label_width = max(cell_len(c.header) for c in columns)
    value_width = max(width - label_width - 2, 10)
    parts: list[RenderableType] = []
    for index, row in enumerate(rows):
        if index:
            parts.append(Text(""))
        grid = Table.grid(padding=(0, 2), pad_edge=False)
        grid.add_column(width=label_width, no_wrap=True, style="bold")
        grid.add_column(overflow="fold")
        for c in columns:
            grid.add_row(Text(c.header), _wrapped(row[c.key], value_width))
        parts.append(grid)
    return parts


def _markdown_cell(cell: Cell) -> str:
    text = _plain(cell).strip()
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>") or " "


def print_markdown(columns: Sequence[Column], rows: Sequence[Mapping[str, Cell]]) -> None:
    typer.echo("| " + " | ".join(c.header for c in columns) + " |")
    typer.echo("|" + "|".join("---:" if c.justify == "right" else "---" for c in columns) + "|")
    for row in rows:
        typer.echo("| " + " | ".join(_markdown_cell(row[c.key]) for c in columns) + " |")


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def render(
    fmt: Format,
    *,
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Cell]],
    data: Any,
    empty: str = "nothing to show",
    markdown_columns: Sequence[Column] | None = None,
) -> None:
    """Show one listing in the chosen format: ``data`` is what JSON gets (typed values),
    ``rows`` what a table or markdown shows (text)."""
    if fmt is Format.json:
        print_json(data)
    elif fmt is Format.markdown:
        print_markdown(markdown_columns or columns, rows)
    else:
        print_table(title, columns, rows, empty=empty)
