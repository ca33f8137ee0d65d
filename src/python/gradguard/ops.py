"""The torch backend as an autograd-aware op and module, usable inside a live model: forward by LibTorch ops,
backward by the adapter's analytic formulas (src/adapters/<name>/torch.cpp)."""
from __future__ import annotations

import math

import torch
from torch import nn

from . import _C
from .registry import info


def adapter_linear(name: str, x: torch.Tensor, tensors: dict[str, torch.Tensor], *, backend: str = "torch",
                   **hp) -> torch.Tensor:
    """y = adapter(x) for x of shape (..., d_in); gradients reach x and every tensor that requires grad.
    backend: "torch" (LibTorch ops, float32/float64, any device) or "cuda" (cuBLAS + gradguard's fused kernels,
    float64/float32/bfloat16/float16 on a CUDA device)."""
    return _C.adapter_apply(name, x, tensors, hp, backend)


def cuda_status() -> dict:
    """{"available": bool, "reason": why not ('' when available), "adapters": names with cuda kernels in this build}."""
    s = _C.cuda_status()
    return {"available": not s["unavailable_reason"], "reason": s["unavailable_reason"], "adapters": list(s["adapters"])}


class AdapterLinear(nn.Module):
    """A base nn.Linear plus adapter ``name``, computed by gradguard's torch backend. Trainable tensors are
    nn.Parameters named as in the registry; a given nn.Parameter is used as it is, not copied (in its own shape when
    that differs from the registry's with the same size, e.g. PEFT's (d_out, 1) IA3 vector), so a parameter shared
    with other modules stays shared. The base weight, bias and other frozen tensors are buffers (copies).

    ``geometry`` (gradguard.layers): another base layer type lowered to this Linear — a convolution (the input is
    unfolded into patches, the output folded back to channels-second), an Embedding (ids as one-hot rows, or OFT's
    looked-up rows: the module keeps a copy of the table) or GPT-2's Conv1D; ``tensors["weight"]`` is then the lowered
    (d_out, d_in) weight, and a trainable tensor PEFT keeps grouped on a grouped convolution (LoRA's lora_B) is
    trained in that grouped layout. None: a plain Linear."""

    def __init__(self, name: str, tensors: dict[str, torch.Tensor], hp: dict, geometry=None):
        super().__init__()
        self.adapter = name
        self.geometry = geometry
        weight = tensors["weight"]
        if geometry is not None:
            from .layers import check_supported

            check_supported(name, geometry)
            if tuple(weight.shape) != (geometry.d_out, geometry.d_in):
                raise _C.InputError(f"argument 'tensors': expected 'weight' as the lowered ({geometry.d_out}, "
                                    f"{geometry.d_in}) matrix of this {geometry.kind} (layers.weight_as_linear), got "
                                    f"{list(weight.shape)}")
        self.hp = _C.resolve_hyper(name, weight.shape[1], weight.shape[0], hp)
        self._shapes = {k: tuple(v) for k, v in _C.tensor_shapes(name, weight.shape[1], weight.shape[0], self.hp).items()}
        roles = {t["name"]: t["role"] for t in info(name)["tensors"]}
        # a trainable tensor PEFT keeps grouped on this layer (layers.GROUP_EXPANDED) is trained in that layout and
        # expanded per call, so its zero blocks stay zero
        self._grouped = set()
        if geometry is not None:
            from .layers import expanded_tensors, grouped_shape

            self._grouped = {k for k in expanded_tensors(name, geometry) if roles.get(k) == "trainable"}
            for key in self._grouped:
                self._shapes[key] = grouped_shape(self._shapes[key], geometry)
        self.params = nn.ParameterDict()
        for key, t in tensors.items():
            if roles.get(key) == "trainable":
                if key in self._grouped and not isinstance(t, nn.Parameter) and t.dim() == 2 and \
                        t.shape[1] == self._shapes[key][1] * geometry.groups:  # given expanded: its own blocks
                    from .layers import take_groups

                    t = take_groups(t, geometry.groups)
                if key in self._grouped and t.numel() != math.prod(self._shapes[key]):
                    raise _C.InputError(f"argument 'tensors': expected '{key}' in PEFT's grouped layout "
                                        f"{list(self._shapes[key])} (a Parameter is trained as given), got "
                                        f"{list(t.shape)}")
                self.params[key] = t if isinstance(t, nn.Parameter) else nn.Parameter(t.detach().clone())
            else:
                self.register_buffer(key, t.detach().clone())
        if geometry is not None and geometry.lookup == "rows":  # the looked-up table is a frozen input like W
            self.register_buffer("embedding_table", geometry.table.detach().clone())

    @classmethod
    def from_peft(cls, layer: nn.Module, adapter: str | None = None) -> "AdapterLinear":
        from .bridge import _active_adapter, from_peft, layer_sources

        from .bridge import layer_geometry

        name, hp, tensors = from_peft(layer, adapter)
        # The layer's own trainable nn.Parameters are handed over, not copied: the module trains PEFT's parameters,
        # and one shared by every layer of the model (VB-LoRA's vector bank) stays one tensor (a private copy per
        # module would leave the model's own without a gradient).
        roles = {t["name"]: t["role"] for t in info(name)["tensors"]}
        for key, (t, _) in layer_sources(layer, adapter or _active_adapter(layer), name, hp).items():
            if roles.get(key) == "trainable" and isinstance(t, nn.Parameter):
                tensors[key] = t
        return cls(name, tensors, hp, layer_geometry(layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tensors = dict(self.named_buffers(recurse=False))
        # a parameter kept in its own layout is viewed in the registry's (autograd reaches the parameter through it)
        tensors.update({k: p if tuple(p.shape) == self._shapes[k] else p.reshape(self._shapes[k])
                        for k, p in self.params.items()})
        if self._grouped:
            from .layers import expand_groups

            tensors.update({k: expand_groups(tensors[k], self.geometry.groups) for k in self._grouped})
        if self.geometry is None or self.geometry.kind == "Linear":
            return _C.adapter_apply(self.adapter, x, tensors, self.hp)
        from .layers import lift, lower, padding_column, without_padding_gradient

        pad = padding_column(self.adapter, self.geometry)
        if pad and pad[0] in tensors:
            tensors[pad[0]] = without_padding_gradient(tensors[pad[0]], pad[1])
        geometry = self.geometry
        if geometry.lookup == "rows":  # this module's own copy of the table (moved with it by .to())
            import dataclasses

            tensors.pop("embedding_table")
            geometry = dataclasses.replace(geometry, table=self.embedding_table)
        rows, out_shape = lower(geometry, x, tensors["weight"].dtype)
        return lift(geometry, _C.adapter_apply(self.adapter, rows, tensors, self.hp), out_shape)
