"""``gradguard gate CONFIG``: the CI regression gate. It runs the correctness checks and the benchmarks a project
names in a small TOML or JSON file and compares the benchmarks with a committed baseline.

Verdicts: exit 0 when every check passes and no benchmark regressed; 1 on any correctness failure or a significant
regression; 2 for a usage or input error — a bad config, a missing or corrupt baseline, a baseline without an entry
for a configured benchmark (the baseline file is never touched then).

Speed is judged on ratios, not times: each repetition times the base layer and gradguard's op at the same shape,
interleaved, ``inner`` times each, keeps each one's fastest step (preemption by other processes on a shared machine
only ever adds time, so the minimum is the robust estimate of the work itself) and records gradguard's
forward+backward time over the base's (a slower or busier machine moves both). Timing runs on one thread: with
two threads on two shared cores, another process's load stalls the multi-threaded base GEMM more than the adapter's
small products and moves the ratio; on one thread both are slowed alike.
A benchmark regressed when BOTH
  - the one-sided Mann–Whitney U test says the current ratios are larger than the baseline's (p < alpha), and
  - the adapter's own time grew by more than the minimum effect size: its overhead over the base layer (median ratio
    - 1, counted as at least OVERHEAD_FLOOR of the base's time, so that a near-free adapter's noise is not a
    doubling) is more than max_slowdown times the baseline's,
so that noise alone (significant but tiny) or one bad repetition (large but not significant) never fails a build,
while a 2x slower adapter on top of an unchanged base GEMM does.

``--update-baseline`` writes the baseline (temporary file + rename, so an interrupted run leaves the old one whole) and
only when every correctness check passed; a gate never rewrites its baseline unless told.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import statistics
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_json, write_text
from .progress import Progress
from .stats import mann_whitney_greater, smallest_p

BASELINE_SCHEMA = "gradguard.gate-baseline/1"
RESULT_SCHEMA = "gradguard.gate/1"

CONFIG_FORM = """\
A gate config (TOML, or JSON with the same structure); paths are relative to the config file:

    baseline = "cpu.json"                 # the committed baseline (required)

    [correctness]                         # every entry optional
    adapters = ["lora", "dora"]           # registry adapters: finite-difference gradcheck ...
    backends = ["eigen", "torch"]         # ... of these backends
    modes = ["fast", "full"]              # ... in these modes
    peft = true                           # and gradguard vs PEFT's own layer (gg.compare, float64 reference)
    check_files = ["my_model.py"]         # gg.check on setup() -> {"model", "inputs", "kwargs", "loss_fn", ...}
    module_files = ["my_adapter.py"]      # gg.gradcheck_module on setup() -> {"module", "inputs"}

    [speed]
    adapters = ["lora", "dora"]           # gradguard's torch op against the base layer
    shapes = [{N = 256, d = 512, r = 8}]
    dtype = "float32"
    reps = 9                              # >= 9 repetitions
    inner = 5                             # steps per repetition (the fastest counts)
    warmup = 2
    max_slowdown = 1.5                    # minimum effect size: growth of the adapter's own time that counts
    alpha = 0.01                          # Mann-Whitney one-sided significance level"""

OVERHEAD_FLOOR = 0.1   # an adapter's time over the base counts as at least 10% of the base in the effect size
MAX_REPS = 1000
MAX_N, MAX_D = 65536, 16384  # a gate benchmark is a CI-sized layer; beyond this the host runs out of memory


class GateInputError(ValueError):
    """A bad config or baseline: exit code 2, the message names the file and what was expected."""


# ----------------------------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class Shape:
    n: int
    d: int
    r: int

    @property
    def label(self) -> str:
        return f"N{self.n}_d{self.d}_r{self.r}"


@dataclass
class GateConfig:
    path: Path
    baseline: Path
    adapters: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=lambda: ["eigen", "torch"])
    modes: list[str] = field(default_factory=lambda: ["fast"])
    peft: bool = False
    check_files: list[Path] = field(default_factory=list)
    module_files: list[Path] = field(default_factory=list)
    speed_adapters: list[str] = field(default_factory=list)
    shapes: list[Shape] = field(default_factory=list)
    dtype: str = "float32"
    reps: int = 9
    inner: int = 5
    warmup: int = 2
    max_slowdown: float = 1.5
    alpha: float = 0.01

    def benchmark_keys(self) -> list[str]:
        return [bench_key(a, s, self.dtype) for s in self.shapes for a in self.speed_adapters]


def bench_key(adapter: str, shape: Shape, dtype: str) -> str:
    return f"{adapter}/{shape.label}/{dtype}"


def _expect(cond: bool, path: Path, what: str, got) -> None:
    if not cond:
        raise GateInputError(f"{path}: expected {what}, got {got!r}")


def _str_list(table: dict, key: str, path: Path, section: str, choices=None, default=()) -> list[str]:
    if key not in table:
        return list(default)
    v = table[key]
    _expect(isinstance(v, list) and all(isinstance(x, str) for x in v), path, f"[{section}] {key} as a list of strings", v)
    _expect(len(set(v)) == len(v), path, f"[{section}] {key} without repeats", v)
    _expect(bool(v) or not default, path, f"[{section}] {key} with at least one entry (or leave it out)", v)
    if choices is not None:
        bad = [x for x in v if x not in choices]
        _expect(not bad, path, f"[{section}] {key} from {sorted(choices)}", bad)
    return v


def _int(table: dict, key: str, default: int, lo: int, hi: int, path: Path, section: str, why: str = "") -> int:
    v = table.get(key, default)
    _expect(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi, path,
            f"[{section}] {key} an integer in [{lo}, {hi}]{why}", v)
    return v


def _files(table: dict, key: str, here: Path, path: Path) -> list[Path]:
    files = [here / p for p in _str_list(table, key, path, "correctness")]
    missing = [str(f) for f in files if not f.is_file()]
    _expect(not missing, path, f"[correctness] {key} naming existing Python files", missing)
    return files


def load_config(path: str | os.PathLike) -> GateConfig:
    import gradguard as gg

    path = Path(path)
    if not path.is_file():
        raise GateInputError(f"argument 'config': expected a gate config file (TOML or JSON), got '{path}' (not found)")
    is_json = path.suffix.lower() == ".json"
    try:
        text = path.read_text(encoding="utf-8-sig")
        raw = json.loads(text) if is_json else tomllib.loads(text)
    except OSError as e:
        raise GateInputError(f"argument 'config': cannot read '{path}': {e.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise GateInputError(f"{path}: expected a valid {'JSON' if is_json else 'TOML'} gate config, "
                             f"got a parse error: {e}") from None
    _expect(isinstance(raw, dict), path, "a table at the top level", type(raw).__name__)
    unknown = set(raw) - {"baseline", "correctness", "speed"}
    _expect(not unknown, path, "only the keys baseline, [correctness], [speed]", sorted(unknown))
    _expect(isinstance(raw.get("baseline"), str) and raw["baseline"], path, "baseline = \"FILE\"", raw.get("baseline"))
    here = path.parent
    cfg = GateConfig(path=path, baseline=here / raw["baseline"])
    _expect(not cfg.baseline.is_dir(), path, "baseline naming a file, not a folder", raw["baseline"])
    known = set(gg.adapters())

    corr = raw.get("correctness", {})
    _expect(isinstance(corr, dict), path, "[correctness] as a table", corr)
    unknown = set(corr) - {"adapters", "backends", "modes", "peft", "check_files", "module_files"}
    _expect(not unknown, path, "[correctness] keys adapters, backends, modes, peft, check_files, module_files",
            sorted(unknown))
    cfg.adapters = _str_list(corr, "adapters", path, "correctness", known)
    cfg.backends = _str_list(corr, "backends", path, "correctness", {"eigen", "torch", "cuda"}, cfg.backends)
    cfg.modes = _str_list(corr, "modes", path, "correctness", {"fast", "full"}, cfg.modes)
    for name in cfg.adapters:
        declared = {b["backend"] for b in gg.info(name)["backends"]}
        _expect(set(cfg.backends) <= declared, path, f"[correctness] backends that {name} has ({sorted(declared)})",
                cfg.backends)
    _expect(isinstance(corr.get("peft", False), bool), path, "[correctness] peft = true|false", corr.get("peft"))
    cfg.peft = corr.get("peft", False)
    cfg.check_files = _files(corr, "check_files", here, path)
    cfg.module_files = _files(corr, "module_files", here, path)

    speed = raw.get("speed", {})
    _expect(isinstance(speed, dict), path, "[speed] as a table", speed)
    unknown = set(speed) - {"adapters", "shapes", "dtype", "reps", "inner", "warmup", "max_slowdown", "alpha"}
    _expect(not unknown, path, "[speed] keys adapters, shapes, dtype, reps, inner, warmup, max_slowdown, alpha",
            sorted(unknown))
    cfg.speed_adapters = _str_list(speed, "adapters", path, "speed", known)
    shapes = speed.get("shapes", [])
    _expect(isinstance(shapes, list), path, "[speed] shapes as a list of {N, d, r}", shapes)
    for s in shapes:
        ok = isinstance(s, dict) and set(s) == {"N", "d", "r"} and all(
            isinstance(s[k], int) and not isinstance(s[k], bool) and s[k] >= 1 for k in s)
        ok = ok and s["N"] <= MAX_N and s["d"] <= MAX_D
        _expect(ok, path, f"each [speed] shape as {{N = 1..{MAX_N}, d = 1..{MAX_D}, r = int >= 1}}", s)
        _expect(Shape(s["N"], s["d"], s["r"]) not in cfg.shapes, path, "[speed] shapes without repeats", s)
        cfg.shapes.append(Shape(s["N"], s["d"], s["r"]))
    _expect(bool(cfg.shapes) == bool(cfg.speed_adapters), path,
            "[speed] adapters and shapes both given or both absent", {"adapters": cfg.speed_adapters, "shapes": shapes})
    cfg.dtype = speed.get("dtype", cfg.dtype)
    _expect(cfg.dtype in ("float32", "float64"), path, "[speed] dtype float32 or float64 (the CPU torch backend's)",
            cfg.dtype)
    cfg.reps = _int(speed, "reps", cfg.reps, 9, MAX_REPS, path, "speed", " (>= 9: a rank test needs them)")
    cfg.inner = _int(speed, "inner", cfg.inner, 1, MAX_REPS, path, "speed")
    cfg.warmup = _int(speed, "warmup", cfg.warmup, 0, MAX_REPS, path, "speed")
    cfg.max_slowdown = speed.get("max_slowdown", cfg.max_slowdown)
    _expect(isinstance(cfg.max_slowdown, (int, float)) and not isinstance(cfg.max_slowdown, bool)
            and math.isfinite(cfg.max_slowdown) and cfg.max_slowdown > 1.0, path,
            "[speed] max_slowdown a finite number > 1 (the growth of the adapter's time that counts)", cfg.max_slowdown)
    cfg.alpha = speed.get("alpha", cfg.alpha)
    _expect(isinstance(cfg.alpha, (int, float)) and not isinstance(cfg.alpha, bool) and 0 < cfg.alpha < 1, path,
            "[speed] alpha in (0, 1)", cfg.alpha)
    _expect(smallest_p(cfg.reps, cfg.reps) < cfg.alpha, path,
            f"[speed] alpha above {smallest_p(cfg.reps, cfg.reps):.2g}, the smallest p-value {cfg.reps} repetitions "
            "can give (else no regression could ever be found)", cfg.alpha)
    _check_speed_shapes(cfg)
    _expect(bool(cfg.adapters or cfg.check_files or cfg.module_files or cfg.speed_adapters), path,
            "at least one check or benchmark", "an empty gate")
    return cfg


def _check_speed_shapes(cfg: GateConfig) -> None:
    """Every (adapter, shape) of the speed section must be buildable: found now, not after the correctness checks."""
    from . import _C
    from . import bench_peft as bench

    for name in cfg.speed_adapters:
        why = bench.unsupported_reason(name, cfg.dtype)
        _expect(why is None, cfg.path, f"[speed] adapters that run in {cfg.dtype}", f"{name}: {why}")
        for shape in cfg.shapes:
            try:
                _C.resolve_hyper(name, shape.d, shape.d, bench.bench_hp(name, shape.r, shape.d))
            except _C.InputError as e:
                raise GateInputError(f"{cfg.path}: [speed] {name} cannot run at N={shape.n}, d={shape.d}, r={shape.r}: "
                                     f"{e}") from None


# ----------------------------------------------------------------------------------------------------------------
# Baseline


def load_baseline(cfg: GateConfig) -> dict:
    path = cfg.baseline
    if not path.is_file():
        raise GateInputError(f"baseline '{path}' not found: expected a baseline written by `gradguard gate "
                             f"{cfg.path} --update-baseline`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise GateInputError(f"baseline '{path}': cannot read it: {e.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GateInputError(f"baseline '{path}' is corrupt: expected {BASELINE_SCHEMA} JSON, got a parse error: {e}; "
                             "the file was left as it is (restore it, or rewrite it with --update-baseline)") from None
    ok = isinstance(data, dict) and data.get("schema") == BASELINE_SCHEMA and isinstance(data.get("benchmarks"), dict)
    if ok:
        for key, entry in data["benchmarks"].items():
            samples = entry.get("ratio_samples") if isinstance(entry, dict) else None
            ok = ok and isinstance(samples, list) and len(samples) >= 9 and all(map(_positive_finite, samples))
    if not ok:
        raise GateInputError(f"baseline '{path}' is corrupt: expected {BASELINE_SCHEMA} with benchmarks -> "
                             "{ratio_samples: [9 or more positive numbers]}; the file was left as it is")
    recorded = data.get("policy", {})
    for key in ("inner", "threads"):
        ours = {"inner": cfg.inner, "threads": 1}[key]
        if cfg.speed_adapters and recorded.get(key) != ours:
            raise GateInputError(f"baseline '{path}' was measured with {key} = {recorded.get(key)}, the config says "
                                 f"{ours}: the ratios are not comparable (rewrite it with --update-baseline)")
    missing = [k for k in cfg.benchmark_keys() if k not in data["benchmarks"]]
    if missing:
        raise GateInputError(f"baseline '{path}' has no entry for {', '.join(missing)}: expected one per configured "
                             "benchmark (the config changed? rewrite it with --update-baseline)")
    for key in cfg.benchmark_keys():
        m = len(data["benchmarks"][key]["ratio_samples"])
        if smallest_p(cfg.reps, m) >= cfg.alpha:
            raise GateInputError(f"baseline '{path}': {key} has {m} samples; with {cfg.reps} repetitions the smallest "
                                 f"p-value is {smallest_p(cfg.reps, m):.2g}, not below alpha = {cfg.alpha:g}, so no "
                                 "regression could ever be found")
    return data


# ----------------------------------------------------------------------------------------------------------------
# Running


@dataclass
class CheckResult:
    name: str
    kind: str  # correctness | speed
    ok: bool
    detail: str
    seconds: float = 0.0
    data: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "ok": self.ok, "detail": self.detail,
                "seconds": round(self.seconds, 3), **self.data}


def _positive_finite(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v) and v > 0
    except OverflowError:  # an integer too large for a float
        return False


def _timed(fn):
    import time

    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _failing_tensors(res) -> str:
    return "; ".join(f"{t['name']}: " + (f"max abs err {t['max_abs_err']:.3g}, {t['budget_used']:.0%} of budget"
                                         if t["budget_used"] is not None else "non-finite gradient (NaN or Inf)")
                     for t in res.failing())[:1000] or "failed"


def _failing_rows(res) -> str:
    bad = [r for r in res.rows if not r["ok"]]
    return "; ".join(f"{r['backend']} {r['dtype']} {r['tensor']}: max abs {r['max_abs']:.3g}, "
                     f"{'non-finite' if r['budget_used'] is None else format(r['budget_used'], '.0%') + ' of budget'}"
                     for r in bad)[:1000] or "failed"


def _guarded(name: str, fn, detail) -> CheckResult:
    """Runs one check; an exception inside it (a user's module that raises, a setup file with an error) fails that
    check with the error as its detail instead of ending the gate without a report."""
    import time

    t = time.perf_counter()
    try:
        res = fn()
    except Exception as e:  # noqa: BLE001 — reported as the check's failure, never swallowed
        first = (str(e).strip().splitlines() or [""])[0]
        return CheckResult(name, "correctness", False, f"error: {type(e).__name__}: {first}"[:1000],
                           time.perf_counter() - t)
    ok = bool(res.ok)
    return CheckResult(name, "correctness", ok, "ok" if ok else detail(res), time.perf_counter() - t)


def correctness_checks(cfg: GateConfig, progress: Progress) -> list[CheckResult]:
    import gradguard as gg
    from .registry import check_dims, rank_hp
    from .setup_file import load_setup

    out = []
    for name in cfg.adapters:
        d_in, d_out = check_dims(name, 8, 8)
        hp = rank_hp(name, 2, d_in, d_out)
        for backend in cfg.backends:
            for mode in cfg.modes:
                progress.step(f"gradcheck {name} {backend} {mode}")
                out.append(_guarded(f"gradcheck/{name}/{backend}/{mode}", lambda: gg.gradcheck(
                    name, d_in=d_in, d_out=d_out, backend=backend, mode=mode, **hp), _failing_tensors))
        if cfg.peft:
            progress.step(f"compare {name}: eigen, torch, PEFT")
            out.append(_guarded(f"compare/{name}", lambda: gg.compare(name, backends=("eigen", "torch", "peft")),
                                _failing_rows))
    for path in cfg.check_files:
        progress.step(f"check {path.name}")

        def flow(path=path):
            spec = load_setup(path, {"model"}, {"inputs", "kwargs", "loss_fn", "optimizer"}, argument="check_files")
            return gg.check(spec["model"], *spec.get("inputs", ()), loss_fn=spec.get("loss_fn"),
                            optimizer=spec.get("optimizer"), **spec.get("kwargs", {}))
        out.append(_guarded(f"check/{path.name}", flow, lambda rep: "; ".join(
            f"{p.param}: {p.kind} ({p.cause})" for p in rep.problems)[:1000]))
    for path in cfg.module_files:
        for mode in cfg.modes:
            progress.step(f"gradcheck_module {path.name} {mode}")

            def module_check(path=path, mode=mode):
                spec = load_setup(path, {"module", "inputs"}, set(), argument="module_files")
                return gg.gradcheck_module(spec["module"], *spec["inputs"], mode=mode)
            out.append(_guarded(f"gradcheck_module/{path.name}/{mode}", module_check, _failing_tensors))
    return out


def measure_speed(cfg: GateConfig, progress: Progress) -> dict[str, list[float]]:
    """Per configured benchmark, the per-repetition ratios gradguard fwd+bwd time / base fwd+bwd time."""
    import torch

    from . import bench_peft as bench

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see the module docstring
    try:
        return _measure(cfg, progress, bench, bench.slowdown_knob())
    finally:
        torch.set_num_threads(threads)


def _measure(cfg: GateConfig, progress: Progress, bench, slowdowns: dict[str, int]) -> dict[str, list[float]]:
    import gc

    samples: dict[str, list[float]] = {}
    for shape in cfg.shapes:
        preset = bench.Preset(shape.label, shape.n, shape.d, shape.r)
        impls, x, dy = bench.build_impls(preset, cfg.speed_adapters, dtype=cfg.dtype, slowdowns=slowdowns)
        timed = [i for i in impls if i.kind in ("base", "gradguard")]
        for _ in range(cfg.warmup):
            for impl in timed:
                bench.step(impl, x, dy)
        times = {impl.key: [] for impl in timed}
        gc.collect()
        for rep in range(cfg.reps):
            progress.step(f"speed {shape.label}: repetition {rep + 1}/{cfg.reps}")
            best = {impl.key: math.inf for impl in timed}
            for _ in range(cfg.inner):
                for impl in timed:
                    best[impl.key] = min(best[impl.key], bench.step(impl, x, dy)[1])
            for key, t in best.items():
                times[key].append(t)
        for name in cfg.speed_adapters:
            samples[bench_key(name, shape, cfg.dtype)] = [
                g / b for g, b in zip(times[f"{name}/gradguard"], times["base"])]
        del impls, x, dy, timed
        gc.collect()
    return samples


def judge_speed(cfg: GateConfig, current: dict[str, list[float]], baseline: dict) -> list[CheckResult]:
    out = []
    for key, cur in current.items():
        base = baseline["benchmarks"][key]["ratio_samples"]
        cur_med, base_med = statistics.median(cur), statistics.median(base)
        change = (cur_med - 1.0) / max(base_med - 1.0, OVERHEAD_FLOOR)  # growth of the adapter's own time
        p = mann_whitney_greater(cur, base)
        regressed = p < cfg.alpha and change > cfg.max_slowdown
        detail = (f"time over the base layer {100 * (cur_med - 1):+.1f}% vs baseline {100 * (base_med - 1):+.1f}% "
                  f"({change:.2f}x the adapter's time, Mann-Whitney p = {p:.2g}; regression needs p < {cfg.alpha:g} "
                  f"and > {cfg.max_slowdown:g}x)")
        out.append(CheckResult(f"speed/{key}", "speed", not regressed,
                               ("REGRESSION: " if regressed else "") + detail,
                               data={"baseline_median": base_med, "current_median": cur_med, "ratio_change": change,
                                     "p_value": p, "samples": cur}))
    return out


def _meta() -> dict:
    import torch

    import gradguard as gg

    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "gradguard": gg.__version__,
            "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cores": os.cpu_count()}


def config_digest(cfg: GateConfig) -> str:
    return hashlib.sha256(cfg.path.read_bytes()).hexdigest()[:16]


def run_gate(cfg: GateConfig, update_baseline: bool = False, quiet: bool = False) -> tuple[int, dict]:
    """Runs the gate; returns (exit code, result JSON). Raises GateInputError for exit-2 conditions before any work
    (the baseline is read first unless it is being rewritten)."""
    from . import bench_peft as bench

    slowdowns = bench.slowdown_knob()
    if update_baseline and slowdowns:
        raise GateInputError(f"environment {bench.SLOWDOWN_ENV} is set ({slowdowns}): a test-only slowdown must never "
                             "be recorded as the baseline; unset it")
    baseline = None if update_baseline else load_baseline(cfg)
    steps = (len(cfg.adapters) * (len(cfg.backends) * len(cfg.modes) + int(cfg.peft)) + len(cfg.check_files)
             + len(cfg.module_files) * len(cfg.modes) + len(cfg.shapes) * cfg.reps)
    with Progress(steps, "gate", quiet=quiet) as progress:
        checks = correctness_checks(cfg, progress)
        correct = all(c.ok for c in checks)
        current = measure_speed(cfg, progress) if cfg.shapes else {}
    result = {"schema": RESULT_SCHEMA, "config": str(cfg.path), "baseline": str(cfg.baseline), "meta": _meta(),
              "policy": {"max_slowdown": cfg.max_slowdown, "alpha": cfg.alpha, "reps": cfg.reps,
                         "inner": cfg.inner, "threads": 1, "overhead_floor": OVERHEAD_FLOOR,
                         "metric": "per-repetition gradguard/base forward+backward time ratio (fastest of inner steps)",
                         **({"TEST_ONLY_slowdown": slowdowns} if slowdowns else {})}}
    if update_baseline:
        if not correct:
            result.update(ok=False, checks=[c.to_json() for c in checks],
                          baseline_written=False, why="correctness failures: the baseline was not written")
            return 1, result
        write_json(cfg.baseline, {"schema": BASELINE_SCHEMA, "config_sha256": config_digest(cfg), "meta": _meta(),
                                  "policy": {"inner": cfg.inner, "threads": 1, "warmup": cfg.warmup, "reps": cfg.reps},
                                  "benchmarks": {k: {"ratio_samples": v, "median": statistics.median(v)}
                                                 for k, v in current.items()}})
        checks += [CheckResult(f"speed/{k}", "speed", True, f"baseline recorded: median ratio {statistics.median(v):.3f}",
                               data={"current_median": statistics.median(v), "samples": v}) for k, v in current.items()]
        result.update(ok=True, checks=[c.to_json() for c in checks], baseline_written=True)
        return 0, result
    checks += judge_speed(cfg, current, baseline)
    ok = all(c.ok for c in checks)
    result.update(ok=ok, checks=[c.to_json() for c in checks])
    return (0 if ok else 1), result


# ----------------------------------------------------------------------------------------------------------------
# Output


def render(result: dict) -> str:
    lines = [f"gradguard gate {result['config']} (baseline {result['baseline']})"]
    for c in result["checks"]:
        lines.append(f"  {'PASS' if c['ok'] else 'FAIL'}  {c['name']}: {c['detail']}")
    failed = sum(not c["ok"] for c in result["checks"])
    verdict = ("baseline written" if result.get("baseline_written") else
               result.get("why", "ok" if result["ok"] else f"{failed} of {len(result['checks'])} failed"))
    lines.append(f"{len(result['checks'])} checks: {verdict}")
    return "\n".join(lines)


def junit_xml(result: dict) -> str:
    checks = result["checks"]
    suite = ET.Element("testsuite", name="gradguard gate", tests=str(len(checks)),
                       failures=str(sum(not c["ok"] for c in checks)), errors="0", skipped="0",
                       time=f"{sum(c.get('seconds', 0.0) for c in checks):.3f}")
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"gradguard.gate.{c['kind']}", name=c["name"],
                             time=f"{c.get('seconds', 0.0):.3f}")
        if not c["ok"]:
            ET.SubElement(case, "failure", message=c["detail"][:200]).text = c["detail"]
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | os.PathLike, result: dict) -> None:
    write_text(path, junit_xml(result))
