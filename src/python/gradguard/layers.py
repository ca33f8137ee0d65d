"""Layer types beyond nn.Linear (ADAPTERS.md "Layer types"): Conv1d, Conv2d, Embedding and HF's GPT-2 ``Conv1D``.

Each is a Linear layer in disguise, reached by a fixed linear map of the input that only moves (or zero-pads) values:

  Conv1d/Conv2d  the input is unfolded into patches (im2col): row = one output position, columns = in_channels x
                 kernel positions in the order of ``weight.reshape(out_channels, -1)``, so the convolution is
                 ``patches @ W.reshape(out, -1)ᵀ + b`` and d_in = in_channels · kernel volume;
  Embedding      the ids become one-hot rows over the vocabulary, W_linear = weightᵀ (d_in = num_embeddings);
  Conv1D         GPT-2's Linear with its weight stored as (in, out): W_linear = weightᵀ.

PEFT's adapters on these layers compute the same maths on the lowered input (LoRA's A as a convolution with the
base kernel and B as a 1x1 convolution, OFT/BOFT/HRA rotating the in·k·k filter dimension, DoRA's norm per output
channel, ...), so every adapter's maths is implemented once, for the Linear case, and the lowering is shared. The
registry says which layer types each adapter supports (``info(name)["layer_types"]``); the comparisons against PEFT's
own layers (tests/python/test_layer_types.py) are what shows the lowering and PEFT agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import _C

LAYER_TYPES = ("Linear", "Conv1d", "Conv2d", "Embedding", "Conv1D")


@dataclass(frozen=True)
class Geometry:
    """How a base layer lowers to a Linear (d_in -> d_out)."""
    kind: str               # one of LAYER_TYPES
    d_in: int               # columns of the lowered input
    d_out: int
    in_channels: int = 0    # convolutions
    kernel: tuple = ()
    stride: tuple = ()
    padding: tuple = ()
    dilation: tuple = ()
    padding_idx: int | None = None  # Embedding: the id whose lookups pass no gradient to the looked-up table


def _is_gpt2_conv1d(module: nn.Module) -> bool:
    # transformers.pytorch_utils.Conv1D, recognised without importing transformers (it is optional)
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def layer_type(module: nn.Module) -> str | None:
    """The LAYER_TYPES name of a base layer, or None for a type gradguard does not lower."""
    if _is_gpt2_conv1d(module):
        return "Conv1D"
    for kind in ("Linear", "Conv1d", "Conv2d", "Embedding"):
        if type(module) is getattr(nn, kind) or isinstance(module, getattr(nn, kind)):
            return kind
    return None


def geometry(base: nn.Module) -> Geometry:
    """The lowering of ``base``; InputError naming what is not supported (grouped or non-zero-padded convolutions,
    string padding, embeddings with max_norm / scale_grad_by_freq / sparse)."""
    kind = layer_type(base)
    if kind is None:
        raise _C.InputError(f"argument 'layer': expected a PEFT layer around one of {list(LAYER_TYPES)}, got one around "
                            f"{type(base).__module__}.{type(base).__name__}")
    w = base.weight
    if kind == "Linear":
        return Geometry(kind, w.shape[1], w.shape[0])
    if kind == "Conv1D":
        return Geometry(kind, w.shape[0], w.shape[1])
    if kind == "Embedding":
        for attr, ok in (("max_norm", None), ("scale_grad_by_freq", False), ("sparse", False)):
            if getattr(base, attr) != ok:
                raise _C.InputError(f"argument 'layer': expected an nn.Embedding with {attr}={ok} (gradguard does not "
                                    f"model PEFT's lookup with it), got {attr}={getattr(base, attr)}")
        return Geometry(kind, w.shape[0], w.shape[1], padding_idx=base.padding_idx)
    if base.groups != 1:
        raise _C.InputError(f"argument 'layer': expected a convolution with groups=1 (gradguard lowers a convolution to "
                            f"one matrix product), got groups={base.groups}")
    if base.padding_mode != "zeros" or isinstance(base.padding, str):
        raise _C.InputError(f"argument 'layer': expected a convolution with numeric padding and padding_mode='zeros', "
                            f"got padding={base.padding!r}, padding_mode={base.padding_mode!r}")
    return Geometry(kind, w.shape[1] * math.prod(w.shape[2:]), w.shape[0], w.shape[1], tuple(base.kernel_size),
                    tuple(base.stride), tuple(base.padding), tuple(base.dilation))


def check_supported(name: str, geom: Geometry) -> None:
    """InputError unless the registry implements adapter ``name`` on this layer type."""
    from .registry import info

    supported = info(name)["layer_types"]
    if geom.kind not in supported:
        raise _C.InputError(f"argument 'layer': expected {name} around one of the layer types gradguard implements for "
                            f"it ({supported}), got one around {geom.kind}")


def weight_as_linear(base: nn.Module, geom: Geometry) -> torch.Tensor:
    """The base weight as the (d_out, d_in) matrix of the lowered Linear (a view: no copy)."""
    w = base.weight
    if geom.kind in ("Conv1D", "Embedding"):
        return w.t()
    return w.reshape(geom.d_out, geom.d_in)


def weight_from_linear(w: torch.Tensor, base: nn.Module, geom: Geometry) -> torch.Tensor:
    """The inverse of weight_as_linear: a (d_out, d_in) matrix in the base layer's own weight layout."""
    if geom.kind in ("Conv1D", "Embedding"):
        return w.t()
    return w.reshape(base.weight.shape)


def _as_2d(geom: Geometry) -> tuple[tuple, tuple, tuple, tuple]:
    """Conv1d runs as a Conv2d of height 1 (F.unfold is 2-D only)."""
    if geom.kind == "Conv1d":
        return (1, *geom.kernel), (1, *geom.stride), (0, *geom.padding), (1, *geom.dilation)
    return geom.kernel, geom.stride, geom.padding, geom.dilation


def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def lower(geom: Geometry, x: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, tuple]:
    """(X of shape (M, d_in), the output shape the lowered rows fold back to). Differentiable in x (not for ids).
    ``dtype``: the one-hot rows' dtype for an Embedding (ignored otherwise)."""
    if geom.kind in ("Linear", "Conv1D"):
        if x.dim() < 1 or x.shape[-1] != geom.d_in:
            raise _C.InputError(f"argument 'x': expected shape (..., {geom.d_in}), got {list(x.shape)}")
        return x.reshape(-1, geom.d_in), (*x.shape[:-1], geom.d_out)
    if geom.kind == "Embedding":
        if x.is_floating_point() or x.is_complex():
            raise _C.InputError(f"argument 'x': expected integer token ids for an Embedding, got {x.dtype}")
        ids = x.reshape(-1)
        if ids.numel() and bool(((ids < 0) | (ids >= geom.d_in)).any()):  # one host sync
            raise _C.InputError(f"argument 'x': expected ids in [0, {geom.d_in}), got values in "
                                f"[{int(ids.min())}, {int(ids.max())}]")
        # built in the target dtype (F.one_hot would make an int64 (N, vocab) tensor first)
        rows = torch.zeros(ids.numel(), geom.d_in, dtype=dtype or torch.get_default_dtype(), device=x.device)
        return rows.scatter_(1, ids[:, None], 1), (*x.shape, geom.d_out)
    spatial = len(geom.kernel)
    if x.dim() not in (spatial + 1, spatial + 2) or x.shape[-spatial - 1] != geom.in_channels:
        raise _C.InputError(f"argument 'x': expected shape ([N,] {geom.in_channels}, {', '.join(['L'] * spatial)}) for "
                            f"{geom.kind}, got {list(x.shape)}")
    batched = x.dim() == spatial + 2
    xb = x if batched else x.unsqueeze(0)
    if geom.kind == "Conv1d":
        xb = xb.unsqueeze(2)
    k, s, p, d = _as_2d(geom)
    sizes = [_out_size(xb.shape[2 + i], k[i], s[i], p[i], d[i]) for i in range(2)]
    if min(sizes) < 1:
        raise _C.InputError(f"argument 'x': spatial size {list(x.shape[-spatial:])} is smaller than the "
                            f"{geom.kind}'s dilated kernel {list(geom.kernel)} with padding {list(geom.padding)}")
    cols = F.unfold(xb, k, dilation=d, padding=p, stride=s)  # (N, d_in, L)
    out_spatial = sizes[1:] if geom.kind == "Conv1d" else sizes
    out_shape = (xb.shape[0], geom.d_out, *out_spatial) if batched else (geom.d_out, *out_spatial)
    return cols.transpose(1, 2).reshape(-1, geom.d_in), out_shape


def lift(geom: Geometry, y: torch.Tensor, out_shape: tuple) -> torch.Tensor:
    """The lowered output rows (M, d_out) in the layer's own output layout (channels second for convolutions)."""
    if geom.kind not in ("Conv1d", "Conv2d"):
        return y.reshape(out_shape)
    batched = len(out_shape) == len(geom.kernel) + 2
    n = out_shape[0] if batched else 1
    spatial = out_shape[2:] if batched else out_shape[1:]
    out = y.reshape(n, -1, geom.d_out).transpose(1, 2).reshape(n, geom.d_out, *spatial)
    return out if batched else out[0]


def lower_grad(geom: Geometry, dy: torch.Tensor) -> torch.Tensor:
    """An output gradient in the layer's layout as lowered rows (M, d_out): the inverse of lift."""
    if geom.kind not in ("Conv1d", "Conv2d"):
        return dy.reshape(-1, geom.d_out)
    batched = dy.dim() == len(geom.kernel) + 2
    dyb = dy if batched else dy.unsqueeze(0)
    return dyb.reshape(dyb.shape[0], geom.d_out, -1).transpose(1, 2).reshape(-1, geom.d_out)


def input_grad(geom: Geometry, x: torch.Tensor, dX: torch.Tensor) -> torch.Tensor | None:
    """dL/dx from the lowered rows' gradient dX (M, d_in): the adjoint of ``lower`` — the patches summed back into
    place (F.fold, col2im) for convolutions, a reshape otherwise. None for an Embedding (ids have no gradient)."""
    if geom.kind == "Embedding":
        return None
    if geom.kind not in ("Conv1d", "Conv2d"):
        return dX.reshape(x.shape)
    spatial = len(geom.kernel)
    batched = x.dim() == spatial + 2
    xb = x if batched else x.unsqueeze(0)
    in_hw = (1, xb.shape[-1]) if geom.kind == "Conv1d" else tuple(xb.shape[-2:])
    k, s, p, d = _as_2d(geom)
    cols = dX.reshape(xb.shape[0], -1, geom.d_in).transpose(1, 2)  # (N, d_in, L)
    dx = F.fold(cols, in_hw, k, dilation=d, padding=p, stride=s).reshape(xb.shape)
    return dx if batched else dx[0]


# The tensor PEFT's Embedding layer looks the ids up in (F.embedding with the base's padding_idx): its column
# padding_idx gets no gradient, as nn.Embedding's own row would not.
_LOOKUP_TABLE = {"lora": "lora_A", "dora": "lora_A"}


def padding_column(name: str, geom: Geometry) -> tuple[str, int] | None:
    """(tensor, column) whose gradient PEFT's lookup with padding_idx leaves at zero, or None."""
    if geom.kind != "Embedding" or geom.padding_idx is None or name not in _LOOKUP_TABLE:
        return None
    return _LOOKUP_TABLE[name], geom.padding_idx % geom.d_in


def without_padding_gradient(t: torch.Tensor, column: int) -> torch.Tensor:
    """``t`` with the same values, whose gradient at ``column`` (last axis) is zero."""
    keep = torch.ones(t.shape[-1], dtype=t.dtype, device=t.device)
    keep[column] = 0
    return t * keep + (t * (1 - keep)).detach()


def run_backend(name: str, backend: str, dtype: str, geom: Geometry, x: torch.Tensor, tensors: dict, dy: torch.Tensor,
                hp: dict, naive: bool = False) -> dict[str, torch.Tensor]:
    """``_C.run_backend`` on a layer of any type: y, dx (absent for an Embedding) and every trainable tensor's
    gradient, in the layer's own layouts."""
    tdt = {"float64": torch.float64, "float32": torch.float32}.get(dtype, torch.float32)
    X, out_shape = lower(geom, x, tdt)
    out = _C.run_backend(name, backend, dtype, X.detach(), tensors, lower_grad(geom, dy), hp, naive=naive)
    out = dict(out)
    out["y"] = lift(geom, out["y"], out_shape)
    dx = input_grad(geom, x, out.pop("dx"))
    if dx is not None:
        out["dx"] = dx
    pad = padding_column(name, geom)
    if pad and "d " + pad[0] in out:
        out["d " + pad[0]] = out["d " + pad[0]].clone()
        out["d " + pad[0]][..., pad[1]] = 0
    return out
