"""``gg.fast_path(model)``: run every PEFT adapter layer of a model through gradguard's own op, which trains every
parameter of the adapter.

Unsloth-style fast paths read ``lora_A``, ``lora_B`` and ``scaling`` and skip the adapter's own forward, so any
other parameter (a gate, a magnitude vector) silently gets no gradient. This swap does the opposite: the layer's
forward becomes one call of the registry adapter's autograd op (backend ``cuda`` — cuBLAS + fused kernels — on GPU
models, ``torch`` elsewhere) on *views of the layer's own parameters*, so the optimizer, the state dict and
``gg.check`` see the same nn.Parameters as before, and every one of them gets its gradient from the analytic backward.

Convolutions and GPT-2's Conv1D run the same op on the input lowered to a Linear's rows (gradguard.layers). Layers the
op cannot reproduce exactly are left on PEFT's forward and listed with the reason: adapters gradguard does not
implement (or has no kernels for on the chosen backend, or not on that layer type), Embedding bases, dropout on the
adapter input, merged or disabled adapters, several active adapters.
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass, field

import torch
from torch import nn

from . import _C
from ._table import table
from .bridge import _hyper_from_layer, _identify, fit, layer_sources, trainable_constants
from .layers import check_supported, geometry, is_convolution, lift, lower, to_registry, weight_as_linear
from .peft_defects import known_layer_defect, known_peft_defect
from .registry import info


@dataclass
class FastPathReport:
    backend: str
    swapped: list[tuple[str, str]] = field(default_factory=list)  # (module name, registry adapter)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (module name, reason)
    # (module name, note): swapped layers whose PEFT forward is a confirmed defect, so the swap changes the numbers
    notes: list[tuple[str, str]] = field(default_factory=list)
    _restore: list[tuple[nn.Module, object]] = field(default_factory=list, repr=False)

    def undo(self) -> None:
        """Give every swapped layer its PEFT forward back."""
        for module, original in self._restore:
            if original is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = original
        self._restore.clear()
        self.swapped.clear()

    def __str__(self) -> str:
        rows = [[m, a, "fused"] for m, a in self.swapped] + [[m, "-", f"PEFT forward: {r}"] for m, r in self.skipped]
        out = (f"fast_path ({self.backend}): {len(self.swapped)} layers swapped, {len(self.skipped)} left on PEFT\n"
               + table(["module", "adapter", "path"], rows))
        return out + "".join(f"\nnote {m}: {n}" for m, n in self.notes)


def _default_backend(model: nn.Module) -> str:
    on_cuda = any(p.is_cuda for p in model.parameters())
    return "cuda" if on_cuda and not _C.cuda_status()["unavailable_reason"] else "torch"


def _why_not(layer: nn.Module, name: str, adapter: str, backend: str) -> str | None:
    if backend == "cuda" and name not in _C.cuda_status()["adapters"]:
        return f"{name} has no cuda kernels yet"
    if getattr(layer, "merged", False):
        return "the adapter is merged into the base weight"
    if getattr(layer, "disable_adapters", False):
        return "adapters are disabled"
    if len(getattr(layer, "active_adapters", [])) != 1:
        return f"{len(layer.active_adapters)} active adapters (the fused op runs one)"
    dropout = getattr(layer, "lora_dropout", {})
    p = getattr(dropout[adapter], "p", 0.0) if adapter in dropout else 0.0
    if p:
        return f"lora_dropout = {p:g}: dropout on the adapter input is not fused (set lora_dropout = 0)"
    return None


def _fused_forward(layer: nn.Module, name: str, adapter: str, hp: dict, backend: str, geom):
    # Resolved once: the layer's own tensors (nn.Parameters and buffers survive .to()/.cuda(), which change their
    # data in place) and the shapes the registry wants them in; each call only reshapes (views, autograd-tracked).
    by_name = layer_sources(layer, adapter, name, hp)
    no_bias = "bias" not in by_name

    base = layer.get_base_layer()

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        # the base weight read afresh each call: .to()/.double() and PEFT's merges replace its .data, which a view
        # taken at swap time (transposed or reshaped for a non-Linear base) would not follow
        by_name["weight"] = (base.weight if geom.kind == "Linear" else weight_as_linear(base, geom), by_name["weight"][1])
        weight = by_name["weight"][0]
        for k, (t, shape) in list(by_name.items()):
            if t.device != weight.device:  # an index table in a plain dict that the model's .to() did not move:
                by_name[k] = (t.to(weight.device), shape)  # moved once and kept (the op checks it once, by identity)
        tensors = {k: to_registry(name, geom, k, fit(t, shape)) for k, (t, shape) in by_name.items()}
        if no_bias:
            tensors["bias"] = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
        if geom.kind == "Linear":
            return _C.adapter_apply(name, x.to(weight.dtype), tensors, hp, backend).to(x.dtype)
        # a convolution, GPT-2's Conv1D or looked-up embedding rows: the same op on the input lowered to a Linear's
        # rows (gradguard.layers); token ids stay ids and the output takes the table's dtype
        if not x.is_floating_point():
            rows, out_shape = lower(geom, x, weight.dtype)
            return lift(geom, _C.adapter_apply(name, rows, tensors, hp, backend), out_shape)
        rows, out_shape = lower(geom, x.to(weight.dtype))
        return lift(geom, _C.adapter_apply(name, rows, tensors, hp, backend), out_shape).to(x.dtype)
    return forward


def fast_path(model: nn.Module, *, backend: str | None = None, convolutions: bool = False) -> FastPathReport:
    """Swap the forward of every PEFT tuner layer whose adapter gradguard implements for gradguard's op (in place);
    returns what was swapped, what was left on PEFT's forward and why, and ``undo()``.

    ``convolutions``: also swap Conv1d/2d/3d layers with a kernel larger than 1 or groups > 1. The op runs them on
    unfolded patches (im2col), which the backward keeps: kernel-volume times the input's activation memory where
    PEFT's layer keeps the input itself, and an im2col GEMM in place of cuDNN's convolution; a grouped one does
    groups times the work (stacked group rows, or block-diagonal expanded weights). Embedding layers always stay on
    PEFT's lookup. Off by default; every parameter still
    trains on PEFT's forward, which gg.check verifies."""
    from .flow import _is_tuner_layer

    backend = backend or _default_backend(model)
    if backend not in ("torch", "cuda"):
        raise _C.InputError(f"argument 'backend': expected 'torch' or 'cuda', got '{backend}'")
    if backend == "cuda" and _C.cuda_status()["unavailable_reason"]:
        raise _C.InputError(f"argument 'backend': 'cuda' is unavailable here: {_C.cuda_status()['unavailable_reason']}")
    report = FastPathReport(backend)
    for mname, layer in model.named_modules():
        if not _is_tuner_layer(layer) or not hasattr(layer, "get_base_layer"):
            continue
        adapters = list(getattr(layer, "active_adapters", []))
        adapter = adapters[0] if adapters else "default"
        try:
            name = _identify(layer, adapter)
            geom = geometry(layer.get_base_layer(), name)
            if geom.kind == "Embedding":
                # a lookup would become a product with one-hot rows of vocabulary width (N x vocab memory and work
                # where PEFT's lookup gathers rows), or, for OFT's rotated rows, a product with a d x d identity base
                # weight (2·N·d² extra work where PEFT only rotates)
                report.skipped.append((mname, "Embedding base: lookups are not fused (the lowering costs " + (
                    "N x vocabulary one-hot rows)" if geom.lookup == "one-hot" else
                    "a d x d identity base weight per call)")))
                continue
            if is_convolution(geom) and (math.prod(geom.kernel) > 1 or geom.groups > 1) and not convolutions:
                why = (f"a {'x'.join(map(str, geom.kernel))} kernel: lowered to patches its activations cost "
                       f"kernel-volume times PEFT's" if math.prod(geom.kernel) > 1 else
                       f"groups={geom.groups}: the lowering does groups times the convolution's work")
                report.skipped.append((mname, f"{geom.kind} with {why} (pass convolutions=True to swap it anyway)"))
                continue
            check_supported(name, geom)
            hp = _C.resolve_hyper(name, geom.d_in, geom.d_out, _hyper_from_layer(name, layer, adapter))
        except (_C.InputError, KeyError) as e:
            report.skipped.append((mname, str(e)))
            continue
        reason = _why_not(layer, name, adapter, backend)
        if reason:
            report.skipped.append((mname, reason))
            continue
        try:
            fused = _fused_forward(layer, name, adapter, hp, backend, geom)
        except _C.InputError as e:
            report.skipped.append((mname, str(e)))
            continue
        report._restore.append((layer, layer.__dict__.get("forward")))
        layer.forward = types.MethodType(fused, layer)
        report.swapped.append((mname, name))
        for key in trainable_constants(layer, name, adapter):
            report.notes.append((mname, f"{key} requires grad, but {name}'s maths holds it constant (PEFT makes "
                                        f"AdaLoRA's ranknum trainable on a model that is not float32); the op gives "
                                        f"it no gradient: freeze it with requires_grad_(False)"))
        defect = known_layer_defect(name, geom.kind, layer, adapter)
        if defect:
            report.notes.append((mname, f"the fused op computes the adapter's maths, not PEFT's forward here ({defect.reason})"))
        for d in info(name)["peft_defects"]:
            if known_peft_defect(name, d["tensor"], hp):
                report.notes.append((mname, f"the fused op's {d['tensor']} is the true one, not PEFT's ({d['reason']})"))
    return report
