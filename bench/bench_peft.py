#!/usr/bin/env python3
"""CPU benchmark of gradguard's torch backend against PEFT's own layers, in one process (DESIGN.md §5).

For each registered adapter and each preset (N rows, square d_in = d_out = d, rank r for the adapters that have a rank
hyper-parameter, registry rank_param; float32) it times:

  base       the base nn.Linear alone: x requires grad, weight and bias frozen, so its backward computes only dX;
  peft       PEFT's own layer for the adapter (gradguard.bridge.make_peft_layer) around that same base, with every
             factor non-zero (zero-initialised factors are drawn as randn * 0.02) and dropout 0;
  gradguard  gradguard.ops.AdapterLinear.from_peft(peft layer): the same tensors, the LibTorch backend as one
             autograd op whose backward is the analytic formula in C++;
  fork_dense (weight_lora only) the user's PEFT fork's formulation: dW = s*w*(A @ B).T formed densely every step,
             y = base(x) + F.linear(x, dW), with A (d_in, r), B (r, d_out) and the scalar w all requiring grad.

One timed step is: zero the gradients of x and of every adapter parameter (set_to_none, untimed), t0, y = impl(x),
t1, y.backward(dy) with a fixed dy, t2. "fwd" is t1 - t0 (the forward of a training step: grad mode on, the graph
is recorded) and "fwd+bwd" is t2 - t0, so both come from the same run. Before timing, every implementation's output
and gradients are checked against PEFT's (gradguard.from_peft tensors; fork_dense against weight_lora's PEFT layer).

Method: torch.set_num_threads(2); per preset, WARMUP untimed steps then REPS timed repetitions; inside each
repetition the implementations run interleaved (base, lora/peft, lora/gradguard, dora/peft, ..., weight_lora/
fork_dense, ...) so machine noise hits all of them alike. Figures are medians. Ratios are the median over
repetitions of the per-repetition ratio (paired: both members of a ratio ran in the same repetition):
  ratio_to_base  t_impl / t_base            (overhead over base = ratio_to_base - 1)
  speedup_vs_peft    t_peft / t_gradguard   (> 1: gradguard faster)
  speedup_vs_fork    t_fork_dense / t_gradguard (weight_lora)
FLOP/s and GB/s use gradguard._C.cost(name, N, d, d, hp) (nominal counts of the low-rank algorithm; the base alone
is 2*N*d*d each way). The same run also times the fast-mode gradcheck of every adapter on the "eigen" and "torch"
backends at d_in = d_out = 8, r = 2.

Presets (--presets, comma-separated):
  small   N=512,  d=1024, r=16
  large   N=2048, d=4096, r=16   (a 7B-model projection, 2048 tokens per step; 12-27 s per repetition on 2 cores)
  target  N=512,  d=4096, r=8    (the issue's target shape for weight_lora)
  70b     N=256,  d=8192, r=16   (a 70B model's projection, N reduced to fit; not in the default set)
  tiny    N=16,   d=32,   r=4    (not in the default set; for smoke tests)

Dtypes (--dtypes): the base layer, PEFT's layer and gradguard's op run in that dtype; a dtype an adapter's torch
backend does not declare (registry `backends`) is reported as unsupported with the reason, never dropped.

Peak memory: one extra, untimed training step per implementation under the torch profiler (profile_memory): the
peak of bytes allocated and not yet freed during the step, over what was live before it (outputs, saved
activations, gradients, temporaries of every kernel).

Roofline: the same run measures the machine's attainable peak (a large GEMM in the dtype, best of 5) and memory
bandwidth (a large tensor copy, best of 5); an implementation's roofline fraction is its achieved FLOP/s over
min(peak FLOP/s, arithmetic intensity x bandwidth), with the nominal flops/bytes of the registry's cost functions.

Usage:
  python bench/bench_peft.py [--presets small,large,target] [--dtypes float32] [--reps 9] [--warmup 2]
                             [--adapters lora,dora] [--json reports/latest/bench-cpu.json] [--quiet]
  gradguard bench ...        (the same, from the installed package)
Exit status: 0 after a run (target verdicts are reported, not enforced), 2 for a usage error.
"""
from __future__ import annotations

import argparse
import copy
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

# kineto (under the torch profiler used for peak memory) prints an error when it probes for a GPU that is not there
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

import torch
import torch.nn.functional as F
from torch import nn

import gradguard as gg
from gradguard import _C
from gradguard.bridge import from_peft, make_peft_layer
from gradguard.atomic import write_json
from gradguard.ops import AdapterLinear
from gradguard.peft_defects import known_peft_defect
from gradguard.progress import Progress
from gradguard.registry import info, rank_hp

THREADS = 2
GRADCHECK_SHAPE = {"d_in": 8, "d_out": 8, "r": 2}
GRADCHECK_BACKENDS = ("eigen", "torch")
# max |impl - peft| / max |peft| per tensor: a check that both run the same computation (the numerics policy is
# gradguard compare's), with room for float32 summation order at d = 8192; at float64 PEFT's C3A and FourierFT still
# compute in float32 (gg.compare: relative error ~1e-5 against the float64 reference), hence 1e-4 there
VALIDATE_RTOL = {"float32": 1e-3, "float64": 1e-4}
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Test-only knob: "lora=2,dora=3" makes gradguard's implementation of those adapters run each timed step that many
# times, a true k-fold slowdown, so that tests can show the regression gate catching one (tests/python/test_gate.py).
SLOWDOWN_ENV = "GG_BENCH_TEST_SLOWDOWN"


def slowdown_knob() -> dict[str, int]:
    spec = os.environ.get(SLOWDOWN_ENV, "").strip()
    out = {}
    for item in filter(None, (t.strip() for t in spec.split(","))):
        name, sep, factor = item.partition("=")
        if not sep or not factor.strip().isdigit() or int(factor) < 1:
            raise ValueError(f"environment {SLOWDOWN_ENV}: expected ADAPTER=INTEGER>=1[,...], got '{item}'")
        if name.strip() not in gg.adapters():
            raise ValueError(f"environment {SLOWDOWN_ENV}: expected adapter names from {gg.adapters()}, "
                             f"got '{name.strip()}'")
        out[name.strip()] = int(factor)
    return out


@dataclass(frozen=True)
class Preset:
    name: str
    n: int
    d: int
    r: int
    max_reps: int | None = None  # cap on --reps for this preset (runtime budget), None = no cap
    note: str = ""


PRESETS: dict[str, Preset] = {
    "small": Preset("small", 512, 1024, 16),
    # max_reps exists to cap the largest preset if the default run outgrows ~10 minutes on 2 cores; measured
    # on 2 cores the default run (9 repetitions everywhere) takes ~4 min idle and ~7.5 min with other jobs loading
    # the machine (load average 5-6), so no cap.
    "large": Preset("large", 2048, 4096, 16),
    "target": Preset("target", 512, 4096, 8),
    # a 70B model's projection (d = 8192) with N reduced so that 23 adapters' layers fit in memory and a repetition
    # stays near a minute on 2 cores
    "70b": Preset("70b", 256, 8192, 16),
    "tiny": Preset("tiny", 16, 32, 4),
}
DEFAULT_PRESETS = ("small", "large", "target")

TARGETS_DOC = {
    "torch_no_slower_than_peft": "the torch backend of each adapter is no slower than PEFT's layer "
                                 "(speed-up t_peft/t_gradguard >= 1, fwd and fwd+bwd, every preset run)",
    "weight_lora_2x_vs_fork": "weight_lora gradguard fwd+bwd >= 2x faster than fork_dense at N=512, d=4096, r=8",
    "weight_lora_overhead_5pct": "weight_lora gradguard fwd+bwd overhead over the base <= 5% at N=512, d=4096, r=8",
    "gradcheck_under_10s": "fast-mode gradcheck of every adapter x {eigen, torch} at d=8, r=2 under 10 s in total",
    "structured_2x_vs_peft": "LoHa/LoKr structured torch path fwd+bwd >= 2x faster than PEFT's dense-ΔW layer at "
                             "N=512, d=4096, r=8",
    "structured_overhead_10pct": "LoHa/LoKr structured torch path fwd+bwd overhead over the base <= 10% at N=512, "
                                 "d=4096, r=8",
}
STRUCTURED = ("loha", "lokr")  # adapters whose PEFT layer forms a dense ΔW and whose torch backend never does


# --------------------------------------------------------------------------------------------------------------
# Implementations


class ForkDense(nn.Module):
    """The user's PEFT fork: dW = s * w * (A @ B).T formed densely each step, y = base(x) + x dW^T."""

    def __init__(self, base: nn.Linear, A: torch.Tensor, B: torch.Tensor, w: torch.Tensor, scaling: float):
        super().__init__()
        self.base = base
        self.A = nn.Parameter(A.detach().clone())  # (d_in, r)
        self.B = nn.Parameter(B.detach().clone())  # (r, d_out)
        self.w = nn.Parameter(w.detach().clone().reshape(()))
        self.scaling = scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = (self.scaling * self.w) * (self.A @ self.B).T  # (d_out, d_in), dense
        return self.base(x) + F.linear(x, delta)


@dataclass
class Impl:
    key: str                    # "base", "lora/peft", ...
    adapter: str | None         # None for the base
    kind: str                   # base | peft | gradguard | fork_dense
    module: nn.Module
    grads: Callable[[], dict[str, torch.Tensor | None]]  # registry tensor name -> grad, after a backward
    hp: dict | None = None      # resolved hyper-parameters (None for the base)
    repeat: int = 1             # times each timed step runs (> 1 only under the test-only slowdown knob)


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def _peft_params(layer: nn.Module, name: str) -> dict[str, nn.Parameter]:
    """Registry name -> the PEFT layer's own trainable parameter."""
    params = dict(layer.named_parameters())
    out = {}
    for spec in gg.info(name)["tensors"]:
        if spec["role"] != "trainable":
            continue
        p = params.get(spec["peft_key"].replace("{adapter}", "default"))
        if p is not None:
            out[spec["name"]] = p
    return out


def bench_hp(name: str, r: int, d: int) -> dict:
    """The hyper-parameters a benchmark runs ``name`` with at rank ``r`` on a d x d layer: PEFT's own defaults wherever
    they fit the shape (OFT's 32-wide blocks, VB-LoRA's 256 x 256 bank), the check values of ``rank_hp`` (chosen to
    keep small check shapes valid) only where a default does not fit."""
    hp = rank_hp(name, r, d, d)
    entry = info(name)
    defaults = {h["name"]: h["default"] for h in entry["hyper"]}
    for key in [k for k in hp if k != entry["rank_param"]]:
        trial = {**hp, key: defaults[key]}
        try:
            _C.resolve_hyper(name, d, d, trial)
        except _C.InputError:
            continue
        hp = trial
    typed = _C.resolve_hyper(name, d, d, hp)  # the registry's types (integers as int), not the JSON defaults' floats
    return {k: typed[k] for k in hp}


def unsupported_reason(name: str, dtype: str) -> str | None:
    """Why gradguard's torch backend of ``name`` cannot run in ``dtype`` (None when it can)."""
    torch_entry = next((b for b in info(name)["backends"] if b["backend"] == "torch"), None)
    if torch_entry is None:
        return "no torch backend"
    if dtype not in torch_entry["dtypes"]:
        return f"the torch backend runs {', '.join(torch_entry['dtypes'])}, not {dtype}"
    return None


def build_impls(preset: Preset, adapters: list[str], seed: int = 0, dtype: str = "float32",
                slowdowns: dict[str, int] | None = None) -> tuple[list[Impl], torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    tdtype = DTYPES[dtype]
    base = nn.Linear(preset.d, preset.d, bias=True, dtype=tdtype)
    base.weight.requires_grad_(False)
    base.bias.requires_grad_(False)
    x = torch.randn(preset.n, preset.d, dtype=tdtype, requires_grad=True)
    dy = torch.randn(preset.n, preset.d, dtype=tdtype)
    impls = [Impl("base", None, "base", base, lambda: {})]
    slowdowns = slowdowns or {}
    for name in adapters:
        # each adapter wraps its own copy of the base: an adapter's init may rewrite it (KaSA truncates W's SVD)
        layer = make_peft_layer(name, copy.deepcopy(base), bench_hp(name, preset.r, preset.d))
        layer.base_layer.weight.requires_grad_(False)
        layer.base_layer.bias.requires_grad_(False)
        pp = _peft_params(layer, name)
        with torch.no_grad():  # no zero shortcut anywhere: draw every all-zero factor
            for p in pp.values():
                if not bool(p.ne(0).any()):
                    p.copy_(torch.randn_like(p) * 0.02)
        hp = _C.resolve_hyper(name, preset.d, preset.d, bench_hp(name, preset.r, preset.d))
        impls.append(Impl(f"{name}/peft", name, "peft", layer,
                          lambda pp=pp: {k: p.grad for k, p in pp.items()}, hp))
        ggl = AdapterLinear.from_peft(layer)
        impls.append(Impl(f"{name}/gradguard", name, "gradguard", ggl,
                          lambda m=ggl: {k: p.grad for k, p in m.params.items()}, hp, slowdowns.get(name, 1)))
        if name == "weight_lora":
            _, hp, tensors = from_peft(layer)
            fork = ForkDense(layer.base_layer, tensors["weight_lora_A"], tensors["weight_lora_B"], tensors["weight_lora_w"],
                             float(layer.scaling["default"]))
            impls.append(Impl(f"{name}/fork_dense", name, "fork_dense", fork,
                              lambda m=fork: {"weight_lora_A": m.A.grad, "weight_lora_B": m.B.grad,
                                              "weight_lora_w": m.w.grad}))
    return impls, x, dy


def step(impl: Impl, x: torch.Tensor, dy: torch.Tensor, keep: bool = False):
    """One timed training step; returns (t_fwd, t_fwd_bwd) in seconds (and y when keep)."""
    for p in _trainable(impl.module):
        p.grad = None
    x.grad = None
    repeat = 1 if keep else impl.repeat  # validation sees one step's gradients, not k accumulated
    t0 = time.perf_counter()
    ys = [impl.module(x) for _ in range(repeat)]
    t1 = time.perf_counter()
    for y in ys:
        y.backward(dy)
    t2 = time.perf_counter()
    y = ys[0]
    if keep:
        return t1 - t0, t2 - t0, y.detach()
    return t1 - t0, t2 - t0


def _rel_err(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None or b is None:
        return math.inf
    a = a.detach().reshape(-1).double()
    b = b.detach().reshape(-1).double()
    if a.numel() != b.numel():
        return math.inf
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def validate(impls: list[Impl], x: torch.Tensor, dy: torch.Tensor) -> dict[str, dict]:
    """Output and gradients of each gradguard / fork_dense implementation against PEFT's layer (one step each)."""
    ref: dict[str, dict] = {}
    out: dict[str, dict] = {}
    for impl in impls:
        if impl.kind == "base":
            continue
        _, _, y = step(impl, x, dy, keep=True)
        tensors = {"y": y, "x": x.grad.detach().clone()}
        tensors.update({k: (g.detach().clone() if g is not None else None) for k, g in impl.grads().items()})
        if impl.kind == "peft":
            ref[impl.adapter] = tensors
            continue
        errs = {k: _rel_err(v, ref[impl.adapter].get(k)) for k, v in tensors.items()}
        # PEFT's value is the wrong one where the registry records a confirmed PEFT defect (C3A's input gradient at
        # block_size >= 3): reported, not held against the implementation
        known = {k: why for k in errs if impl.hp is not None and (why := known_peft_defect(
            impl.adapter, "dx" if k == "x" else ("y" if k == "y" else f"d {k}"), impl.hp))}
        rtol = VALIDATE_RTOL[str(x.dtype).removeprefix("torch.")]
        ok = all(e <= rtol for k, e in errs.items() if k not in known)
        errs = {k: (e if math.isfinite(e) else None) for k, e in errs.items()}  # None: missing or mis-shaped
        worst = max((e for e in errs.values() if e is not None), default=0.0)
        out[impl.key] = {"max_rel_err": worst if all(e is not None for e in errs.values()) else None,
                         "per_tensor": errs, "ok": ok, "rtol": rtol,
                         **({"known_peft_defects": known} if known else {})}
    return out


# --------------------------------------------------------------------------------------------------------------
# Measurement


def _median(v: list[float]) -> float:
    return statistics.median(v)


def _quartiles(v: list[float]) -> tuple[float, float]:
    if len(v) < 2:
        return v[0], v[0]
    q = statistics.quantiles(v, n=4, method="inclusive")
    return q[0], q[2]


def _paired(num: list[float], den: list[float]) -> dict:
    ratios = [a / b for a, b in zip(num, den)]
    lo, hi = _quartiles(ratios)
    return {"median": _median(ratios), "q1": lo, "q3": hi}


def peak_step_bytes(impl: Impl, x: torch.Tensor, dy: torch.Tensor) -> int | None:
    """Peak bytes allocated and not yet freed during one (untimed) training step, over what was live before it: every
    CPU allocation and free in the step, in order, from the torch profiler. None where the profiler gives no memory
    events (then nothing is claimed)."""
    from torch.profiler import ProfilerActivity, profile

    for p in _trainable(impl.module):
        p.grad = None
    x.grad = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Profiler clears events at the end of each cycle": one cycle here
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            impl.module(x).backward(dy)
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    if not events:
        return None
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return int(peak)


def measure_roofline(dtype: str, reps: int = 5) -> dict:
    """The machine's attainable peak in this process: a large GEMM in ``dtype`` (FLOP/s) and a large tensor copy
    (bytes/s, read + write), best of ``reps`` each."""
    tdtype = DTYPES[dtype]
    m = 2048
    a, b = torch.randn(m, m, dtype=tdtype), torch.randn(m, m, dtype=tdtype)
    src = torch.randn(64 * 1024 * 1024 // _itemsize(tdtype), dtype=tdtype)  # 64 MiB: far beyond the caches
    dst = torch.empty_like(src)
    best_mm = best_copy = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best_mm = min(best_mm, time.perf_counter() - t)
        t = time.perf_counter()
        dst.copy_(src)
        best_copy = min(best_copy, time.perf_counter() - t)
    return {"dtype": dtype, "peak_gflops": 2.0 * m ** 3 / best_mm / 1e9,
            "peak_gbytes_per_s": 2.0 * src.numel() * src.element_size() / best_copy / 1e9,
            "method": f"best of {reps}: torch.mm {m}x{m}x{m} in {dtype}; copy of a 64 MiB tensor (read + write)"}


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def bench_preset(preset: Preset, adapters: list[str], reps: int, warmup: int, dtype: str = "float32",
                 progress: Progress | None = None, note: str = "", slowdowns: dict[str, int] | None = None,
                 roofline: dict | None = None, memory: bool = True) -> dict:
    """One preset in one dtype: every adapter's PEFT layer and gradguard op next to the base, interleaved."""
    supported = [a for a in adapters if unsupported_reason(a, dtype) is None]
    impls, x, dy = build_impls(preset, supported, dtype=dtype, slowdowns=slowdowns)
    validation = validate(impls, x, dy)
    peak = {impl.key: peak_step_bytes(impl, x, dy) for impl in impls} if memory else {}
    for _ in range(warmup):
        for impl in impls:
            step(impl, x, dy)
    samples = {impl.key: {"fwd": [], "fwd_bwd": []} for impl in impls}
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for rep in range(reps):
            if progress:
                progress.step(f"{preset.name} {dtype}: repetition {rep + 1}/{reps} ({len(impls)} implementations)")
            for impl in impls:
                f, fb = step(impl, x, dy)
                samples[impl.key]["fwd"].append(f)
                samples[impl.key]["fwd_bwd"].append(fb)
    finally:
        if gc_was:
            gc.enable()

    n, d, r = preset.n, preset.d, preset.r
    # the registry's nominal costs count float32 bytes; other dtypes scale them by element size
    byte_scale = _itemsize(DTYPES[dtype]) / 4.0
    base_cost = {"forward_flops": 2.0 * n * d * d, "backward_flops": 2.0 * n * d * d,
                 "forward_bytes": 4.0 * (n * d + d * d + d + n * d),
                 "backward_bytes": 4.0 * (n * d + d * d + n * d)}
    result = {"preset": preset.name, "N": n, "d_in": d, "d_out": d, "r": r, "dtype": dtype, "reps": reps,
              "warmup": warmup, "note": note,
              "base": _impl_stats(samples["base"], base_cost, byte_scale, roofline, peak.get("base")),
              "adapters": {}}
    base_s = samples["base"]
    for name in adapters:
        why = unsupported_reason(name, dtype)
        if why is not None:
            result["adapters"][name] = {"unsupported": why}
            continue
        hp = _C.resolve_hyper(name, d, d, bench_hp(name, r, d))
        cost = dict(_C.cost(name, n, d, d, hp))
        entry = {"hp": hp, "cost": cost, "impls": {}, "ratios": {}, "overhead_over_base": {}, "validation": {}}
        for impl in impls:
            if impl.adapter != name:
                continue
            s = samples[impl.key]
            entry["impls"][impl.kind] = _impl_stats(s, cost, byte_scale, roofline, peak.get(impl.key))
            for phase in ("fwd", "fwd_bwd"):
                rb = _paired(s[phase], base_s[phase])
                entry["ratios"][f"{impl.kind}_to_base_{phase}"] = rb
                entry["overhead_over_base"][f"{impl.kind}_{phase}"] = rb["median"] - 1.0
            if impl.key in validation:
                entry["validation"][impl.kind] = validation[impl.key]
        g = samples[f"{name}/gradguard"]
        for phase in ("fwd", "fwd_bwd"):
            entry["ratios"][f"speedup_vs_peft_{phase}"] = _paired(samples[f"{name}/peft"][phase], g[phase])
            if f"{name}/fork_dense" in samples:
                entry["ratios"][f"speedup_vs_fork_{phase}"] = _paired(samples[f"{name}/fork_dense"][phase], g[phase])
        result["adapters"][name] = entry
    del impls, x, dy
    gc.collect()
    return result


def _impl_stats(s: dict, cost: dict, byte_scale: float = 1.0, roofline: dict | None = None,
                peak_bytes: int | None = None) -> dict:
    out = {}
    fl = {"fwd": cost["forward_flops"], "fwd_bwd": cost["forward_flops"] + cost["backward_flops"]}
    by = {"fwd": cost["forward_bytes"] * byte_scale,
          "fwd_bwd": (cost["forward_bytes"] + cost["backward_bytes"]) * byte_scale}
    for phase in ("fwd", "fwd_bwd"):
        med = _median(s[phase])
        lo, hi = _quartiles(s[phase])
        out[phase] = {"median_ms": med * 1e3, "q1_ms": lo * 1e3, "q3_ms": hi * 1e3, "min_ms": min(s[phase]) * 1e3,
                      "gflops": fl[phase] / med / 1e9, "gbytes_per_s": by[phase] / med / 1e9,
                      "samples_ms": [v * 1e3 for v in s[phase]]}
    if roofline:
        out["roofline_fraction"] = {}
        for phase in ("fwd", "fwd_bwd"):
            attainable = min(roofline["peak_gflops"], fl[phase] / by[phase] * roofline["peak_gbytes_per_s"])
            out["roofline_fraction"][phase] = out[phase]["gflops"] / attainable
    out["peak_mem_bytes"] = peak_bytes
    return out


def bench_gradcheck(adapters: list[str]) -> dict:
    cases = []
    t0 = time.perf_counter()
    for name in adapters:
        for backend in GRADCHECK_BACKENDS:
            t = time.perf_counter()
            res = gg.gradcheck(name, backend=backend, mode="fast", d_in=GRADCHECK_SHAPE["d_in"],
                               d_out=GRADCHECK_SHAPE["d_out"], **rank_hp(name, GRADCHECK_SHAPE["r"], GRADCHECK_SHAPE["d_in"],
                                                  GRADCHECK_SHAPE["d_out"]))
            cases.append({"adapter": name, "backend": backend, "ok": bool(res.ok),
                          "seconds": time.perf_counter() - t})
    total = time.perf_counter() - t0
    return {"shape": GRADCHECK_SHAPE, "mode": "fast", "backends": list(GRADCHECK_BACKENDS), "total_s": total,
            "all_ok": all(c["ok"] for c in cases), "cases": cases}


# --------------------------------------------------------------------------------------------------------------
# Targets


def evaluate_targets(results: list[dict], gradcheck: dict, adapters: list[str]) -> list[dict]:
    targets = []
    # 1. the torch backend no slower than PEFT, every adapter, every preset, fwd and fwd+bwd
    for name in adapters:
        checks = []
        for res in results:
            entry = res["adapters"].get(name) if "skipped" not in res else None
            if entry is None or "unsupported" in entry:
                continue
            for phase in ("fwd", "fwd_bwd"):
                r = entry["ratios"][f"speedup_vs_peft_{phase}"]
                checks.append({"preset": res["preset"], "dtype": res.get("dtype", "float32"), "phase": phase,
                               "speedup": r["median"],
                               "q1": r["q1"], "q3": r["q3"], "met": r["median"] >= 1.0,
                               "within_noise": r["median"] < 1.0 <= r["q3"]})
        worst = min(checks, key=lambda c: c["speedup"]) if checks else None
        targets.append({
            "id": "torch_no_slower_than_peft", "adapter": name, "description": TARGETS_DOC["torch_no_slower_than_peft"],
            "threshold": ">= 1.0", "value": worst["speedup"] if worst else None,
            "where": f"worst at {worst['preset']} {worst['phase']}" if worst else "not measured",
            "met": all(c["met"] for c in checks) if checks else None, "checks": checks})
    # 2-3. weight_lora at the target shape
    tgt = next((r for r in results if (r["N"], r["d_in"], r["r"], r.get("dtype")) == (512, 4096, 8, "float32")
                and "skipped" not in r), None)
    wl = tgt["adapters"].get("weight_lora") if tgt else None
    if wl is not None:
        sp = wl["ratios"]["speedup_vs_fork_fwd_bwd"]["median"]
        ov = wl["overhead_over_base"]["gradguard_fwd_bwd"]
        targets.append({"id": "weight_lora_2x_vs_fork", "adapter": "weight_lora", "threshold": ">= 2.0",
                        "description": TARGETS_DOC["weight_lora_2x_vs_fork"], "value": sp, "met": sp >= 2.0,
                        "where": f"{tgt['preset']} fwd_bwd"})
        targets.append({"id": "weight_lora_overhead_5pct", "adapter": "weight_lora", "threshold": "<= +5%",
                        "description": TARGETS_DOC["weight_lora_overhead_5pct"], "value": ov, "met": ov <= 0.05,
                        "where": f"{tgt['preset']} fwd_bwd"})
    else:
        for tid in ("weight_lora_2x_vs_fork", "weight_lora_overhead_5pct"):
            targets.append({"id": tid, "adapter": "weight_lora", "description": TARGETS_DOC[tid], "value": None,
                            "met": None, "where": "not measured (needs weight_lora and the 'target' preset)"})
    # 4-5. the structured (never dense ΔW) paths of LoHa and LoKr at the target shape
    for name in STRUCTURED:
        entry = tgt["adapters"].get(name) if tgt else None
        if entry is None:
            for tid in ("structured_2x_vs_peft", "structured_overhead_10pct"):
                targets.append({"id": tid, "adapter": name, "description": TARGETS_DOC[tid], "value": None,
                                "met": None, "where": f"not measured (needs {name} and the 'target' preset)"})
            continue
        sp = entry["ratios"]["speedup_vs_peft_fwd_bwd"]["median"]
        ov = entry["overhead_over_base"]["gradguard_fwd_bwd"]
        targets.append({"id": "structured_2x_vs_peft", "adapter": name, "threshold": ">= 2.0",
                        "description": TARGETS_DOC["structured_2x_vs_peft"], "value": sp, "met": sp >= 2.0,
                        "where": f"{tgt['preset']} fwd_bwd"})
        targets.append({"id": "structured_overhead_10pct", "adapter": name, "threshold": "<= +10%",
                        "description": TARGETS_DOC["structured_overhead_10pct"], "value": ov, "met": ov <= 0.10,
                        "where": f"{tgt['preset']} fwd_bwd"})
    full = set(adapters) == set(gg.adapters())
    targets.append({"id": "gradcheck_under_10s", "adapter": None, "description": TARGETS_DOC["gradcheck_under_10s"],
                    "threshold": "< 10 s", "value": gradcheck["total_s"], "met": gradcheck["total_s"] < 10.0,
                    "where": "all adapters" if full else f"only {','.join(adapters)} (restricted run)"})
    return targets


# --------------------------------------------------------------------------------------------------------------
# Output


def _fmt_pct(v: float) -> str:
    return f"{100 * v:+.1f}%"


def render(report: dict) -> str:
    lines = []
    m = report["meta"]
    lines.append(f"gradguard CPU benchmark: torch {m['torch']}, peft {m['peft']}, gradguard {m['gradguard']}, "
                 f"{m['threads']} threads, {m['cpu']}")
    lines.append(f"load average (1/5/15 min) at start {'/'.join(f'{v:.2f}' for v in m['loadavg_start'])}, at end "
                 f"{'/'.join(f'{v:.2f}' for v in m['loadavg_end'])}: other processes on these {m['cores']} cores "
                 "add noise (interleaving spreads it over all implementations)")
    lines.append("ms = median of a training step's forward (fwd) and forward+backward (f+b); ovh = t/t_base - 1; "
                 "peft/gg = speed-up of gradguard over PEFT; ratios are medians of per-repetition paired ratios; "
                 "valid = max rel. error of y and all grads vs PEFT's layer; roof = achieved / attainable FLOP/s "
                 "(roofline measured in this run); peak = peak memory of one training step")
    for dt, roof in m.get("roofline", {}).items():
        lines.append(f"roofline {dt}: {roof['peak_gflops']:.1f} GFLOP/s, {roof['peak_gbytes_per_s']:.1f} GB/s "
                     f"({roof['method']})")
    for res in report["results"]:
        lines.append("")
        if "skipped" in res:
            lines.append(f"[{res['preset']} {res['dtype']}] not timed: {res['skipped']} "
                         f"({next(iter(res['adapters'].values()))['unsupported']})")
            continue
        lines.append(f"[{res['preset']} {res['dtype']}] N={res['N']} d={res['d_in']} r={res['r']}  reps={res['reps']} "
                     f"warmup={res['warmup']}" + (f"  NOTE: {res['note']}" if res["note"] else ""))
        b = res["base"]
        lines.append(f"  base: fwd {b['fwd']['median_ms']:.2f} ms ({b['fwd']['gflops']:.1f} GFLOP/s), "
                     f"f+b {b['fwd_bwd']['median_ms']:.2f} ms ({b['fwd_bwd']['gflops']:.1f} GFLOP/s)")
        head = (f"  {'adapter':<12}{'impl':<11}{'fwd ms':>10}{'f+b ms':>10}{'GFLOP/s':>9}"
                f"{'ovh fwd':>9}{'ovh f+b':>9}{'peft/gg fwd':>12}{'peft/gg f+b':>12}{'roof':>6}{'peak MiB':>10}  valid")
        lines.append(head)
        for name, e in res["adapters"].items():
            if "unsupported" in e:
                lines.append(f"  {name:<12}unsupported: {e['unsupported']}")
                continue
            for kind, st in e["impls"].items():
                ovf = _fmt_pct(e["overhead_over_base"][f"{kind}_fwd"])
                ovb = _fmt_pct(e["overhead_over_base"][f"{kind}_fwd_bwd"])
                if kind == "gradguard":
                    sf = f"{e['ratios']['speedup_vs_peft_fwd']['median']:.2f}x"
                    sb = f"{e['ratios']['speedup_vs_peft_fwd_bwd']['median']:.2f}x"
                else:
                    sf = sb = ""
                v = e["validation"].get(kind)
                vs = "" if v is None else (f"ok {v['max_rel_err']:.0e}" if v["ok"] else f"BAD {v['per_tensor']}")
                roof = st.get("roofline_fraction")
                rs = f"{100 * roof['fwd_bwd']:.0f}%" if roof else ""
                mem = st.get("peak_mem_bytes")
                ms = "" if mem is None else (f"{mem / 2 ** 20:.1f}" if mem >= 2 ** 20 else f"{mem / 2 ** 20:.4f}")
                lines.append(f"  {name:<12}{kind:<11}{st['fwd']['median_ms']:>10.2f}{st['fwd_bwd']['median_ms']:>10.2f}"
                             f"{st['fwd_bwd']['gflops']:>9.1f}{ovf:>9}{ovb:>9}{sf:>12}{sb:>12}{rs:>6}{ms:>10}  {vs}")
            if "speedup_vs_fork_fwd_bwd" in e["ratios"]:
                lines.append(f"  {'':<12}{'gg vs fork':<11} speed-up fwd "
                             f"{e['ratios']['speedup_vs_fork_fwd']['median']:.2f}x, f+b "
                             f"{e['ratios']['speedup_vs_fork_fwd_bwd']['median']:.2f}x")
    gcheck = report["gradcheck"]
    lines.append("")
    lines.append(f"gradcheck (fast, d=8, r=2, {len(gcheck['cases'])} adapter x backend cases): {gcheck['total_s']:.3f} s total, "
                 f"{'all ok' if gcheck['all_ok'] else 'FAILURES: ' + ', '.join(c['adapter'] + '/' + c['backend'] for c in gcheck['cases'] if not c['ok'])}")
    lines.append("")
    lines.append("targets:")
    for t in report["targets"]:
        verdict = "n/a" if t["met"] is None else ("MET" if t["met"] else "MISSED")
        val = "" if t["value"] is None else (f"{t['value']:.3f}" if t["id"] != "weight_lora_overhead_5pct"
                                             else _fmt_pct(t["value"]))
        who = f" [{t['adapter']}]" if t["adapter"] else ""
        extra = ""
        if t["id"] == "torch_no_slower_than_peft" and t["met"] is False:
            missed = [f"{c['preset']} {c['phase']} {c['speedup']:.3f}" + (" (within noise)" if c["within_noise"] else "")
                      for c in t["checks"] if not c["met"]]
            extra = "  missed at: " + "; ".join(missed)
        if t["met"] is None:
            lines.append(f"  {verdict:<7}{t['id']}{who}: {t['where']}")
        else:
            lines.append(f"  {verdict:<7}{t['id']}{who}: {val} (need {t['threshold']}; {t['where']}){extra}")
    lines.append("")
    lines.append(f"total runtime {report['total_runtime_s']:.1f} s")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def meta() -> dict:
    import peft

    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
            "peft": peft.__version__, "gradguard": getattr(gg, "__version__", "?"), "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cpu": _cpu_model(), "loadavg_end": list(os.getloadavg()), "cores": os.cpu_count(),
            "method": "warm-up then interleaved repetitions; fwd = forward of a training step (grad on), fwd_bwd = "
                      "forward + y.backward(dy); medians; ratios = medians of per-repetition paired ratios"}


def run(presets: list[Preset], adapters: list[str], reps: int, warmup: int, dtypes: tuple[str, ...] = ("float32",),
        quiet: bool = False) -> dict:
    """The whole benchmark; returns the report dict (what --json writes)."""
    torch.set_num_threads(THREADS)
    load_start = list(os.getloadavg())
    t0 = time.perf_counter()
    slowdowns = slowdown_knob()
    gradcheck = bench_gradcheck(adapters)
    # a dtype no requested adapter runs in is listed, not timed (bfloat16 GEMMs on a CPU without native support run
    # at a fraction of a GFLOP/s: timing only the base layer there would take hours and say nothing)
    timed = tuple(dt for dt in dtypes if any(unsupported_reason(a, dt) is None for a in adapters))
    rooflines = {dt: measure_roofline(dt) for dt in timed}
    results = [{"preset": p.name, "N": p.n, "d_in": p.d, "d_out": p.d, "r": p.r, "dtype": dt, "skipped":
                "no requested adapter's torch backend runs this dtype",
                "adapters": {a: {"unsupported": unsupported_reason(a, dt)} for a in adapters}}
               for p in presets for dt in dtypes if dt not in timed]
    runs = [(p, dt) for p in presets for dt in timed]
    steps = sum(min(reps, p.max_reps) if p.max_reps is not None else reps for p, _ in runs)
    with Progress(steps, "bench", quiet=quiet) as progress:
        for p, dt in runs:
            n_reps = min(reps, p.max_reps) if p.max_reps is not None else reps
            note = (f"repetitions reduced from {reps} to {n_reps} for this preset ({p.note or 'runtime budget'})"
                    if n_reps < reps else "")
            if slowdowns:
                note = (note + "; " if note else "") + f"TEST-ONLY slowdown knob {SLOWDOWN_ENV} active: {slowdowns}"
            progress.note(f"{p.name} {dt}: building the layers, validating, peak memory, warm-up")
            results.append(bench_preset(p, adapters, n_reps, warmup, dtype=dt, progress=progress, note=note,
                                        slowdowns=slowdowns, roofline=rooflines[dt]))
    order = {(p.name, dt): i for i, (p, dt) in enumerate((p, dt) for p in presets for dt in dtypes)}
    results.sort(key=lambda res: order[(res["preset"], res["dtype"])])
    report = {"schema": "gradguard.bench-cpu/2",
              "meta": {**meta(), "loadavg_start": load_start, "dtypes": list(dtypes), "roofline": rooflines},
              "adapters": adapters,
              "presets": [{"name": p.name, "N": p.n, "d": p.d, "r": p.r} for p in presets],
              "gradcheck": gradcheck, "results": results}
    report["targets"] = evaluate_targets(results, gradcheck, adapters)
    report["total_runtime_s"] = time.perf_counter() - t0
    return report


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                 epilog="presets: " + ", ".join(f"{p.name} (N={p.n}, d={p.d}, r={p.r})"
                                                                for p in PRESETS.values()))
    ap.add_argument("--presets", default=",".join(DEFAULT_PRESETS), help="comma-separated preset names")
    ap.add_argument("--dtypes", default="float32",
                    help=f"comma-separated dtypes from {sorted(DTYPES)} (default float32; an adapter whose torch backend "
                         "lacks one is reported as unsupported)")
    ap.add_argument("--reps", type=int, default=9, help="timed repetitions per preset (default 9)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps per implementation (default 2)")
    ap.add_argument("--adapters", default=None, help="comma-separated adapters (default: all registered)")
    ap.add_argument("--json", default=None, help="write the report here (atomically)")
    ap.add_argument("--quiet", action="store_true", help="no live progress line on stderr (none without a terminal "
                                                         "either)")
    args = ap.parse_args(argv)
    presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    bad = [p for p in presets if p not in PRESETS]
    if bad or not presets:
        ap.error(f"argument --presets: expected names from {sorted(PRESETS)}, got {bad or 'nothing'}")
    known = gg.adapters()
    adapters = known if args.adapters is None else [s.strip() for s in args.adapters.split(",") if s.strip()]
    bad = [a for a in adapters if a not in known]
    if bad or not adapters:
        ap.error(f"argument --adapters: expected names from {known}, got {bad or 'nothing'}")
    dtypes = [s.strip() for s in args.dtypes.split(",") if s.strip()]
    bad = [t for t in dtypes if t not in DTYPES]
    if bad or not dtypes:
        ap.error(f"argument --dtypes: expected names from {sorted(DTYPES)}, got {bad or 'nothing'}")
    args.dtype_list = tuple(dict.fromkeys(dtypes))
    if args.reps < 1:
        ap.error(f"argument --reps: expected an integer >= 1, got {args.reps}")
    if args.warmup < 0:
        ap.error(f"argument --warmup: expected an integer >= 0, got {args.warmup}")
    args.preset_list = [PRESETS[p] for p in presets]
    args.adapter_list = adapters
    return args


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    report = run(args.preset_list, args.adapter_list, args.reps, args.warmup, args.dtype_list, quiet=args.quiet)
    print(render(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
