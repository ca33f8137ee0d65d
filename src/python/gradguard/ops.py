"""The torch backend as an autograd-aware op and module, usable inside a live model: forward by LibTorch ops,
backward by the adapter's analytic formulas (src/adapters/<name>/torch.cpp)."""
from __future__ import annotations

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
    nn.Parameters named as in the registry; the base weight and bias are frozen buffers."""

    def __init__(self, name: str, tensors: dict[str, torch.Tensor], hp: dict):
        super().__init__()
        self.adapter = name
        weight = tensors["weight"]
        self.hp = _C.resolve_hyper(name, weight.shape[1], weight.shape[0], hp)
        roles = {t["name"]: t["role"] for t in info(name)["tensors"]}
        self.params = nn.ParameterDict()
        for key, t in tensors.items():
            if roles.get(key) == "trainable":
                self.params[key] = nn.Parameter(t.detach().clone())
            else:
                self.register_buffer(key, t.detach().clone())

    @classmethod
    def from_peft(cls, layer: nn.Module, adapter: str | None = None) -> "AdapterLinear":
        from .bridge import from_peft

        name, hp, tensors = from_peft(layer, adapter)
        return cls(name, tensors, hp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tensors = dict(self.named_buffers(recurse=False))
        tensors.update(self.params)
        return _C.adapter_apply(self.adapter, x, tensors, self.hp)
