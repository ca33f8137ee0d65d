"""The GPU check (bench/gpu-check.sh → bench/gpu_report.py: machine, stages, kernel tests, CUDA pytest, benchmark),
or bench/bench_gpu.py's JSON on its own. No reference file exists yet, so everything is read with .get() and fields
this module does not know are listed as they are rather than dropped."""
from __future__ import annotations

import json

from .document import FAIL, MUTED, OK, Card, Cell, Part, Section, Table, finite, fmt_ms, fmt_num, fmt_times, verdict
from .load import Input
from .section_perf import targets_table, targets_verdict

KNOWN_KEYS = {"schema", "machine", "stages", "kernel_tests", "pytest_cuda", "lora_fwd_bwd_over_base", "bench", "ok",
              # bench_gpu.py's own keys, when its JSON is given directly
              "meta", "shape", "method", "reps", "warmup", "roofline", "layers", "targets", "llama"}


def bench_of(data: dict) -> dict:
    """The benchmark part: nested under "bench" in the merged report, the whole file when given directly."""
    bench = data.get("bench")
    return bench if isinstance(bench, dict) else data


def part(inp: Input) -> Part:
    data = inp.data
    bench = bench_of(data)
    meta = bench.get("meta") or {}
    machine = {**meta, **(data.get("machine") or {})}
    out = Part(facts=[(f"GPU {k}", str(machine[k])) for k in ("gpu", "driver", "cuda", "memory", "capability")
                      if machine.get(k)])
    blocks: list = []
    over = finite(data.get("lora_fwd_bwd_over_base"))
    if over is not None:
        blocks.append(f"LoRA forward + backward over the base GEMM on this GPU: {fmt_times(over)}.")
    stages = data.get("stages")
    if isinstance(stages, dict) and stages:
        blocks.append(_stages(stages, out))
    for key, title in (("kernel_tests", "Kernel tests (GoogleTest)"), ("pytest_cuda", "CUDA pytest")):
        if isinstance(data.get(key), dict):
            blocks.append(_test_summary(data[key], title, out))
    if isinstance(bench.get("roofline"), dict):
        r = bench["roofline"]
        blocks.append(f"Roofline measured in the run: {fmt_num(r.get('gemm_tflops'), 4)} TFLOP/s (GEMM), "
                      f"{fmt_num(r.get('copy_gbs'), 4)} GB/s (copy). Layer timings are in Performance.")
    targets = [t for t in bench.get("targets") or [] if isinstance(t, dict)]
    if targets:
        table, met, judged = targets_table(targets, f"GPU targets ({inp.path.name})")
        blocks.append(table)
        targets_verdict("GPU targets met", met, judged, out)
    if isinstance(bench.get("llama"), dict):
        blocks.append(_llama(bench["llama"]))
    extra = {k: v for k, v in data.items() if k not in KNOWN_KEYS}
    if extra:
        t = Table(["field", "value"], [], caption="Other fields", collapsed=True)
        for k, v in extra.items():
            text = v if isinstance(v, str) else json.dumps(v, default=str)
            t.add([k, text if len(text) <= 300 else text[:300] + " …"])
        blocks.append(t)
    ok = data.get("ok")
    status = None if ok is None else (OK if ok else FAIL)
    title = f"GPU check — {machine.get('gpu') or machine.get('device') or 'device'}"
    out.sections.append(Section(title, "gpu", blocks, status))
    return out


def _stages(stages: dict, out: Part) -> Table:
    t = Table(["stage", "exit status", "seconds", "result"], [], caption="Stages of bench/gpu-check.sh")
    bad = 0
    for name, s in stages.items():
        s = s if isinstance(s, dict) else {"rc": s}
        ok = s.get("rc") == 0
        bad += not ok
        t.add([name, s.get("rc"), s.get("seconds"), verdict(ok)], None if ok else FAIL)
    out.cards.append(Card("GPU stages", f"{len(stages) - bad}/{len(stages)} ok", "bench/gpu-check.sh",
                          FAIL if bad else OK))
    if bad:
        out.headline.append((f"{bad} GPU check stage{'s' * (bad != 1)} failed", FAIL))
    return t


def _test_summary(s: dict, title: str, out: Part) -> Table:
    t = Table(["tests", "failures", "errors", "skipped", "failed or skipped"], [], caption=title)
    if "error" in s:
        t.add(["–", "–", "–", "–", Cell(f"not read: {s['error']}", FAIL)], FAIL)
        return t
    failures = int(finite(s.get("failures")) or 0) + int(finite(s.get("errors")) or 0)
    listed = [str(n) for n in s.get("failed") or []] + [
        str(n) for n in s.get("names") or [] if not str(n).endswith((": COMPLETED", ": RUN", ": OK"))]
    t.add([s.get("tests"), Cell(str(s.get("failures", "–")), FAIL if failures else None, numeric=True),
           s.get("errors", ""), s.get("skipped", ""), Cell("; ".join(listed), FAIL if failures else MUTED)],
          FAIL if failures else None)
    t.drop_empty_columns(keep=2)
    if failures:
        out.headline.append((f"{title}: {failures} failed", FAIL))
    return t


def _llama(llama: dict) -> Table:
    t = Table(["adapter", "PEFT ms/step", "gg.fast_path ms/step", "speed-up", "PEFT peak GiB", "fast_path peak GiB",
               "layers swapped"], [], caption="Training step of a Llama-shaped model"
                                              + _shape_text(llama.get("shape")))
    for name, r in (llama.get("adapters") or {}).items():
        peft, gg = r.get("peft") or {}, r.get("gradguard") or {}
        speed = finite(r.get("speedup"))
        t.add([name, fmt_ms(peft.get("median_ms")), fmt_ms(gg.get("median_ms")),
               Cell(fmt_times(speed), FAIL if speed is not None and speed < 1 else None, numeric=True),
               Cell(fmt_num(peft.get("peak_mem_gib")) if finite(peft.get("peak_mem_gib")) is not None else "",
                    numeric=True),
               Cell(fmt_num(gg.get("peak_mem_gib")) if finite(gg.get("peak_mem_gib")) is not None else "",
                    numeric=True),
               r.get("swapped_layers", "")])
    t.drop_empty_columns(keep=2)
    return t


def _shape_text(shape) -> str:
    if not isinstance(shape, dict):
        return f": {shape}" if shape else ""
    return ": " + ", ".join(f"{k} {str(v).removeprefix('torch.')}" for k, v in shape.items())
