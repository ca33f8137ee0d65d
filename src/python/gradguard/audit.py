"""``gradguard audit``: the built-in audit of the registry. For every adapter: gradcheck of every backend in both
modes at three shapes and every flag variant; numerics against the float64 reference and PEFT's own layer; gradient
flow with the adapter applied through PEFT to a tiny random Llama. Writes report.json and report.md."""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch

from . import _C
from ._table import table
from .atomic import write_json, write_text
from .bridge import peft_config, peft_supported, peft_unsupported_reason
from .compare import compare
from .flow import check
from .gradcheck import gradcheck
from .models import LLAMA_COMMON_DIMS, LLAMA_LINEARS, llama_batch, tiny_llama
from .progress import Progress
from .registry import adapters, check_dims, info, rank_hp

# Shapes every gradcheck runs at (numerics policy: aligned, odd/prime, rank 1): (label, N, d_in, d_out, r); r goes
# to the adapter's rank hyper-parameter (registry rank_param), if it has one.
SHAPES = [("aligned", 4, 8, 8, 2), ("odd_prime", 3, 7, 5, 3), ("rank1", 2, 5, 3, 1)]
FLOW_RANK = 4  # the rank of the adapters in the tiny Llama (hidden 32, kv projections 16 wide)
BACKENDS = ("eigen", "torch")
MODES = ("fast", "full")


def flag_variants(name: str) -> list[tuple[str, dict]]:
    """Defaults, then each flag hyper-parameter of the registry entry switched away from its default in turn."""
    flags = [h for h in info(name)["hyper"] if h["kind"] == "bool"]
    return [("default", {})] + [(h["name"], {h["name"]: not h["default"]}) for h in flags]


def _gradchecks(name: str) -> list[dict]:
    out = []
    for backend in BACKENDS:
        for mode in MODES:
            for label, n, d_in, d_out, r in SHAPES:
                d_in, d_out = check_dims(name, d_in, d_out)
                for variant, hp in flag_variants(name):
                    res = gradcheck(name, d_in=d_in, d_out=d_out, backend=backend, mode=mode, n_rows=n,
                                    **rank_hp(name, r, d_in, d_out), **hp)
                    out.append({"backend": backend, "mode": mode, "shape": label, "variant": variant, "ok": res.ok,
                                # budget_used is None when an error was NaN/Inf (JSON has no Inf)
                                "worst_budget": max(float("inf") if t["budget_used"] is None else t["budget_used"]
                                                    for t in res.tensors),
                                "failing": [t["name"] for t in res.failing()], "result": res.to_json()})
    return out


def _compares(name: str) -> list[dict]:
    return [{"variant": variant, **compare(name, **hp).to_json()} for variant, hp in flag_variants(name)]


def _flow(name: str) -> dict:
    """The adapter applied through PEFT to every linear layer of a tiny random Llama, at PEFT's default init, once per
    flag variant PEFT can express (IA3's is_feedforward, LoRA's lora_bias, ...)."""
    if not peft_supported(name):
        return {"ok": None, "skipped": f"PEFT has no layer for '{name}'"}
    from peft import get_peft_model

    variants = []
    for variant, flags in flag_variants(name):
        hp = {**rank_hp(name, FLOW_RANK, *LLAMA_COMMON_DIMS), **flags}
        reason = peft_unsupported_reason(name, _C.resolve_hyper(name, 32, 32, hp))
        if reason:
            variants.append({"variant": variant, "ok": None, "skipped": reason})
            continue
        torch.manual_seed(0)
        with warnings.catch_warnings():
            # PEFT 0.21.2 reads a property that transformers 5.x deprecated; not ours to fix, and noise in the report.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            # Llama's linears have no bias: PEFT warns that lora_bias then blocks merging, which this check never does.
            warnings.filterwarnings("ignore", message=".*lora_bias=True.*has no bias.*")
            model = get_peft_model(tiny_llama(0), peft_config(name, hp, target_modules=LLAMA_LINEARS))
        report = check(model, **llama_batch(0))
        variants.append({"variant": variant, "ok": report.ok, "problems": len(report.problems),
                         "notes": len(report.notes), "report": report.to_json()})
    ran = [v for v in variants if v["ok"] is not None]
    return {"ok": all(v["ok"] for v in ran) if ran else None, "problems": sum(v["problems"] for v in ran),
            "notes": sum(v["notes"] for v in ran), "variants": variants}


def run_audit(names: list[str] | None = None, quiet: bool = False) -> dict:
    names = names or adapters()
    for n in names:
        info(n)  # unknown names fail here, before any work, with the list of known ones
    start = time.monotonic()
    results = []
    with Progress(3 * len(names), "audit", quiet=quiet) as progress:
        for name in names:
            progress.step(f"{name}: gradcheck ({len(BACKENDS)} backends x {len(MODES)} modes x {len(SHAPES)} shapes x "
                          f"{len(flag_variants(name))} variants)")
            grads = _gradchecks(name)
            progress.step(f"{name}: compare (eigen, torch, PEFT at float64/float32)")
            comps = _compares(name)
            progress.step(f"{name}: gradient flow in a tiny Llama through PEFT")
            flow = _flow(name)
            results.append({"adapter": name, "gradcheck": grads, "compare": comps, "flow": flow,
                            "ok": all(g["ok"] for g in grads) and all(c["ok"] for c in comps) and flow["ok"] is not False})
    return {"tool": "gradguard audit", "versions": _versions(), "ok": all(r["ok"] for r in results),
            "seconds": round(time.monotonic() - start, 1), "policy": _C.policy("float32"),
            "adapters": results}


def _versions() -> dict:
    import peft
    import transformers

    import gradguard

    return {"gradguard": gradguard.__version__, "torch": torch.__version__, "peft": peft.__version__,
            "transformers": transformers.__version__}


def summary_rows(report: dict) -> list[list[object]]:
    rows = []
    for r in report["adapters"]:
        g = r["gradcheck"]
        flow = r["flow"]
        ran = sum(v["ok"] is not None for v in flow.get("variants", []))
        flow_cell = "skipped" if flow["ok"] is None else (
            f"{'ok' if flow['ok'] else 'FAIL'} ({ran} variant{'s' * (ran != 1)}: {flow['problems']} problems, "
            f"{flow['notes']} notes)")
        rows.append([r["adapter"], f"{sum(x['ok'] for x in g)}/{len(g)}",
                     max(x["worst_budget"] for x in g),
                     "ok" if all(c["ok"] for c in r["compare"]) else "FAIL",
                     ", ".join(sorted({s["backend"] for c in r["compare"] for s in c["skipped"]})) or "-",
                     flow_cell, r["ok"]])
    return rows


SUMMARY_HEADERS = ["adapter", "gradcheck", "worst budget", "compare", "skipped", "flow (tiny Llama)", "status"]


def markdown(report: dict) -> str:
    lines = ["# gradguard audit", "",
             f"Result: **{'all good' if report['ok'] else 'PROBLEMS FOUND'}** in {report['seconds']} s. "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".", "",
             "| " + " | ".join(SUMMARY_HEADERS) + " |", "|" + "---|" * len(SUMMARY_HEADERS)]
    for row in summary_rows(report):
        lines.append("| " + " | ".join(_md(c) for c in row) + " |")
    lines += ["", "gradcheck: central finite differences in float64 (eps, atol, rtol from DESIGN.md §4) against each "
              "backend's analytic backward, fast (random projections) and full (Jacobian) modes, shapes "
              + ", ".join(f"{s[0]} (N={s[1]}, d_in={s[2]}, d_out={s[3]}, r={s[4]})" for s in SHAPES)
              + " (r is the adapter's rank hyper-parameter, registry rank_param, where it has one)"
              + "; budget = max |err| / allowed (ok <= 1).",
              "compare: eigen float64 is the reference; float64 runs must agree to the float64 policy, float32 runs "
              "to k x the error of a naive float32 torch implementation + atol.", ""]
    for r in report["adapters"]:
        bad = [g for g in r["gradcheck"] if not g["ok"]]
        bad_cmp = [(c["variant"], row) for c in r["compare"] for row in c["rows"] if not row["ok"]]
        problems = [(v["variant"], p) for v in r["flow"].get("variants", []) for p in v.get("report", {}).get("problems", [])]
        skipped = sorted({f"{s['backend']} ({c['variant']}): {s['reason']}" for c in r["compare"] for s in c["skipped"]}
                         | {f"flow ({v['variant']}): {v['skipped']}" for v in r["flow"].get("variants", []) if "skipped" in v})
        if not (bad or bad_cmp or problems or skipped):
            continue
        lines += [f"## {r['adapter']}", ""]
        lines += [f"- skipped {s}" for s in skipped]
        for g in bad:
            lines.append(f"- gradcheck {g['backend']}/{g['mode']}/{g['shape']}/{g['variant']}: failing {g['failing']}")
        for variant, row in bad_cmp:
            lines.append(f"- compare {variant} {row['backend']} {row['dtype']} {row['tensor']}: max_abs {row['max_abs']}, "
                         f"budget {row['budget_used']}")
        for variant, p in problems:
            lines.append(f"- flow {variant}: `{p['param']}` {p['kind']}/{p['cause']}: {p['hint']}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _md(c: object) -> str:
    if isinstance(c, bool):
        return "ok" if c else "**FAIL**"
    if isinstance(c, float):
        return f"{c:.3g}"
    return str(c)


def write_reports(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    write_json(out_dir / "report.json", _finite(report))
    write_text(out_dir / "report.md", markdown(report))
    return out_dir / "report.json", out_dir / "report.md"


def _finite(o):
    """JSON has no Inf/NaN: write them as null (the ok flags beside them carry the verdict)."""
    if isinstance(o, float):
        return o if o == o and abs(o) != float("inf") else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_finite(v) for v in o]
    return o


def print_summary(report: dict, stream=sys.stdout) -> None:
    print(table(SUMMARY_HEADERS, summary_rows(report)), file=stream)
    print(f"\n{'all good' if report['ok'] else 'PROBLEMS FOUND'} ({report['seconds']} s)", file=stream)
