"""build_report: inputs → one Document → report.md and report.html, both rendered in memory before either file is
touched, each written to a temporary file in out_dir and renamed over the old one (gradguard.atomic)."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from gradguard.atomic import write_text

from . import section_audit, section_gate, section_gpu, section_peft, section_perf
from .document import FAIL, OK, WARN, Document, InputNote, Part
from .load import AUDIT, AUDIT_PEFT, BENCH, EXPECTED, GATE, GPU, Input, ReportInputError, blame, load_input
from .perf import bench_cpu_rows, gpu_bench_rows
from .render_html import render_html
from .render_markdown import render_markdown

# where each kind's sections go: the plots and speed first, then correctness detail, then the other tools' verdicts
SECTION_ORDER = ("performance", "numerics", "gradcheck", "flow", "peft-audit", "gate", "gpu")
PART_ORDER = (AUDIT, AUDIT_PEFT, GATE, BENCH, GPU)  # the order of the summary cards
_SINGLE_PART = {AUDIT: section_audit.part, AUDIT_PEFT: section_peft.part, GATE: section_gate.part,
                GPU: section_gpu.part}


def build_report(inputs: list[str | Path], out_dir: str | Path, title: str = "gradguard report") -> tuple[Path, Path]:
    """Reads every input (kind told by content), writes out_dir/report.md and out_dir/report.html; returns their
    paths. An unreadable, unrecognised or malformed input raises ReportInputError naming it, before anything is
    written; if anything fails later, the previous report files stay as they were."""
    if not inputs:
        raise ReportInputError(f"no input files given; expected one or more of: {EXPECTED}")
    loaded = [load_input(p) for p in inputs]
    doc = assemble(loaded, title)
    markdown, page = render_markdown(doc), render_html(doc)
    out_dir = Path(out_dir)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    write_text(md_path, markdown)
    write_text(html_path, page)
    return md_path, html_path


def assemble(loaded: list[Input], title: str) -> Document:
    parts: list[tuple[str, Part]] = []
    perf_rows = []
    bench_facts = []
    for inp in loaded:
        with blame(inp):
            if inp.kind == BENCH:
                perf_rows += bench_cpu_rows(inp.data)
                bench_facts += section_perf.bench_facts(inp)
            else:
                parts.append((inp.kind, _SINGLE_PART[inp.kind](inp)))
            if inp.kind == GPU:
                perf_rows += gpu_bench_rows(section_gpu.bench_of(inp.data))
    benches = [i for i in loaded if i.kind == BENCH]
    perf = section_perf.part(perf_rows, benches)
    perf.facts = bench_facts + perf.facts
    parts.append((BENCH, perf))
    parts.sort(key=lambda kp: PART_ORDER.index(kp[0]))

    doc = Document(title=title, generated=_now(), inputs=[_note(i) for i in loaded])
    headline = []
    for _, p in parts:
        doc.cards += p.cards
        headline += p.headline
        doc.facts += p.facts
        doc.sections += p.sections
    doc.facts = _merge_facts(doc.facts)
    doc.sections.sort(key=lambda s: SECTION_ORDER.index(s.anchor) if s.anchor in SECTION_ORDER else len(SECTION_ORDER))
    _unique_anchors(doc)
    statuses = {s for _, s in headline}  # the sentence's colour follows what the sentence says
    doc.headline_status = FAIL if FAIL in statuses else (WARN if WARN in statuses else OK)
    doc.headline = (", ".join(text for text, _ in headline) or "no results in the inputs") + "."
    doc.headline = doc.headline[0].upper() + doc.headline[1:]
    return doc


def _now() -> str:
    """UTC now, or SOURCE_DATE_EPOCH when set (reproducible builds of committed example reports)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch and epoch.isdigit()
            else _dt.datetime.now(_dt.timezone.utc))
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _note(inp: Input) -> InputNote:
    meta = inp.data.get("meta") if isinstance(inp.data.get("meta"), dict) else {}
    bench = inp.data.get("bench") if isinstance(inp.data.get("bench"), dict) else {}
    date = meta.get("date") or (bench.get("meta") or {}).get("date") or inp.data.get("date") or ""
    return InputNote(str(inp.path), inp.kind, inp.schema, str(date))


def _merge_facts(facts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One line per key; inputs that disagree (a CPU and a GPU run on different torch builds) show every value."""
    merged: dict[str, list[str]] = {}
    for k, v in facts:
        if v not in merged.setdefault(k, []):
            merged[k].append(v)
    return [(k, " / ".join(v)) for k, v in merged.items()]


def _unique_anchors(doc: Document) -> None:
    seen: dict[str, int] = {}
    for s in doc.sections:
        n = seen.get(s.anchor, 0)
        seen[s.anchor] = n + 1
        if n:
            s.anchor = f"{s.anchor}-{n + 1}"
