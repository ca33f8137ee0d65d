"""Performance: the three speed plots over every benchmark input (CPU and GPU together, one panel row per machine ·
shape · dtype), the per-scenario tables, and the CPU benchmark's targets."""
from __future__ import annotations

from . import plots
from .document import (FAIL, MUTED, OK, WARN, Card, Cell, Figure, Part, Section, Table, fmt_bytes, fmt_ms, fmt_num,
                       fmt_pct, fmt_times, plural)
from .load import BENCH, KNOWN_VERSIONS, Input, blame
from .perf import BASE, PerfRow, scenarios

COLLAPSE_ROWS = 40


def bench_facts(inp: Input) -> list[tuple[str, str]]:
    meta = inp.data.get("meta") or {}
    facts = [(k, str(meta[k])) for k in ("gradguard", "torch", "peft", "python") if meta.get(k)]
    machine = ", ".join(str(x) for x in (meta.get("cpu"), f"{meta['cores']} cores" if meta.get("cores") else None,
                                         f"{meta['threads']} threads" if meta.get("threads") else None) if x)
    if machine:
        facts.append(("CPU benchmark machine", machine))
    if meta.get("date"):
        facts.append(("CPU benchmark date", str(meta["date"])))
    for dtype, roof in _rooflines(meta).items():
        facts.append((f"roofline {dtype}", f"{fmt_num(roof.get('peak_gflops'))} GFLOP/s, "
                                           f"{fmt_num(roof.get('peak_gbytes_per_s'))} GB/s"))
    return facts


def _rooflines(meta: dict) -> dict[str, dict]:
    """meta.roofline is one {peak_gflops, ...} (the first /2 drafts) or one per dtype."""
    roof = meta.get("roofline")
    if not isinstance(roof, dict):
        return {}
    if "peak_gflops" in roof:
        return {str(roof.get("dtype", "")) or "peak": roof}
    return {str(k): v for k, v in roof.items() if isinstance(v, dict)}


def part(rows: list[PerfRow], benches: list[Input]) -> Part:
    out = Part()
    if not rows and not benches:
        return out
    blocks: list = []
    for inp in benches:
        if inp.version not in KNOWN_VERSIONS[BENCH]:
            blocks.append(f"{inp.path.name}: schema {inp.schema} is newer than this report generator knows "
                          "(bench-cpu/1 and /2); what it recognises is shown.")
        with blame(inp):
            method = (inp.data.get("meta") or {}).get("method")
        if method:
            blocks.append(f"Method ({inp.path.name}): {method}.")
    blocks += [
        Figure("Adapter overhead over the base matmul",
               "Time of the layer with the adapter over the frozen base matmul alone (0% = free), per implementation;"
               " sorted, largest at the top.", lambda: plots.overhead(rows)),
        Figure("Speed-up over PEFT", "t_PEFT / t_gradguard for the same layer and tensors; right of the line is "
               "faster than PEFT's own layer; bars start at 1×, so a slower one points left, in red.",
               lambda: plots.speedup(rows))]
    if any(r.roofline for r in rows if r.impl != BASE):  # a dict of the phases that have a figure
        blocks.append(Figure("Share of the roofline", "Achieved FLOP/s over the attainable min(peak FLOP/s, "
                             "arithmetic intensity × bandwidth) measured in the same run; dashed: the base matmul.",
                             lambda: plots.roofline(rows)))
    else:
        blocks.append("No roofline figures in these inputs (gradguard.bench-cpu/1 has none).")
    blocks += [_scenario_table(s, [r for r in rows if r.scenario == s]) for s in scenarios(rows)]
    counts = [0, 0]  # targets met, judged: over every CPU benchmark input
    for inp in benches:
        with blame(inp):
            blocks += _bench_extras(inp, out, counts)
    targets_verdict("CPU speed targets met", *counts, out)
    invalid = [r for r in rows if r.validation_ok is False]
    if invalid:
        out.headline.append((f"{plural(len(invalid), 'benchmarked implementation')} disagree with PEFT", FAIL))
        out.cards.append(Card("Benchmark validation", f"{len(invalid)} FAIL", "output and gradients vs PEFT", FAIL))
    speedups = sorted(v for r in rows for v in [r.speedup_vs_peft.get("fwd_bwd")] if v is not None)
    if speedups:
        out.cards.append(Card("Speed-up over PEFT", fmt_times(speedups[len(speedups) // 2]),
                              f"median fwd+bwd; range {fmt_times(speedups[0])} – {fmt_times(speedups[-1])}",
                              OK if speedups[0] >= 1 else WARN))
    status = FAIL if invalid else (WARN if counts[0] < counts[1] else (OK if rows else None))
    out.sections.append(Section("Performance", "performance", blocks, status))
    return out


def _scenario_table(scenario: str, rows: list[PerfRow]) -> Table:
    t = Table(["adapter", "impl", "fwd ms", "fwd+bwd ms", "overhead fwd", "overhead fwd+bwd", "speed-up vs PEFT fwd",
               "speed-up vs PEFT fwd+bwd", "roofline fwd+bwd", "peak memory", "matches PEFT"], [], caption=scenario,
              collapsed=len(rows) > COLLAPSE_ROWS)
    for r in rows:
        if r.unsupported:
            t.add([r.adapter, Cell(f"unsupported: {r.unsupported}", MUTED, span=len(t.headers) - 1)], MUTED)
            continue
        over = {p: r.over_base.get(p) for p in ("fwd", "fwd_bwd")}
        t.add([r.adapter if r.impl != BASE else Cell(r.adapter, MUTED), r.impl,
               Cell(fmt_ms(r.median_ms.get("fwd")), numeric=True),
               Cell(fmt_ms(r.median_ms.get("fwd_bwd")), numeric=True),
               *(Cell("" if r.impl == BASE or over[p] is None else fmt_pct(over[p] - 1, signed=True), numeric=True)
                 for p in over),
               *(_speedup_cell(r.speedup_vs_peft.get(p)) for p in ("fwd", "fwd_bwd")),
               Cell(fmt_pct(r.roofline["fwd_bwd"]) if r.roofline.get("fwd_bwd") is not None else "", numeric=True),
               Cell(fmt_bytes(r.peak_mem_bytes) if r.peak_mem_bytes is not None else "", numeric=True),
               Cell("" if r.validation_ok is None else ("ok" if r.validation_ok else "FAIL"),
                    None if r.validation_ok is None else (OK if r.validation_ok else FAIL))],
              FAIL if r.validation_ok is False else None)
    t.drop_empty_columns(keep=2)
    return t


def _speedup_cell(v: float | None) -> Cell:
    if v is None:
        return Cell("", numeric=True)
    return Cell(fmt_times(v) + ("" if v >= 1 else " slower"), None if v >= 1 else FAIL, numeric=True)


def _bench_extras(inp: Input, out: Part, counts: list[int]) -> list:
    """The CPU benchmark's own verdicts: its speed targets and the quick gradcheck it times."""
    blocks: list = []
    g = inp.data.get("gradcheck")
    if isinstance(g, dict) and g.get("cases") is not None:
        cases = [c for c in g.get("cases") or [] if isinstance(c, dict)]
        bad = [f"{c.get('adapter')}/{c.get('backend')}" for c in cases if not c.get("ok")]
        blocks.append(f"Timed fast gradcheck ({inp.path.name}): {plural(len(cases), 'case')} in "
                      f"{fmt_num(g.get('total_s'))} s, " + ("all ok." if not bad else f"FAILED: {', '.join(bad)}."))
        if bad:
            out.headline.append((f"{len(bad)} benchmark gradchecks FAIL", FAIL))
    targets = [t for t in inp.data.get("targets") or [] if isinstance(t, dict)]
    if targets:
        table, met, judged = targets_table(targets, f"Speed targets ({inp.path.name})")
        blocks.append(table)
        counts[0] += met
        counts[1] += judged
    return blocks


def targets_table(targets: list[dict], caption: str) -> tuple[Table, int, int]:
    """Targets as both benchmarks write them ({id|target, adapter?, description?, threshold?, value, where?, met}),
    with how many were judged (met is not null) and how many of those met."""
    t = Table(["target", "adapter", "value", "needs", "where", "met"], [], caption=caption)
    for x in targets:
        met = x.get("met")
        name = str(x.get("id") or x.get("target") or "?")
        desc = x.get("description")
        t.add([Cell(name + (f" — {desc}" if desc else "")), x.get("adapter") or "",
               Cell(fmt_num(x.get("value"), 4), numeric=True), Cell(str(x.get("threshold") or ""), numeric=True),
               x.get("where") or "",
               Cell("n/a", MUTED) if met is None else (Cell("met", OK) if met else Cell("MISSED", FAIL))],
              MUTED if met is None else (None if met else FAIL))
    t.drop_empty_columns(keep=1)
    judged = [x for x in targets if x.get("met") is not None]
    return t, sum(bool(x["met"]) for x in judged), len(judged)


def targets_verdict(label: str, met: int, judged: int, out: Part) -> None:
    """One card and one headline phrase for all the target tables of a kind (targets are reported, not enforced:
    a miss is amber, the gate is what fails a build)."""
    if not judged:
        return
    status = WARN if met < judged else OK
    out.cards.append(Card(label, f"{met}/{judged}", "reported, not enforced (the gate enforces)", status))
    out.headline.append((f"{met}/{judged} {label}", WARN if met < judged else None))
