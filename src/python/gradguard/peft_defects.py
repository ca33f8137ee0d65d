"""Defects of the pinned PEFT's own layers that gradguard has confirmed (finite differences in float64 decide). They
are declared once, in each adapter's registry entry (``AdapterInfo::peft_defects``); this module is their Python face.
Comparisons against PEFT mark the affected rows instead of failing, the goldens tests assert each defect still shows
(so a PEFT upgrade that fixes one is noticed), and tests that need PEFT's layer to be right use ``defect_free_hp``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import _C
from .registry import adapters, info


def known_peft_defects() -> list[dict]:
    """Every declared defect: adapter, tensor, avoid, reason, regression_test."""
    return [{"adapter": name, **d} for name in adapters() for d in info(name)["peft_defects"]]


def known_peft_defect(adapter: str, tensor: str, hp: dict) -> str | None:
    """The reason, when PEFT's value of ``tensor`` ("y", "dx", "d <name>") for ``adapter`` at the resolved ``hp`` is a
    confirmed PEFT defect."""
    return _C.known_peft_defect(adapter, tensor, hp)


def defect_free_hp(adapter: str, hp: dict) -> dict:
    """``hp`` moved out of every known PEFT defect of ``adapter`` that it falls into (checked per tensor)."""
    out = dict(hp)
    for d in info(adapter)["peft_defects"]:
        if _C.known_peft_defect(adapter, d["tensor"], out):
            out.update({k: type(out.get(k, v))(v) for k, v in d["avoid"].items()})
    return out


@dataclass(frozen=True)
class LayerDefect:
    """A defect that depends on the base layer's type or geometry, which the registry's hyper-parameters do not see."""
    adapter: str
    layer: str                                  # gradguard.layers type name
    applies: Callable[[object, str], bool]      # (the live PEFT layer, its adapter name)
    merged_is_right: bool                       # PEFT's merged layer computes the adapter's maths (a reference)
    reason: str                                 # with the regression test


def _dilated(layer) -> bool:
    return any(d != 1 for d in layer.get_base_layer().dilation)


def _grouped(layer) -> bool:
    return layer.get_base_layer().groups > 1


def _not_plain_square(layer, adapter: str) -> bool:
    """BOFT's and HRA's Conv2d forwards pass stride[0] and padding[0] and no dilation to F.conv2d."""
    base = layer.get_base_layer()
    return (any(d != 1 for d in base.dilation) or base.stride[0] != base.stride[1]
            or base.padding[0] != base.padding[1])


_LAYER_DEFECTS = [
    LayerDefect("lokr", "Conv1d", lambda layer, adapter: adapter in layer.lokr_w2, False,
                "confirmed PEFT defect: LoKr on Conv1d with an unfactored w2 builds ΔW as torch.kron(w1, w2) of a 2-D "
                "w1 and a 3-D w2 (make_kron unsqueezes w1 only for 4-D, Conv2d, kernels), which kron broadcasts as "
                "(1, a, c) ⊗ (b, d, k) and the reshape to (out, in, k) scrambles: not w1 ⊗ w2 over channels (its merge "
                "too); tests/python/test_peft_defects.py::test_known_peft_defect_lokr_conv1d_kron"),
    LayerDefect("lokr", "Conv1d", lambda layer, adapter: adapter in layer.lokr_t2 and layer.lokr_t2[adapter].shape[0] == 1,
                False,
                "confirmed PEFT defect: LoKr on Conv1d in the Tucker form (use_effective_conv2d) at r = 1 cannot run: "
                "its forward and merge raise RuntimeError in torch.kron, whose internal view rejects the einsum-built "
                "w2 (b, d, k, 1) with size-1 axes whose strides w2.contiguous() keeps; "
                "tests/python/test_peft_defects.py::test_known_peft_defect_lokr_conv1d_tucker_rank1"),
    LayerDefect("oft", "Conv2d", lambda layer, adapter: _grouped(layer), False,
                "confirmed PEFT defect: OFT accepts a grouped Conv2d but cannot merge it (it reshapes the grouped "
                "weight (out, in/groups·k·k) to (out, in·k·k) and raises), and its unmerged forward is the stride-1 "
                "patch fold below, so no PEFT value is a reference; gradguard rotates the expanded weight's rows; "
                "tests/python/test_peft_defects.py::test_known_peft_defect_oft_conv2d_forward"),
    LayerDefect("oft", "Conv2d", lambda layer, adapter: True, True,
                "confirmed PEFT defect: OFT's unmerged Conv2d forward rotates the input's patches unfolded with stride "
                "1 and no padding (whatever the convolution's own) and folds the overlapping patches back as a sum, "
                "which is not the rotated filter its merge builds (and not the identity at init); gradguard follows "
                "the merge; tests/python/test_peft_defects.py::test_known_peft_defect_oft_conv2d_forward"),
    *(LayerDefect(name, "Conv2d", _not_plain_square, True,
                  f"confirmed PEFT defect: {name.upper()}'s unmerged Conv2d forward calls F.conv2d with the base's "
                  f"stride[0] and padding[0] and without its dilation (its merge is right); tests/python/"
                  f"test_peft_defects.py::test_known_peft_defect_rotation_conv2d_geometry")
      for name in ("boft", "hra")),
    *(LayerDefect("dora", kind, lambda layer, adapter: _grouped(layer), False,
                  "confirmed PEFT defect: DoRA on a grouped convolution divides by the norm of a scrambled update: "
                  "get_lora_weight views the grouped lora_B (out, r/groups) as (-1, r) before the product with lora_A "
                  "and reshapes the result to the grouped weight's shape, so the weight norm is not that of the "
                  "layer's effective weight (W + s·B A per output channel; PEFT cannot merge it to compare); "
                  "tests/python/test_peft_defects.py::test_known_peft_defect_dora_grouped_conv_norm")
      for kind in ("Conv1d", "Conv2d", "Conv3d")),
    *(LayerDefect(name, kind, lambda layer, adapter, grouped=grouped: _dilated(layer) and _grouped(layer) == grouped,
                  not grouped,
                  "confirmed PEFT defect: LoRA's lora_A convolution is built without the base's dilation (an undilated "
                  "kernel; a shape error when the output lengths differ, wrong numbers when they agree; "
                  + ("PEFT cannot merge a grouped convolution, so no PEFT value is a reference" if grouped else
                     "the merge is right")
                  + "); tests/python/test_peft_defects.py::test_known_peft_defect_lora_conv_dilation")
      for name in ("lora", "dora") for kind in ("Conv1d", "Conv2d", "Conv3d") for grouped in (False, True)),
]


def known_layer_defect(adapter: str, kind: str, layer, peft_adapter: str) -> LayerDefect | None:
    """The confirmed PEFT defect of ``adapter``'s layer on this base layer type (``kind``, gradguard.layers) that
    applies to this live layer, or None."""
    for d in _LAYER_DEFECTS:
        if d.adapter == adapter and d.layer == kind and d.applies(layer, peft_adapter):
            return d
    return None
