"""The report as one self-contained HTML page: the style sheet is inlined, plots are inline SVG, there is no script
and no reference to anything outside the file, so it opens offline, from an e-mail or a CI artifact."""
from __future__ import annotations

import html
from pathlib import Path

from .document import FAIL, MUTED, OK, WARN, Cell, Code, Document, Figure, Group, Table

STYLE = Path(__file__).with_name("style.css")
BADGE = {FAIL: "FAIL", WARN: "check", OK: "ok"}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _status_class(prefix: str, status: str | None) -> str:
    return f' class="{prefix}-{status}"' if status else ""


def render_html(doc: Document) -> str:
    parts = ["<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_e(doc.title)}</title>", f"<style>\n{STYLE.read_text(encoding='utf-8')}</style>", "</head>",
             "<body>", _masthead(doc), '<main class="wrap">', _cards(doc), _toc(doc), _facts(doc)]
    for s in doc.sections:
        badge = f' <span class="badge badge-{s.status}">{BADGE[s.status]}</span>' if s.status in BADGE else ""
        parts += [f'<section id="{_e(s.anchor)}">', f"<h2>{_e(s.title)}{badge}</h2>", *_blocks(s.blocks),
                  "</section>"]
    parts += ["</main>", f'<footer class="wrap">gradguard report · generated {_e(doc.generated)}</footer>',
              "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _masthead(doc: Document) -> str:
    return (f'<header class="masthead"><div class="wrap"><h1>{_e(doc.title)}</h1>'
            f'<p class="headline headline-{doc.headline_status or "none"}">{_e(doc.headline)}</p>'
            f'<p class="generated">Generated {_e(doc.generated)}</p></div></header>')


def _cards(doc: Document) -> str:
    cards = [f'<div class="card card-{c.status or "none"}"><div class="card-value">{_e(c.value)}</div>'
             f'<div class="card-label">{_e(c.label)}</div>'
             + (f'<div class="card-note">{_e(c.note)}</div>' if c.note else "") + "</div>" for c in doc.cards]
    return f'<section class="cards" aria-label="summary">{"".join(cards)}</section>' if cards else ""


def _toc(doc: Document) -> str:
    items = [f'<li><a href="#{_e(s.anchor)}"><span class="dot dot-{s.status or "none"}"></span>{_e(s.title)}</a></li>'
             for s in doc.sections]
    return f'<nav class="toc"><ul>{"".join(items)}</ul></nav>' if items else ""


def _facts(doc: Document) -> str:
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in doc.facts)
    inputs = "".join(f"<li><code>{_e(i.path)}</code> <span>{_e(i.schema)}</span>"
                     + (f" <span>{_e(i.date)}</span>" if i.date else "") + "</li>" for i in doc.inputs)
    return (f'<section class="facts"><dl>{facts}</dl>'
            + (f'<div class="inputs"><h3>Inputs</h3><ul>{inputs}</ul></div>' if inputs else "") + "</section>")


def _blocks(blocks: list) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, str):
            out.append(f"<p>{_e(b)}</p>")
        elif isinstance(b, Table):
            out.append(_table(b))
        elif isinstance(b, Figure):
            out.append(_figure(b))
        elif isinstance(b, Code):
            out.append(f'<pre><code class="language-{_e(b.language)}">{_e(b.text)}</code></pre>')
        elif isinstance(b, Group):
            out.append(f'<details class="group group-{b.status or "none"}"{" open" if b.open else ""}>'
                       f"<summary>{_e(b.title)}</summary>" + "\n".join(_blocks(b.blocks)) + "</details>")
    return out


def _cell(c: Cell) -> str:
    classes = " ".join(x for x in (f"st-{c.status}" if c.status else "", "num" if c.numeric else "") if x)
    attrs = (f' class="{classes}"' if classes else "") + (f' colspan="{c.span}"' if c.span > 1 else "")
    return f"<td{attrs}>{_e(c.text)}</td>"


def _table(t: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in t.headers)
    statuses = t.row_status + [None] * (len(t.rows) - len(t.row_status))
    body = "".join(f"<tr{_status_class('row', s)}>" + "".join(_cell(c) for c in row) + "</tr>"
                   for row, s in zip(t.rows, statuses))
    table = (f'<div class="table-wrap"><table>' + (f"<caption>{_e(t.caption)}</caption>" if t.caption and not
                                                      t.collapsed else "")
             + f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
    if not t.collapsed:
        return table
    failing = sum(s == FAIL for s in statuses)
    note = f" — {failing} failing" if failing else ""
    return (f'<details class="table-details"{" open" if failing else ""}><summary>{_e(t.caption)} '
            f'<span class="count">({len(t.rows)} rows{_e(note)})</span></summary>{table}</details>')


def _figure(f: Figure) -> str:
    try:
        svg = f.make()
    except ImportError as e:  # matplotlib is optional for the Markdown; say so instead of failing the page
        return f'<p class="st-{MUTED}">Plot "{_e(f.title)}" omitted: {_e(e)} (install matplotlib).</p>'
    if svg is None:
        return ""
    return (f'<figure><h3>{_e(f.title)}</h3><div class="plot" role="img" aria-label="{_e(f.title)}">{svg}</div>'
            f"<figcaption>{_e(f.caption)}</figcaption></figure>")
