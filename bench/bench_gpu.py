#!/usr/bin/env python3
"""GPU benchmark of gradguard's cuda backend against the base GEMM and PEFT's own layers, in one process.

Layer benchmark (default: bf16, N = 8192 tokens, d_in = d_out = 4096, r = 16, the CUDA issue's target shape). For
each adapter with cuda kernels it times, interleaved within every repetition:

  base       the base nn.Linear alone (cuBLAS): x requires grad, weight and bias frozen, so backward is dX only;
  peft       PEFT's own eager layer (gradguard.bridge.make_peft_layer; weight_lora/my_lora: gradguard.peft's layers,
             the user's fork semantics) around that same base, every factor non-zero, dropout 0;
  gradguard  the same tensors (views of PEFT's parameters) through gradguard's op on the cuda backend.

"fwd" is one forward of a training step (grad mode on); "fwd_bwd" is forward + y.backward(dy), timed separately.
Timing: CUDA events around each call, the L2 cache flushed (a 256 MB write) before each, WARMUP untimed
repetitions, then REPS; figures are medians, ratios are medians of per-repetition paired ratios. Roofline: the
device's bf16 GEMM rate (an 8192³ product) and copy bandwidth (2 GiB device-to-device) are measured in the same
run; each implementation's FLOP/s and GB/s use the registry's cost model (gradguard._C.cost, bytes scaled to the
dtype) and "% of roofline" is max(flops/peak, bytes/bandwidth) / time.

Training step (--llama): a random-init Llama-shaped model (hidden 2048, 16 layers, intermediate 5504, seq 2048,
batch 1, every linear layer adapted with r = 16), AdamW, one step = forward + loss + backward + optimizer step, PEFT
eager vs the same model after gg.fast_path; median step time and peak allocated memory of each.

--device cpu --tiny runs the whole script on the CPU with tiny shapes (the smoke test in CI; no figures).
Usage: python bench/bench_gpu.py [--reps 15] [--warmup 3] [--llama] [--json FILE] [--device cuda|cpu] [--tiny]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gradguard as gg  # noqa: E402
from bench_peft import _paired, _peft_params  # noqa: E402
from gradguard.atomic import write_text  # noqa: E402
from gradguard.bridge import layer_tensors, make_peft_layer  # noqa: E402
from gradguard.registry import declares_cuda, rank_hp  # noqa: E402

# Every adapter with cuda kernels in this build, or (built without nvcc: the CPU smoke run) that the registry declares.
ADAPTERS = gg.cuda_status()["adapters"] or declares_cuda()
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class Timer:
    """Milliseconds of one call: CUDA events after an L2 flush on a GPU, perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.flush = torch.empty(64 * 1024 * 1024, dtype=torch.float32, device=device) if self.cuda else None

    def __call__(self, fn) -> float:
        if not self.cuda:
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3
        self.flush.fill_(1.0)  # evicts the inputs from L2 so every call reads them from HBM
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)


def _hp(name: str, r: int, d: int) -> dict:
    return rank_hp(name, r, d, d)  # the adapter's own rank hyper-parameter (AdaLoRA's init_r; none for IA3)


def build(name: str, n: int, d: int, r: int, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """(base, peft layer, gradguard callable, hp) over one shared set of tensors."""
    torch.manual_seed(seed)
    base = nn.Linear(d, d, bias=True)
    base.requires_grad_(False)
    layer = make_peft_layer(name, base, _hp(name, r, d))
    with torch.no_grad():
        for p in _peft_params(layer, name).values():  # no zero factor: every gradient is real work
            p.copy_(torch.randn_like(p) * 0.02 + (1.0 if p.dim() <= 1 else 0.0))
    layer = layer.to(device, dtype)
    hp = gg._C.resolve_hyper(name, d, d, _hp(name, r, d))
    backend = "cuda" if device.type == "cuda" else "torch"
    tensors = layer_tensors(layer, "default", name, hp)  # views of PEFT's parameters, made once (not timed)

    def gradguard(x):
        return gg._C.adapter_apply(name, x, tensors, hp, backend)
    return layer.get_base_layer(), layer, gradguard, hp


def measure_roofline(device: torch.device, timer: Timer, tiny: bool) -> dict:
    m = 256 if tiny else 8192
    a = torch.randn(m, m, device=device, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32)
    b = torch.randn_like(a)
    gemm = statistics.median([timer(lambda: a @ b) for _ in range(7)])
    src = torch.randn((1 << 20) if tiny else (1 << 29), device=device)  # 2 GiB of float32 on the GPU
    dst = torch.empty_like(src)
    copy = statistics.median([timer(lambda: dst.copy_(src)) for _ in range(7)])
    return {"gemm_tflops": 2 * m ** 3 / gemm / 1e9, "copy_gbs": 2 * src.numel() * 4 / copy / 1e6,
            "gemm_shape": [m, m, m], "copy_bytes": 2 * src.numel() * 4}


def bench_layers(n: int, d: int, r: int, dtype: torch.dtype, device: torch.device, reps: int, warmup: int,
                 adapters: list[str], roof: dict, log) -> dict:
    timer = Timer(device)
    x = torch.randn(n, d, device=device, dtype=dtype, requires_grad=True)
    dy = torch.randn(n, d, device=device, dtype=dtype)
    impls: dict[str, object] = {}
    layers = {}
    for name in adapters:
        base, layer, gradguard, hp = build(name, n, d, r, dtype, device)
        layers[name] = (layer, hp)
        impls.setdefault("base", base)
        impls[f"{name}/peft"] = layer
        impls[f"{name}/gradguard"] = gradguard
    # the same base weights for every adapter: each build() seeds identically
    times = {k: {"fwd": [], "fwd_bwd": []} for k in impls}

    def fwd(f):
        return lambda: f(x)

    def fwd_bwd(f):
        return lambda: f(x).backward(dy)

    for rep in range(warmup + reps):
        for key, f in impls.items():
            x.grad = None
            for kind, make in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
                t = timer(make(f))
                if rep >= warmup:
                    times[key][kind].append(t)
        if rep >= warmup:
            log(f"  rep {rep - warmup + 1}/{reps}: " + ", ".join(
                f"{k} {times[k]['fwd_bwd'][-1]:.3f}" for k in impls))
    bytes_scale = torch.tensor([], dtype=dtype).element_size() / 4.0
    out = {"base": _stats(times["base"], None, None)}
    for name in adapters:
        hp = layers[name][1]
        cost = gg._C.cost(name, n, d, d, hp)
        for impl in ("peft", "gradguard"):
            s = _stats(times[f"{name}/{impl}"], times["base"], cost, bytes_scale, roof)
            if impl == "gradguard":
                s["speedup_vs_peft"] = {k: _paired(times[f"{name}/peft"][k], times[f"{name}/gradguard"][k])
                                        for k in ("fwd", "fwd_bwd")}
            out[f"{name}/{impl}"] = s
    return out


def _stats(t: dict, base: dict | None, cost: dict | None, bytes_scale: float = 1.0, roof: dict | None = None) -> dict:
    s = {k: {"median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v)} for k, v in t.items()}
    if base is not None:
        for k in t:
            s[k]["ratio_to_base"] = _paired(t[k], base[k])
    if cost is not None and roof is not None:
        work = {"fwd": (cost["forward_flops"], cost["forward_bytes"]),
                "fwd_bwd": (cost["forward_flops"] + cost["backward_flops"],
                            cost["forward_bytes"] + cost["backward_bytes"])}
        for k, (flops, nbytes) in work.items():
            sec = s[k]["median_ms"] / 1e3
            nbytes *= bytes_scale
            floor = max(flops / (roof["gemm_tflops"] * 1e12), nbytes / (roof["copy_gbs"] * 1e9))
            s[k].update(tflops=flops / sec / 1e12, gbs=nbytes / sec / 1e9, pct_roofline=100 * floor / sec)
    return s


def bench_llama(device: torch.device, tiny: bool, adapters: list[str], log) -> dict:
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from gradguard.bridge import peft_config
    from gradguard.models import LLAMA_LINEARS

    dims = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, seq=32, vocab=256) \
        if tiny else dict(hidden_size=2048, intermediate_size=5504, num_hidden_layers=16, num_attention_heads=16,
                          seq=2048, vocab=32000)
    seq, vocab = dims.pop("seq"), dims.pop("vocab")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    results = {}
    for name in adapters:
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=vocab, max_position_embeddings=seq, num_key_value_heads=dims["num_attention_heads"],
                          **dims)
        with torch.device(device):
            model = LlamaForCausalLM(cfg).to(dtype)
        model = get_peft_model(model, peft_config(name, {"r": 16}, init_weights=False, target_modules=LLAMA_LINEARS))
        model.to(device, dtype).train()
        ids = torch.randint(0, vocab, (1, seq), device=device)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        res = {}
        fast = None
        for variant in ("peft", "gradguard"):
            if variant == "gradguard":
                fast = gg.fast_path(model)
                res["swapped_layers"] = len(fast.swapped)
                res["skipped_layers"] = [list(s) for s in fast.skipped]

            def step():
                loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            for _ in range(2):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            timer = Timer(device)
            times = [timer(step) for _ in range(3 if tiny else 7)]
            res[variant] = {"median_ms": statistics.median(times), "times_ms": times,
                            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else None}
            log(f"  llama {name} {variant}: {res[variant]['median_ms']:.2f} ms/step")
        res["speedup"] = res["peft"]["median_ms"] / res["gradguard"]["median_ms"]
        results[name] = res
        fast.undo()
        del model, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"shape": {**dims, "seq": seq, "vocab": vocab, "batch": 1, "r": 16, "dtype": str(dtype)}, "adapters": results}


def targets(layers: dict, adapters: list[str]) -> list[dict]:
    def ratio(key, kind):
        return layers[key][kind]["ratio_to_base"]["median"]

    out = []
    if "lora" in adapters:
        out.append({"target": "LoRA fwd <= 1.05x base GEMM", "value": ratio("lora/gradguard", "fwd"),
                    "met": ratio("lora/gradguard", "fwd") <= 1.05})
        out.append({"target": "LoRA fwd+bwd <= 1.08x base GEMM", "value": ratio("lora/gradguard", "fwd_bwd"),
                    "met": ratio("lora/gradguard", "fwd_bwd") <= 1.08})
    if "dora" in adapters:
        v = layers["dora/gradguard"]["speedup_vs_peft"]["fwd_bwd"]["median"]
        out.append({"target": "DoRA fwd+bwd >= 2x faster than PEFT", "value": v, "met": v >= 2})
    for name in ("weight_lora", "my_lora"):
        if name in adapters and "lora" in adapters:
            v = layers[f"{name}/gradguard"]["fwd_bwd"]["median_ms"] / layers["lora/gradguard"]["fwd_bwd"]["median_ms"]
            out.append({"target": f"{name} fwd+bwd within 3% of LoRA", "value": v, "met": v <= 1.03})
    for name in adapters:
        v = layers[f"{name}/gradguard"]["speedup_vs_peft"]["fwd_bwd"]["median"]
        out.append({"target": f"{name} faster than PEFT (fwd+bwd)", "value": v, "met": v > 1})
    return out


def meta(device: torch.device) -> dict:
    import peft

    m = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
         "cuda": torch.version.cuda, "peft": peft.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        m.update(gpu=p.name, sm_count=p.multi_processor_count, memory_gib=p.total_memory / 2 ** 30,
                 capability=f"{p.major}.{p.minor}")
    return m


def render(report: dict) -> str:
    lines = [f"# GPU benchmark — {report['meta'].get('gpu', report['meta']['device'])}", "",
             f"torch {report['meta']['torch']}, CUDA {report['meta']['cuda']}, shape {report['shape']}", "",
             f"Roofline measured in this run: {report['roofline']['gemm_tflops']:.0f} TFLOP/s (bf16 GEMM), "
             f"{report['roofline']['copy_gbs']:.0f} GB/s (copy)", "",
             "| implementation | fwd ms | fwd / base | fwd+bwd ms | fwd+bwd / base | vs PEFT (fwd+bwd) | TFLOP/s | % roofline |",
             "|---|---|---|---|---|---|---|---|"]
    for key, s in report["layers"].items():
        rb = lambda k: f"{s[k]['ratio_to_base']['median']:.3f}" if "ratio_to_base" in s[k] else "1"  # noqa: E731
        vs = f"{s['speedup_vs_peft']['fwd_bwd']['median']:.2f}x" if "speedup_vs_peft" in s else ""
        tf = f"{s['fwd_bwd'].get('tflops', 0):.0f}" if "tflops" in s["fwd_bwd"] else ""
        pr = f"{s['fwd_bwd']['pct_roofline']:.0f}%" if "pct_roofline" in s["fwd_bwd"] else ""
        lines.append(f"| {key} | {s['fwd']['median_ms']:.3f} | {rb('fwd')} | {s['fwd_bwd']['median_ms']:.3f} | "
                     f"{rb('fwd_bwd')} | {vs} | {tf} | {pr} |")
    lines += ["", "| target | value | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']:.3f} | {'yes' if t['met'] else 'NO'} |" for t in report["targets"]]
    if report.get("llama"):
        lines += ["", f"Training step, {report['llama']['shape']}:", "",
                  "| adapter | PEFT ms/step | gg.fast_path ms/step | speed-up | PEFT peak GiB | fast_path peak GiB |",
                  "|---|---|---|---|---|---|"]
        for name, r in report["llama"]["adapters"].items():
            mem = lambda v: f"{r[v]['peak_mem_gib']:.2f}" if r[v]["peak_mem_gib"] is not None else "-"  # noqa: E731
            lines.append(f"| {name} | {r['peft']['median_ms']:.1f} | {r['gradguard']['median_ms']:.1f} | "
                         f"{r['speedup']:.2f}x | {mem('peft')} | {mem('gradguard')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--adapters", default=",".join(ADAPTERS))
    ap.add_argument("--llama", action="store_true", help="also time a Llama-shaped training step")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (smoke test)")
    ap.add_argument("--json", help="write the report here (atomically); a .md beside it")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.warmup < 0:
        ap.error("--reps must be >= 1 and --warmup >= 0")
    adapters = [a for a in args.adapters.split(",") if a]
    for a in adapters:
        if a not in ADAPTERS:
            ap.error(f"--adapters: expected names from {ADAPTERS}, got '{a}'")
    device = torch.device(args.device)
    if device.type == "cuda" and not gg.cuda_status()["available"]:
        print(f"bench_gpu: cuda backend unavailable: {gg.cuda_status()['reason']}", file=sys.stderr)
        return 2
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    n, d, r = (64, 128, 8) if args.tiny else (8192, 4096, 16)
    dtype = DTYPES[args.dtype] if device.type == "cuda" else torch.float32
    roof = measure_roofline(device, Timer(device), args.tiny)
    log(f"roofline: {roof['gemm_tflops']:.1f} TFLOP/s, {roof['copy_gbs']:.0f} GB/s")
    layers = bench_layers(n, d, r, dtype, device, args.reps, args.warmup, adapters, roof, log)
    report = {"meta": meta(device), "shape": {"N": n, "d_in": d, "d_out": d, "r": r, "dtype": str(dtype)},
              "method": "CUDA events, L2 flushed before each call, warm-up, medians; ratios are medians of paired "
                        "per-repetition ratios", "reps": args.reps, "warmup": args.warmup, "roofline": roof,
              "layers": layers, "targets": targets(layers, adapters)}
    if "lora" in adapters:
        report["lora_fwd_bwd_over_base"] = layers["lora/gradguard"]["fwd_bwd"]["ratio_to_base"]["median"]
    if args.llama:
        report["llama"] = bench_llama(device, args.tiny, [a for a in ("lora", "dora", "weight_lora") if a in adapters], log)
    text = render(report)
    print(text)
    if args.json:
        path = Path(args.json)
        write_text(path, json.dumps(report, indent=2) + "\n")
        write_text(path.with_suffix(".md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
