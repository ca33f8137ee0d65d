"""The report as Markdown: the same sections and tables as the HTML; plots are named and left to report.html."""
from __future__ import annotations

from .document import FAIL, OK, WARN, Code, Document, Figure, Group, Table

STATUS_WORD = {FAIL: "FAIL", WARN: "check", OK: "ok"}


def render_markdown(doc: Document) -> str:
    lines = [f"# {doc.title}", "", f"**{doc.headline}**", "", f"Generated {doc.generated}.", ""]
    if doc.facts:
        lines += _table(["", "version / machine / date"], [[k, v] for k, v in doc.facts]) + [""]
    if doc.inputs:
        lines += ["Inputs: " + "; ".join(f"`{i.path}` ({i.schema}" + (f", {i.date}" if i.date else "") + ")"
                                         for i in doc.inputs), ""]
    if doc.cards:
        lines += ["## Summary", ""]
        lines += _table(["", "value", "detail", "status"],
                        [[c.label, c.value, c.note, STATUS_WORD.get(c.status, "")]
                         for c in doc.cards]) + [""]
    for s in doc.sections:
        mark = f" — {STATUS_WORD[s.status]}" if s.status in (FAIL, WARN) else ""
        lines += [f"## {s.title}{mark}", ""]
        lines += _blocks(s.blocks, depth=3)
    return "\n".join(lines).rstrip() + "\n"


def _blocks(blocks: list, depth: int) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, str):
            out += [b, ""]
        elif isinstance(b, Table):
            if b.caption:
                out += [f"**{_inline(b.caption)}**", ""]
            out += _table(b.headers, [[t for c in row for t in [c.text] + [""] * (c.span - 1)] for row in b.rows])
            out.append("")
        elif isinstance(b, Figure):
            out += [f"*Plot: {b.title} — in report.html.*", ""]
        elif isinstance(b, Code):
            out += [f"```{b.language}", b.text, "```", ""]
        elif isinstance(b, Group):
            out += [f"{'#' * min(depth, 6)} {b.title}", ""] + _blocks(b.blocks, depth + 1)
    return out


def _inline(text: str) -> str:
    """One table cell or caption: no line breaks, and a | would end the cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_inline(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_inline(c) for c in row) + " |" for row in rows]
    return lines
