"""Timings from both benchmarks (bench/bench_peft.py's gradguard.bench-cpu/1 and /2, bench/bench_gpu.py's layer
table, alone or inside the GPU check's report) brought to one row type, so the plots and tables do not care which
machine or schema they came from."""
from __future__ import annotations

from dataclasses import dataclass, field

from .document import finite

PHASES = ("fwd", "fwd_bwd")
PHASE_LABEL = {"fwd": "forward", "fwd_bwd": "forward + backward"}
BASE = "matmul"  # the impl column of the base layer's row (the frozen matmul alone)
BASE_LABEL = "base"  # its adapter column


@dataclass
class PerfRow:
    scenario: str  # machine · shape · dtype: rows of different scenarios are never compared with each other
    adapter: str
    impl: str  # "peft" | "gradguard" | "fork_dense" | "base" | "" (unsupported)
    median_ms: dict = field(default_factory=dict)  # phase -> ms
    over_base: dict = field(default_factory=dict)  # phase -> t / t_base (paired median where the bench has one)
    speedup_vs_peft: dict = field(default_factory=dict)  # phase -> t_peft / t (gradguard rows)
    roofline: dict = field(default_factory=dict)  # phase -> achieved / attainable, 0..1
    peak_mem_bytes: int | None = None
    validation_ok: bool | None = None
    unsupported: str = ""


def _median(v) -> float | None:
    """A ratio as the benches write it: a bare number or {median, q1, q3}."""
    return finite(v.get("median")) if isinstance(v, dict) else finite(v)


# -- gradguard.bench-cpu/1 and /2 -----------------------------------------------------------------------------------

def cpu_scenario(meta: dict, result: dict) -> str:
    machine = meta.get("cpu") or "CPU"
    threads = meta.get("threads")
    machine += f", {threads} thread{'s' * (threads != 1)}" if isinstance(threads, int) else ""
    shape = (f"{result.get('preset', '?')} (N={result.get('N', '?')}, d={result.get('d_in', '?')}"
             f"{'' if result.get('d_out') == result.get('d_in') else '→' + str(result.get('d_out'))}, "
             f"r={result.get('r', '?')})")
    dtype = result.get("dtype") or meta.get("dtype") or "float32"
    return f"{machine} · {shape} · {dtype}"


def bench_cpu_rows(data: dict) -> list[PerfRow]:
    meta = data.get("meta") or {}
    rows = []
    for result in data["results"]:
        scenario = cpu_scenario(meta, result)
        base = result.get("base") or {}
        base_ms = {p: finite((base.get(p) or {}).get("median_ms")) for p in PHASES}
        rows.append(PerfRow(scenario, BASE_LABEL, BASE, median_ms=base_ms,
                            over_base={p: 1.0 for p in PHASES}, roofline=_roofline(base),
                            peak_mem_bytes=_peak_mem(base)))
        for name, entry in (result.get("adapters") or {}).items():
            rows += _cpu_adapter_rows(scenario, name, entry, base_ms)
    return rows


def _cpu_adapter_rows(scenario: str, name: str, entry: dict, base_ms: dict) -> list[PerfRow]:
    if "unsupported" in entry:
        return [PerfRow(scenario, name, "", unsupported=str(entry["unsupported"]))]
    ratios = entry.get("ratios") or {}
    overhead = entry.get("overhead_over_base") or {}
    validation = entry.get("validation") or {}
    rows = []
    for impl, timing in (entry.get("impls") or {}).items():
        ms = {p: finite((timing.get(p) or {}).get("median_ms")) for p in PHASES}
        over = {}
        for p in PHASES:
            r = _median(ratios.get(f"{impl}_to_base_{p}"))
            if r is None and finite(overhead.get(f"{impl}_{p}")) is not None:
                r = 1 + overhead[f"{impl}_{p}"]
            if r is None and ms[p] is not None and base_ms.get(p):
                r = ms[p] / base_ms[p]
            over[p] = r
        speedup = {p: _median(ratios.get(f"speedup_vs_peft_{p}")) for p in PHASES} if impl == "gradguard" else {}
        valid = validation.get(impl)
        rows.append(PerfRow(scenario, name, impl, median_ms=ms, over_base=over, speedup_vs_peft=speedup,
                            roofline=_roofline(timing), peak_mem_bytes=_peak_mem(timing),
                            validation_ok=valid.get("ok") if isinstance(valid, dict) else None))
    return rows


def _roofline(timing: dict) -> dict:
    frac = timing.get("roofline_fraction")
    if not isinstance(frac, dict):  # bench-cpu/1 has none
        return {}
    return {p: v for p in PHASES if (v := finite(frac.get(p))) is not None}


def _peak_mem(timing: dict) -> int | None:
    v = timing.get("peak_mem_bytes")
    return int(v) if finite(v) is not None else None


# -- bench/bench_gpu.py ---------------------------------------------------------------------------------------------

def gpu_bench_rows(bench: dict) -> list[PerfRow]:
    meta = bench.get("meta") or {}
    shape = bench.get("shape") or {}
    dtype = str(shape.get("dtype", "?")).removeprefix("torch.")
    machine = meta.get("gpu") or f"device {meta.get('device', '?')}"
    scenario = (f"{machine} · N={shape.get('N', '?')}, d={shape.get('d_in', '?')}, r={shape.get('r', '?')} · "
                f"{dtype}")
    rows = []
    for key, s in (bench.get("layers") or {}).items():
        name, _, impl = key.partition("/")
        if key == "base":  # bench_gpu.py names the base layer "base"
            name, impl = BASE_LABEL, BASE
        if "unsupported" in s:
            rows.append(PerfRow(scenario, name, "", unsupported=str(s["unsupported"])))
            continue
        phases = {p: s.get(p) or {} for p in PHASES}
        rows.append(PerfRow(
            scenario, name, impl,
            median_ms={p: finite(v.get("median_ms")) for p, v in phases.items()},
            over_base={p: 1.0 if impl == BASE else _median(v.get("ratio_to_base")) for p, v in phases.items()},
            speedup_vs_peft={p: _median((s.get("speedup_vs_peft") or {}).get(p)) for p in PHASES}
            if "speedup_vs_peft" in s else {},
            roofline={p: finite(v["pct_roofline"]) / 100 for p, v in phases.items()
                      if finite(v.get("pct_roofline")) is not None}))
    return rows


def scenarios(rows: list[PerfRow]) -> list[str]:
    return list(dict.fromkeys(r.scenario for r in rows))
