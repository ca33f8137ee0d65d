"""The report as data: sections of paragraphs, tables and figures, built once from the inputs and then rendered twice
(Markdown and HTML), so the two files always say the same thing.

A status ("ok", "fail", "warn", "muted") only styles a cell or row; the words that carry the verdict ("FAIL",
"skipped: ...") are always in the text too, so the Markdown and a black-and-white print lose nothing."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

OK, FAIL, WARN, MUTED = "ok", "fail", "warn", "muted"


@dataclass
class Cell:
    text: str
    status: str | None = None
    numeric: bool = False  # right-aligned in HTML
    span: int = 1  # columns covered (an unsupported adapter's reason runs across the figures it does not have)


def cell(value: object, status: str | None = None) -> Cell:
    """A cell from a raw value; numbers are right-aligned, None is a dash."""
    if isinstance(value, Cell):
        return value
    if value is None:
        return Cell("–", status or MUTED)
    return Cell(str(value), status, numeric=isinstance(value, (int, float)) and not isinstance(value, bool))


def verdict(ok: bool | None, good: str = "ok", bad: str = "FAIL", unknown: str = "skipped") -> Cell:
    if ok is None:
        return Cell(unknown, MUTED)
    return Cell(good, OK) if ok else Cell(bad, FAIL)


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    row_status: list[str | None] = field(default_factory=list)  # per row; fail rows are tinted red, muted grey
    caption: str = ""
    collapsed: bool = False  # long detail tables fold away in HTML (<details>), summary = caption

    def add(self, values: list[object], status: str | None = None) -> None:
        self.rows.append([cell(v) for v in values])
        self.row_status.append(status)

    def drop_empty_columns(self, keep: int = 1) -> None:
        """Columns after the first `keep` that no single-column cell fills (a figure this input does not have) are
        left out; a spanning cell shrinks by the columns it loses."""
        placed = [list(_placed(r)) for r in self.rows]
        empty = {i for i in range(keep, len(self.headers))
                 if all(c.text == "" for row in placed for c, first, last in row if first == last == i)}
        self.headers = [h for i, h in enumerate(self.headers) if i not in empty]
        rows = []
        for row in placed:
            kept = []
            for c, first, last in row:
                width = sum(i not in empty for i in range(first, last + 1))
                if width:
                    c.span = width
                    kept.append(c)
            rows.append(kept)
        self.rows = rows


def _placed(row: list[Cell]):
    """(cell, first column, last column) along a row."""
    col = 0
    for c in row:
        yield c, col, col + c.span - 1
        col += c.span


@dataclass
class Figure:
    """A plot made only when the HTML is rendered (the Markdown names it); `make` returns SVG text, or None when the
    inputs hold nothing to plot."""
    title: str
    caption: str
    make: Callable[[], str | None]


@dataclass
class Code:
    """A verbatim block (a repro script)."""
    text: str
    language: str = "python"


@dataclass
class Group:
    """A titled run of blocks that HTML folds into a <details> (open when `open`); Markdown gives it a heading."""
    title: str
    blocks: list
    status: str | None = None
    open: bool = False


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list = field(default_factory=list)  # str (a paragraph), Table, Figure, Code, Group
    status: str | None = None  # shown beside the title in the table of contents


@dataclass
class Card:
    """One headline number in the summary strip at the top."""
    label: str
    value: str
    note: str = ""
    status: str | None = None


@dataclass
class InputNote:
    path: str
    kind: str
    schema: str
    date: str = ""


@dataclass
class Document:
    title: str
    generated: str
    headline: str = ""  # one sentence: "23 adapters, all gradchecks pass, ..."
    headline_status: str | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)  # versions, machine, dates
    inputs: list[InputNote] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


# -- number formats shared by every section ------------------------------------------------------------------------

def finite(v: object) -> float | None:
    """A float when v is a finite number, else None (JSON null, NaN, strings from a hand-edited file)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def fmt_num(v: object, digits: int = 3) -> str:
    f = finite(v)
    return "–" if f is None else f"{f:.{digits}g}"


def fmt_ms(v: object) -> str:
    f = finite(v)
    if f is None:
        return "–"
    return f"{f:.3f}" if f < 10 else f"{f:.1f}"


def fmt_pct(fraction: object, signed: bool = False) -> str:
    f = finite(fraction)
    if f is None:
        return "–"
    pct = 100 * f
    if 0 < abs(pct) < 0.1:  # a budget of 5e-7 or a tiny roofline share: "0.0%" would read as exactly zero
        return f"{'+' if signed and pct > 0 else '-' if pct < 0 else ''}<0.1%"
    text = f"{pct:+.1f}%" if signed else f"{pct:.1f}%"
    return text if abs(pct) < 1e4 else f"{pct:.3g}%"


def fmt_times(v: object) -> str:
    f = finite(v)
    if f is None:
        return "–"
    return f"{f:.3f}×" if abs(f - 1) < 0.01 else f"{f:.2f}×"  # 0.997× is slower; "1.00×" would hide it


def fmt_bytes(v: object) -> str:
    f = finite(v)
    if f is None:
        return "–"
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while abs(f) >= 1024 and i < len(units) - 1:
        f /= 1024
        i += 1
    return f"{f:.0f} B" if i == 0 else f"{f:.2f} {units[i]}"


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


@dataclass
class Part:
    """What one input (or the benchmarks together) adds to the report."""
    cards: list[Card] = field(default_factory=list)
    headline: list[tuple[str, str | None]] = field(default_factory=list)  # phrases of the summary sentence
    facts: list[tuple[str, str]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
