"""Cross-implementation numerics (DESIGN.md §4): the Eigen float64 reference against eigen/torch/cuda at float64 and
low precision, and against PEFT's own live layer, on seeded non-degenerate cases (the policy's number, pooled).

float64 runs must agree with the reference to the float64 policy (a few hundred ulps); low-precision runs are held
to k × the error of a naive same-precision torch implementation (autograd through the composite forward) + atol.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from . import _C
from ._table import table
from .bridge import load_into_peft, make_peft_layer, peft_unsupported_reason
from .peft_defects import known_layer_defect, known_peft_defect
from .registry import check_dims, check_hp, info

BACKENDS = ("eigen", "torch", "cuda", "peft")
CUDA_LOW_PRECISIONS = ("float32", "bfloat16", "float16")


@dataclass
class CompareResult:
    adapter: str
    hp: dict
    ok: bool
    rows: list[dict]                                  # backend, dtype, tensor, ok, max_abs, max_rel, nmse, budget_used
    skipped: list[dict] = field(default_factory=list)  # backend, dtype, reason
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"adapter": self.adapter, "hp": self.hp, "ok": self.ok, "rows": self.rows, "skipped": self.skipped,
                "notes": self.notes}

    def __str__(self) -> str:
        rows = [[r["backend"], r["dtype"], r["tensor"], r["ok"], r["max_abs"], r["max_rel"], r["nmse"], r["budget_used"]]
                for r in self.rows]
        out = f"compare {self.adapter}: {'ok' if self.ok else 'FAILED'}\n"
        out += table(["backend", "dtype", "tensor", "status", "max_abs", "max_rel", "nmse", "budget"], rows)
        for s in self.skipped:
            out += f"\nskipped {s['backend']} {s['dtype']}: {s['reason']}"
        return out


def _run_peft(name: str, case: dict, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """PEFT's own layer on the case: y, dx and the gradient of every trainable tensor (registry names)."""
    tensors = case["tensors"]
    w = tensors["weight"]
    base = nn.Linear(w.shape[1], w.shape[0], bias=True)
    layer = make_peft_layer(name, base, case["hp"]).to(dtype)
    load_into_peft(layer, tensors)  # after the cast: float64 values must not pass through float32
    layer.eval()
    x = case["x"].to(dtype).clone().requires_grad_(True)
    y = layer(x)
    y.backward(case["dy"].to(dtype))
    from .bridge import from_peft

    _, _, live = from_peft(layer)
    out = {"y": y.detach(), "dx": x.grad.detach()}
    grads = {n: p.grad for n, p in layer.named_parameters()}
    from .registry import info

    for spec in info(name)["tensors"]:
        if spec["role"] != "trainable" or spec["name"] not in live:
            continue
        g = grads.get(spec["peft_key"].replace("{adapter}", "default"))
        out["d " + spec["name"]] = (torch.zeros_like(live[spec["name"]]) if g is None else g.reshape(live[spec["name"]].shape)).detach()
    return out


def _pooled(cases: list[dict], run) -> dict[str, torch.Tensor]:
    """run(case) -> {key: tensor} over every case, each key's values flattened and concatenated in case order."""
    outs = [run(c) for c in cases]
    return {k: torch.cat([o[k].reshape(-1).double() for o in outs]) for k in outs[0]}


def compare(name: str, *, backends=BACKENDS, dtype: str = "float32", d_in: int | None = None,
            d_out: int | None = None, n_rows: int = 5, seed: int = 0, **hp) -> CompareResult:
    """Compare every requested backend with the Eigen float64 reference on the seeded cases seed, seed+1, ...
    (the policy's number of cases, pooled: a tensor's max error is taken over all of them). The shape defaults to
    11 x 7 (odd, prime), or the nearest the adapter can take (RoAd: an even d_out)."""
    default_in, default_out = check_dims(name, 11, 7)
    d_in = default_in if d_in is None else d_in
    d_out = default_out if d_out is None else d_out
    for b in backends:
        if b not in BACKENDS:
            raise _C.InputError(f"argument 'backends': expected a subset of {list(BACKENDS)}, got '{b}'")
    if dtype not in ("float32",):
        raise _C.InputError(f"argument 'dtype': expected 'float32' (the low precision of the CPU backends; the "
                            f"cuda backend adds bfloat16 and float16 by itself), got '{dtype}'")
    hp = check_hp(name, d_in, d_out, hp, min(3, d_in, d_out))
    p64, plow = _C.policy("float64"), _C.policy(dtype)
    cases = [_C.make_case(name, d_in, d_out, n_rows, seed + i, hp) for i in range(plow["cases"])]
    case = cases[0]

    def backend_run(backend: str, dt: str, naive: bool = False):
        return _pooled(cases, lambda c: _C.run_backend(name, backend, dt, c["x"], c["tensors"], c["dy"], c["hp"],
                                                       naive=naive))
    ref = backend_run("eigen", "float64")
    naive = backend_run("torch", dtype, naive=True)
    rows, skipped, notes = [], [], []
    known: set[str] = set()

    # A known deviation of PEFT's own layer from the exact maths, declared in the registry with its reason (LoHa's
    # float32 scaling scalar): it loosens only the float64 rows of the "peft" backend.
    peft_override = next((o for o in info(name)["tolerance_overrides"] if o["check"] == "peft"), None)

    def add(backend: str, dt: str, run: dict, naive_run: dict | None = None):
        policy = plow if dt == dtype else _C.policy(dt)
        base = naive if naive_run is None else naive_run
        for key, r in ref.items():
            if dt == "float64":
                atol, rtol = p64["f64_atol"], p64["f64_rtol"]
                if backend == "peft" and peft_override:
                    atol, rtol = peft_override["atol"], peft_override["rtol"]
                s = _C.compare_to_reference(key, r, run[key], None, 0.0, atol, rtol)
            else:
                s = _C.compare_to_reference(key, r, run[key], base[key], policy["k"], policy["atol"], 0.0)
            s.update(backend=backend, dtype=dt)
            defect = known_peft_defect(name, key, case["hp"]) if backend == "peft" else None
            if defect and not s["ok"]:
                s["known_peft_defect"] = defect  # reported, not counted: gradguard's value is the one FD confirms
                known.add(defect)
            rows.append(s)

    for backend in backends:
        if backend in ("eigen", "torch"):
            for dt in ("float64", dtype):
                add(backend, dt, backend_run(backend, dt))
        elif backend == "cuda":
            status = _C.cuda_status()
            if status["unavailable_reason"] or name not in status["adapters"]:
                reason = status["unavailable_reason"] or f"no cuda kernels for {name} yet"
                skipped.append({"backend": "cuda", "dtype": "*", "reason": reason})
                continue
            add("cuda", "float64", backend_run("cuda", "float64"))
            # Each low precision is held to k × the error of the naive same-precision run on the same device.
            for dt in CUDA_LOW_PRECISIONS:
                add("cuda", dt, backend_run("cuda", dt), backend_run("cuda", dt, naive=True))
        elif backend == "peft":
            reason = peft_unsupported_reason(name, case["hp"])
            if reason:
                skipped.append({"backend": "peft", "dtype": "*", "reason": reason})
                continue
            for dt, tdt in (("float64", torch.float64), (dtype, torch.float32)):
                add("peft", dt, _pooled(cases, lambda c: _run_peft(name, c, tdt)))
    if "exact_gradient" in case["hp"]:
        notes.append("dora: checked with exact_gradient=%s (%s)" % (
            case["hp"]["exact_gradient"], "PEFT's detached weight norm" if not case["hp"]["exact_gradient"] else "the true gradient"))
    if peft_override and "peft" in backends and not any(s["backend"] == "peft" for s in skipped):
        notes.append(f"{name}: peft float64 rows use the registry's tolerance override (atol {peft_override['atol']:g}, "
                     f"rtol {peft_override['rtol']:g}): {peft_override['reason']}")
    notes += [f"{name}: known PEFT defect (peft rows marked, not counted): {why}" for why in sorted(known)]
    ok = all(r["ok"] or r.get("known_peft_defect") for r in rows)
    return CompareResult(adapter=name, hp=case["hp"], ok=ok, rows=rows, skipped=skipped, notes=notes)


def compare_live_layer(layer: nn.Module, x: torch.Tensor, *, backend: str = "eigen", seed: int = 0,
                       model: nn.Module | None = None) -> list[dict]:
    """A live float64 PEFT layer around any base type gradguard lowers (Linear, Conv1d/2d/3d, Embedding, GPT-2's
    Conv1D) against gradguard's float64 ``backend`` run on the tensors ``from_peft`` reads from it: one row per value
    (y, dx — not for token ids — and each trainable tensor's gradient), PEFT's number as the reference, at the float64
    policy (or the registry's "peft" override, e.g. FourierFT's float32 ΔW). ``model``: what to call instead of the
    layer (a wrapper that owns it); ``seed`` draws the output gradient.

    Where PEFT's forward on this layer is a confirmed defect (peft_defects.known_layer_defect): if PEFT's merged layer
    is right, y and dx are compared with a merged copy instead (row "reference": "peft merged", counted as usual);
    the rows that can only come from the defective forward carry ``known_peft_defect`` (reported, not counted), all
    of them where PEFT's forward cannot run at all."""
    from .bridge import _peft_key, from_peft, layer_geometry
    from .layers import lower, run_backend

    if backend not in ("eigen", "torch"):
        raise _C.InputError(f"argument 'backend': expected 'eigen' or 'torch', got '{backend}'")
    name, hp, tensors = from_peft(layer)
    geom = layer_geometry(layer)
    adapter = _active(layer)
    if tensors["weight"].dtype != torch.float64:
        raise _C.InputError(f"argument 'layer': expected a float64 layer (the comparison is at the float64 policy), got "
                            f"{tensors['weight'].dtype}")
    run = model or layer
    x = x.double() if x.is_floating_point() else x
    _, out_shape = lower(geom, x, torch.float64)
    defect = known_layer_defect(name, geom.kind, layer, adapter)
    dy = torch.randn(out_shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x.device)

    def peft_run(module: nn.Module, tuner: nn.Module) -> dict[str, torch.Tensor]:
        xr = x.clone().requires_grad_(x.is_floating_point())
        y = module(xr)
        if tuple(y.shape) != tuple(out_shape):
            raise _C.InputError(f"argument 'layer': expected PEFT's {name} on this {geom.kind} to keep the base layer's "
                                f"output shape {list(out_shape)}, got {list(y.shape)}"
                                + (f" ({defect})" if defect else ""))
        params = dict(tuner.named_parameters())
        saved = {k: p.grad for k, p in params.items()}
        for p in params.values():
            p.grad = None
        y.backward(dy)
        out = {"y": y.detach()}
        if x.is_floating_point():
            out["dx"] = xr.grad
        for spec in info(name)["tensors"]:
            p = params.get(_peft_key(spec, geom, adapter))
            if spec["role"] == "trainable" and p is not None:
                out["d " + spec["name"]] = torch.zeros_like(p) if p.grad is None else p.grad
        for k, p in params.items():  # the caller's gradients, untouched
            p.grad = saved[k]
        return out

    out_keys = ("y", "dx") if x.is_floating_point() else ("y",)
    merged = None
    if defect and defect.merged_is_right:
        # merged in a copy: PEFT's unmerge need not restore W exactly (OFT inverts in float32)
        copy_run = copy.deepcopy(run)
        copy_layer = copy_run if model is None else dict(copy_run.named_modules())[
            next(n for n, m in run.named_modules() if m is layer)]
        with torch.no_grad():
            copy_layer.merge()
        merged = peft_run(copy_run, copy_layer)
    try:
        peft = peft_run(run, layer)
    except Exception as e:  # noqa: BLE001 — only the recorded defect's own failure is expected
        # a defect whose merge is the reference fails as a shape error (InputError above); one without a reference
        # may fail inside PEFT's own code (RuntimeError, NotImplementedError); anything else is a real error
        expected = (_C.InputError,) if defect and defect.merged_is_right else (RuntimeError, NotImplementedError)
        if defect is None or not isinstance(e, expected) or (defect.merged_is_right and merged is None):
            raise
        peft = {**{k: None for k in ("y", "dx") if k in out_keys}, **_unmeasured(name, tensors)}
    ours = run_backend(name, backend, "float64", geom, x, tensors, dy, hp)
    p64 = _C.policy("float64")
    override = next((o for o in info(name)["tolerance_overrides"] if o["check"] == "peft"), None)
    atol, rtol = (override["atol"], override["rtol"]) if override else (p64["f64_atol"], p64["f64_rtol"])
    rows = []
    for key, ref in peft.items():
        if key not in ours:
            raise _C.InputError(f"argument 'layer': gradguard's {name} has no value '{key}' to compare")
        reference = "peft"
        if merged is not None and key in merged and key in ("y", "dx"):
            ref, reference = merged[key], "peft merged"
        if ref is None:  # PEFT's forward could not run on this layer (its defect): nothing to compare with
            rows.append({"tensor": key, "ok": False, "max_abs": float("nan"), "adapter": name, "layer": geom.kind,
                         "backend": backend, "reference": reference, "known_peft_defect": defect.reason})
            continue
        row = _C.compare_to_reference(key, ref.double(), ours[key].reshape(ref.shape).double(), None, 0.0, atol, rtol)
        row.update(adapter=name, layer=geom.kind, backend=backend, reference=reference)
        if not row["ok"] and reference == "peft":  # reported, not counted: gradguard's value is the one FD confirms
            reason = defect.reason if defect else known_peft_defect(name, key, hp)  # the layer's, or the registry's
            if reason:
                row["known_peft_defect"] = reason
        rows.append(row)
    return rows


def _unmeasured(name: str, tensors: dict) -> dict:
    return {"d " + t["name"]: None for t in info(name)["tensors"] if t["role"] == "trainable" and t["name"] in tensors}


def _active(layer: nn.Module) -> str:
    from .bridge import _active_adapter

    return _active_adapter(layer)
