"""Layer types beyond nn.Linear (ADAPTERS.md "Layer types"): Conv1d/2d/3d, Embedding and HF's GPT-2 ``Conv1D``.

Each is a Linear layer in disguise, reached by a fixed linear map of the input that only moves (or zero-pads) values:

  Conv1d/2d/3d   the input is unfolded into patches (im2col): row = one output position, columns = in_channels x
                 kernel positions in the order of ``weight.reshape(out_channels, -1)``, so the convolution is
                 ``patches @ W.reshape(out, -1)ᵀ + b`` and d_in = in_channels · kernel volume. A grouped convolution
                 (groups g) either stacks each group's patches as rows of their own (d_in = in_channels/g · kernel
                 volume, g rows per position) and keeps, for each output channel, the row of its own group, or, for
                 adapters that act on every channel (GROUP_EXPANDED), expands the grouped tensors block-diagonally;
                 either way g times the base convolution's work (fast_path swaps them only when asked);
  Embedding      the ids become one-hot rows over the vocabulary, W_linear = weightᵀ (d_in = num_embeddings); or,
                 for an adapter that acts on the looked-up rows (PEFT's OFT rotates them), the rows themselves
                 with an identity base weight (d_in = d_out = embedding_dim);
  Conv1D         GPT-2's Linear with its weight stored as (in, out): W_linear = weightᵀ.

PEFT's adapters on these layers compute the same maths on the lowered input (LoRA's A as a convolution with the
base kernel and B as a 1x1 convolution, OFT/BOFT/HRA rotating the in·k·k filter dimension, DoRA's norm per output
channel, LoHa/LoKr's ΔW in the grouped weight's own shape, ...), so every adapter's maths is implemented once, for
the Linear case, and the lowering is shared. The registry says which layer types each adapter supports
(``info(name)["layer_types"]``, ``["grouped_convolutions"]``); the comparisons against PEFT's own layers
(tests/python/test_layer_types.py) are what shows the lowering and PEFT agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import _C

LAYER_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "Embedding", "Conv1D")
_CONVOLUTIONS = ("Conv1d", "Conv2d", "Conv3d")

# Adapters whose PEFT layer on a grouped convolution acts on every input channel (LoRA's lora_A is an ungrouped
# convolution, OFT rotates all in_channels·k·k patch features, IA3's input form scales every channel) while what is
# grouped stays grouped (the base weight; LoRA's lora_B, a grouped 1x1 convolution): they run on the full patches
# (d_in = in_channels · kernel volume) with these tensors expanded block-diagonally from PEFT's grouped layout, each
# output row non-zero only on its own group's columns (the base weight: its group's input channels; lora_B: its
# group's r/groups ranks). Every other adapter that declares grouped convolutions has a ΔW of the grouped weight's own
# shape and runs on stacked group rows.
GROUP_EXPANDED = {"lora": ("weight", "lora_B"), "dora": ("weight", "lora_B"), "ia3": ("weight",), "oft": ("weight",)}

# How an adapter's PEFT layer reads an Embedding: "one-hot" (the adapter acts on the ids, as LoRA's lookup in
# lora_embedding_A does) unless listed here. OFT rotates the looked-up rows (OFT's Embedding layer).
EMBEDDING_LOOKUP = {"oft": "rows"}


@dataclass(frozen=True)
class Geometry:
    """How a base layer lowers to a Linear (d_in -> d_out)."""
    kind: str               # one of LAYER_TYPES
    d_in: int               # columns of the lowered input
    d_out: int
    in_channels: int = 0    # convolutions (all groups)
    kernel: tuple = ()
    stride: tuple = ()
    padding: tuple = ()
    dilation: tuple = ()
    groups: int = 1
    grouping: str = "stacked"       # groups > 1: "stacked" group rows, or "expanded" tensors (GROUP_EXPANDED)
    padding_idx: int | None = None  # Embedding: the id whose lookups pass no gradient to the looked-up table
    lookup: str = "one-hot"         # Embedding: "one-hot" or "rows" (EMBEDDING_LOOKUP)
    # Embedding with lookup "rows": the base's table (its live nn.Parameter: the lowering reads it per call)
    table: torch.Tensor | None = field(default=None, compare=False, repr=False)


def is_convolution(geom: Geometry) -> bool:
    return geom.kind in _CONVOLUTIONS


def _is_gpt2_conv1d(module: nn.Module) -> bool:
    # transformers.pytorch_utils.Conv1D, recognised without importing transformers (it is optional)
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def layer_type(module: nn.Module) -> str | None:
    """The LAYER_TYPES name of a base layer, or None for a type gradguard does not lower."""
    if _is_gpt2_conv1d(module):
        return "Conv1D"
    for kind in ("Linear", *_CONVOLUTIONS, "Embedding"):
        if isinstance(module, getattr(nn, kind)):
            return kind
    return None


def geometry(base: nn.Module, adapter: str | None = None) -> Geometry:
    """The lowering of ``base`` (for registry adapter ``adapter`` where that decides it: an Embedding's lookup);
    InputError naming what is not supported (non-zero-padded convolutions, string padding, embeddings with
    max_norm / scale_grad_by_freq / sparse)."""
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
        if EMBEDDING_LOOKUP.get(adapter) == "rows":
            return Geometry(kind, w.shape[1], w.shape[1], padding_idx=base.padding_idx, lookup="rows", table=w)
        return Geometry(kind, w.shape[0], w.shape[1], padding_idx=base.padding_idx)
    if base.padding_mode != "zeros" or isinstance(base.padding, str):
        raise _C.InputError(f"argument 'layer': expected a convolution with numeric padding and padding_mode='zeros', "
                            f"got padding={base.padding!r}, padding_mode={base.padding_mode!r}")
    # weight (out, in/groups, *kernel): the lowered width is one group's, or every channel's where the adapter reads
    # them all (GROUP_EXPANDED)
    expanded = base.groups > 1 and adapter in GROUP_EXPANDED
    d_in = (base.in_channels if expanded else w.shape[1]) * math.prod(w.shape[2:])
    return Geometry(kind, d_in, w.shape[0], base.in_channels, tuple(base.kernel_size), tuple(base.stride),
                    tuple(base.padding), tuple(base.dilation), base.groups, "expanded" if expanded else "stacked")


def expanded_tensors(name: str, geom: Geometry) -> tuple[str, ...]:
    """The registry tensors of ``name`` that this layer's PEFT form keeps in a grouped layout (GROUP_EXPANDED)."""
    return GROUP_EXPANDED.get(name, ()) if geom.grouping == "expanded" else ()


def _row_groups(rows: int, groups: int, device) -> torch.Tensor:
    return torch.arange(rows, device=device) // (rows // groups)


def expand_groups(m: torch.Tensor, groups: int) -> torch.Tensor:
    """(rows, cols/groups) -> (rows, cols), row o's values at its group's columns and zeros elsewhere (differentiable:
    the gradient of the expansion is take_groups)."""
    rows, width = m.shape
    index = _row_groups(rows, groups, m.device).view(rows, 1, 1).expand(rows, 1, width)
    return m.new_zeros(rows, groups, width).scatter(1, index, m.unsqueeze(1)).reshape(rows, groups * width)


def take_groups(m: torch.Tensor, groups: int) -> torch.Tensor:
    """The adjoint (and left inverse) of expand_groups: each row's own group's columns, (rows, cols/groups)."""
    rows = m.shape[0]
    m3 = m.reshape(rows, groups, -1)
    index = _row_groups(rows, groups, m.device).view(rows, 1, 1).expand(rows, 1, m3.shape[2])
    return m3.gather(1, index).squeeze(1)


def to_registry(name: str, geom: Geometry, key: str, t: torch.Tensor) -> torch.Tensor:
    """A PEFT tensor already fitted to its grouped layout (bridge.layer_sources) in the registry's layout: expanded
    where this layer keeps it grouped, as it is otherwise. The base weight is expanded by weight_as_linear."""
    return expand_groups(t, geom.groups) if key != "weight" and key in expanded_tensors(name, geom) else t


def grouped_shape(shape: tuple, geom: Geometry) -> tuple:
    """PEFT's grouped layout of an expanded registry tensor of ``shape`` (rows, cols): (rows, cols/groups)."""
    return (shape[0], shape[1] // geom.groups)


def check_supported(name: str, geom: Geometry) -> None:
    """InputError unless the registry implements adapter ``name`` on this layer (type, groups, lookup)."""
    from .registry import info

    entry = info(name)
    supported = entry["layer_types"]
    if geom.kind not in supported:
        raise _C.InputError(f"argument 'layer': expected {name} around one of the layer types gradguard implements for "
                            f"it ({supported}), got one around {geom.kind}")
    if geom.groups != 1 and not entry["grouped_convolutions"]:
        raise _C.InputError(f"argument 'layer': expected a convolution with groups=1 for {name} (gradguard implements no "
                            f"grouped form of it), got groups={geom.groups}")
    grouping = "expanded" if name in GROUP_EXPANDED else "stacked"
    if geom.groups != 1 and geom.grouping != grouping:
        raise _C.InputError(f"argument 'geometry': expected grouping='{grouping}' for {name} on a grouped convolution "
                            f"(layers.geometry(base, '{name}')), got grouping='{geom.grouping}'")
    want = EMBEDDING_LOOKUP.get(name, "one-hot")
    if geom.kind == "Embedding" and geom.lookup != want:
        raise _C.InputError(f"argument 'geometry': expected lookup='{want}' for {name} on an Embedding "
                            f"(layers.geometry(base, '{name}')), got lookup='{geom.lookup}'")


def weight_as_linear(base: nn.Module, geom: Geometry) -> torch.Tensor:
    """The base weight as the (d_out, d_in) matrix of the lowered Linear (a view: no copy; the identity for an
    Embedding looked up by rows, whose table is part of the lowering; block-diagonal for an expanded grouped one)."""
    w = base.weight
    if geom.lookup == "rows":
        return torch.eye(geom.d_in, dtype=w.dtype, device=w.device)
    if geom.kind in ("Conv1D", "Embedding"):
        return w.t()
    if geom.grouping == "expanded":  # a copy: zeros outside each output channel's group
        return expand_groups(w.reshape(geom.d_out, -1), geom.groups)
    return w.reshape(geom.d_out, geom.d_in)


def weight_from_linear(w: torch.Tensor, base: nn.Module, geom: Geometry) -> torch.Tensor:
    """The inverse of weight_as_linear: a (d_out, d_in) matrix in the base layer's own weight layout. For an
    Embedding looked up by rows the lowered weight is the identity by construction (the table is the base's own and
    is not a registry tensor): only the identity maps back, to the table unchanged."""
    if geom.lookup == "rows":
        if not torch.equal(w, torch.eye(geom.d_in, dtype=w.dtype, device=w.device)):
            raise _C.InputError(f"argument 'tensors': expected the identity as 'weight' for {geom.kind} looked up by "
                                f"rows (the table is the base layer's own), got a {list(w.shape)} matrix that is not")
        return base.weight
    if geom.kind in ("Conv1D", "Embedding"):
        return w.t()
    if geom.grouping == "expanded":
        return take_groups(w, geom.groups).reshape(base.weight.shape)
    return w.reshape(base.weight.shape)


def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _group_of_output(geom: Geometry, device) -> torch.Tensor:
    """For each output channel, the group whose stacked row computes it: shape (1, 1, d_out)."""
    return _row_groups(geom.d_out, geom.groups, device).view(1, 1, -1)


def _patches(geom: Geometry, xb: torch.Tensor) -> torch.Tensor:
    """im2col of a batched input (N, C, *spatial): (N · positions, C · kernel volume), channel-major columns."""
    spatial = len(geom.kernel)
    pads = [p for i in reversed(range(spatial)) for p in (geom.padding[i], geom.padding[i])]
    xp = F.pad(xb, pads) if any(geom.padding) else xb
    for i in range(spatial):  # each unfold appends that axis's window as a trailing dimension
        xp = xp.unfold(2 + i, geom.dilation[i] * (geom.kernel[i] - 1) + 1, geom.stride[i])
        if geom.dilation[i] > 1:
            xp = xp[..., ::geom.dilation[i]]
    # (N, C, *out, *kernel) -> (N, *out, C, *kernel)
    order = (0, *range(2, 2 + spatial), 1, *range(2 + spatial, 2 + 2 * spatial))
    return xp.permute(order).reshape(-1, geom.in_channels * math.prod(geom.kernel))


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
        vocab = geom.table.shape[0] if geom.lookup == "rows" else geom.d_in
        if ids.numel() and bool(((ids < 0) | (ids >= vocab)).any()):  # one host sync
            raise _C.InputError(f"argument 'x': expected ids in [0, {vocab}), got values in "
                                f"[{int(ids.min())}, {int(ids.max())}]")
        if geom.lookup == "rows":  # nn.Embedding's own lookup (padding_idx: no gradient to that table row)
            rows = F.embedding(ids, geom.table, padding_idx=geom.padding_idx)
            return (rows if dtype is None else rows.to(dtype)), (*x.shape, geom.d_out)
        # built in the target dtype (F.one_hot would make an int64 (N, vocab) tensor first)
        rows = torch.zeros(ids.numel(), geom.d_in, dtype=dtype or torch.get_default_dtype(), device=x.device)
        return rows.scatter_(1, ids[:, None], 1), (*x.shape, geom.d_out)
    spatial = len(geom.kernel)
    if x.dim() not in (spatial + 1, spatial + 2) or x.shape[-spatial - 1] != geom.in_channels:
        raise _C.InputError(f"argument 'x': expected shape ([N,] {geom.in_channels}, {', '.join(['L'] * spatial)}) for "
                            f"{geom.kind}, got {list(x.shape)}")
    batched = x.dim() == spatial + 2
    xb = x if batched else x.unsqueeze(0)
    sizes = [_out_size(xb.shape[2 + i], geom.kernel[i], geom.stride[i], geom.padding[i], geom.dilation[i])
             for i in range(spatial)]
    if min(sizes) < 1:
        raise _C.InputError(f"argument 'x': spatial size {list(x.shape[-spatial:])} is smaller than the "
                            f"{geom.kind}'s dilated kernel {list(geom.kernel)} with padding {list(geom.padding)}")
    out_shape = (xb.shape[0], geom.d_out, *sizes) if batched else (geom.d_out, *sizes)
    # stacked groups: channel-major columns, so each position's row splits into its groups' rows
    return _patches(geom, xb).reshape(-1, geom.d_in), out_shape


def lift(geom: Geometry, y: torch.Tensor, out_shape: tuple) -> torch.Tensor:
    """The lowered output rows (M, d_out) in the layer's own output layout (channels second for convolutions)."""
    if not is_convolution(geom):
        return y.reshape(out_shape)
    if geom.grouping == "stacked" and geom.groups > 1:  # each output channel from its own group's row
        y = y.reshape(-1, geom.groups, geom.d_out)
        y = y.gather(1, _group_of_output(geom, y.device).expand(y.shape[0], 1, -1)).squeeze(1)
    batched = len(out_shape) == len(geom.kernel) + 2
    n = out_shape[0] if batched else 1
    spatial = out_shape[2:] if batched else out_shape[1:]
    out = y.reshape(n, -1, geom.d_out).transpose(1, 2).reshape(n, geom.d_out, *spatial)
    return out if batched else out[0]


def lower_grad(geom: Geometry, dy: torch.Tensor) -> torch.Tensor:
    """An output gradient in the layer's layout as lowered rows (M, d_out): the adjoint of lift."""
    if not is_convolution(geom):
        return dy.reshape(-1, geom.d_out)
    batched = dy.dim() == len(geom.kernel) + 2
    dyb = dy if batched else dy.unsqueeze(0)
    rows = dyb.reshape(dyb.shape[0], geom.d_out, -1).transpose(1, 2).reshape(-1, geom.d_out)
    if geom.grouping == "stacked" and geom.groups > 1:  # zero on the rows of the other groups
        index = _group_of_output(geom, rows.device).expand(rows.shape[0], 1, -1)
        rows = rows.new_zeros(rows.shape[0], geom.groups, geom.d_out).scatter_(1, index, rows[:, None])
        rows = rows.reshape(-1, geom.d_out)
    return rows


def input_grad(geom: Geometry, x: torch.Tensor, dX: torch.Tensor) -> torch.Tensor | None:
    """dL/dx from the lowered rows' gradient dX (M, d_in): the adjoint of ``lower`` — for a convolution the patches
    summed back into place (col2im, taken as the vector-Jacobian product of the unfolding, which is linear), a
    reshape otherwise. None for an Embedding (ids have no gradient)."""
    if geom.kind == "Embedding":
        return None
    if not is_convolution(geom):
        return dX.reshape(x.shape)
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        rows, _ = lower(geom, xr)
        return torch.autograd.grad(rows, xr, dX.to(rows.dtype))[0]


# The tensor PEFT's Embedding layer looks the ids up in (F.embedding with the base's padding_idx): its column
# padding_idx gets no gradient, as nn.Embedding's own row would not.
_LOOKUP_TABLE = {"lora": "lora_A", "dora": "lora_A"}


def padding_column(name: str, geom: Geometry) -> tuple[str, int] | None:
    """(tensor, column) whose gradient PEFT's lookup with padding_idx leaves at zero, or None."""
    if geom.kind != "Embedding" or geom.lookup != "one-hot" or geom.padding_idx is None or name not in _LOOKUP_TABLE:
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
    gradient, in the layer's own layouts (an expanded grouped tensor's in PEFT's grouped one)."""
    tdt = {"float64": torch.float64, "float32": torch.float32}.get(dtype, torch.float32)
    X, out_shape = lower(geom, x, tdt)
    out = _C.run_backend(name, backend, dtype, X.detach(), tensors, lower_grad(geom, dy), hp, naive=naive)
    out = dict(out)
    out["y"] = lift(geom, out["y"], out_shape)
    dx = input_grad(geom, x, out.pop("dx"))
    if dx is not None:
        out["dx"] = dx
    for key in expanded_tensors(name, geom):  # PEFT's grouped layout: each row's own group's block
        if "d " + key in out:
            out["d " + key] = take_groups(out["d " + key], geom.groups)
    pad = padding_column(name, geom)
    if pad and "d " + pad[0] in out:
        out["d " + pad[0]] = out["d " + pad[0]].clone()
        out["d " + pad[0]][..., pad[1]] = 0
    return out
