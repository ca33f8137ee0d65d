"""Finite-difference gradient checks in float64 (DESIGN.md §4): registry adapters on any backend, and any torch
module. The finite-difference logic is the C++ core (checkers/gradcheck.cpp); this module only adapts inputs."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import torch
from torch import nn

from . import _C
from ._table import table


@dataclass
class GradcheckResult:
    ok: bool
    mode: str
    tensors: list[dict]            # per tensor: name, shape, ok, max_abs_err, max_rel_err, budget_used, worst, ...
    details: dict = field(default_factory=dict)  # eps, atol, rtol, stencil, forward_evals, backward_evals
    subject: str = ""

    @classmethod
    def from_native(cls, raw: dict, subject: str) -> "GradcheckResult":
        details = {k: v for k, v in raw.items() if k not in ("ok", "mode", "tensors")}
        return cls(ok=raw["ok"], mode=raw["mode"], tensors=raw["tensors"], details=details, subject=subject)

    def failing(self) -> list[dict]:
        return [t for t in self.tensors if not t["ok"]]

    def to_json(self) -> dict:
        return {"subject": self.subject, "ok": self.ok, "mode": self.mode, **self.details, "tensors": self.tensors}

    def __str__(self) -> str:
        rows = [[t["name"], tuple(t["shape"]), t["ok"], t["max_abs_err"], t["max_rel_err"], t["budget_used"], t["worst"]]
                for t in self.tensors]
        head = (f"gradcheck {self.subject} ({self.mode}, eps={self.details.get('eps')}, atol={self.details.get('atol')}, "
                f"rtol={self.details.get('rtol')}): {'ok' if self.ok else 'FAILED'}")
        return head + "\n" + table(["tensor", "shape", "status", "max_abs", "max_rel", "budget", "worst"], rows)


def gradcheck(name: str, *, d_in: int, d_out: int, backend: str = "eigen", mode: str = "fast",
              dtype: str = "float64", seed: int = 0, n_rows: int = 3, four_point: bool = False,
              **hp) -> GradcheckResult:
    """Check adapter ``name``'s analytic backward on ``backend`` against central finite differences in float64, for
    x and every trainable tensor, on a seeded non-degenerate case."""
    if dtype != "float64":
        raise _C.InputError(f"argument 'dtype': expected 'float64' (finite differences run only in float64, "
                            f"DESIGN.md §4; use gg.compare for low precision), got '{dtype}'")
    raw = _C.gradcheck(name, d_in, d_out, backend, mode, seed, n_rows, hp, four_point)
    return GradcheckResult.from_native(raw, f"{name}/{backend} d_in={d_in} d_out={d_out} {_hp_str(hp)}".strip())


def _hp_str(hp: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(hp.items()))


def _flat_output(out) -> torch.Tensor:
    """Every floating tensor of a module's output (tensor, tuple/list, dict or ModelOutput), flattened and joined."""
    parts: list[torch.Tensor] = []

    def walk(o):
        if isinstance(o, torch.Tensor):
            if o.is_floating_point():
                parts.append(o.reshape(-1))
        elif isinstance(o, dict) or hasattr(o, "items"):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(out)
    if not parts:
        raise _C.InputError("argument 'module': expected an output with at least one floating tensor, got none")
    return torch.cat(parts)


def gradcheck_module(module: nn.Module, *inputs, mode: str = "fast", seed: int = 0, eps: float | None = None,
                     atol: float | None = None, rtol: float | None = None, four_point: bool = False,
                     **kwargs) -> GradcheckResult:
    """Finite-difference check of any torch module's backward (e.g. one of PEFT's layers), in float64, with respect
    to its floating inputs and every parameter that requires grad. The module is copied and cast to float64, so
    the caller's module is untouched."""
    policy = _C.policy("float64")
    eps = policy["fd_eps"] if eps is None else eps
    atol = policy["fd_atol"] if atol is None else atol
    rtol = policy["fd_rtol"] if rtol is None else rtol
    if not isinstance(module, nn.Module):
        raise _C.InputError(f"argument 'module': expected a torch.nn.Module, got {type(module).__name__}")
    m = copy.deepcopy(module).double()
    params = {n: p.detach() for n, p in m.named_parameters() if p.requires_grad}
    args = [a.detach().double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in inputs]
    diff_args = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.is_floating_point()]
    names = [f"input[{i}]" for i in diff_args] + list(params)
    values = [args[i] for i in diff_args] + list(params.values())
    if not values:
        raise _C.InputError("argument 'module': expected floating inputs or parameters that require grad, got none")
    for n, v in zip(names, values):
        if not torch.isfinite(v).all():
            raise _C.InputError(f"argument '{n}': expected finite values (gradcheck needs a finite point), got NaN/Inf")

    def call(vals: list[torch.Tensor]) -> torch.Tensor:
        a = list(args)
        for k, i in enumerate(diff_args):
            a[i] = vals[k]
        p = dict(zip(params, vals[len(diff_args):]))
        return _flat_output(torch.func.functional_call(m, p, tuple(a), kwargs))

    def forward(vals):
        with torch.no_grad():
            return call(vals)

    def vjp(vals, dy):
        leaves = [v.clone().requires_grad_(True) for v in vals]
        with torch.enable_grad():
            out = call(leaves)
            grads = torch.autograd.grad(out, leaves, dy, allow_unused=True)
        return [torch.zeros_like(v) if g is None else g for v, g in zip(vals, grads)]

    raw = _C.gradcheck_callable(names, values, forward, vjp, mode, seed, eps, atol, rtol, 2, four_point)
    return GradcheckResult.from_native(raw, type(module).__name__)
