"""Defects of the pinned PEFT's own layers that gradguard has confirmed (finite differences in float64 decide). They
are declared once, in each adapter's registry entry (``AdapterInfo::peft_defects``); this module is their Python face.
Comparisons against PEFT mark the affected rows instead of failing, the goldens tests assert each defect still shows
(so a PEFT upgrade that fixes one is noticed), and tests that need PEFT's layer to be right use ``defect_free_hp``."""
from __future__ import annotations

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


# Defects that depend on the base layer's type or geometry, which the registry's hyper-parameters do not see:
# (adapter, layer type, does it apply to this live PEFT layer, reason with its regression test).
_LAYER_DEFECTS = [
    ("lokr", "Conv1d", lambda layer, adapter: adapter in layer.lokr_w2,
     "confirmed PEFT defect: LoKr on Conv1d with an unfactored w2 builds ΔW as torch.kron(w1, w2) of a 2-D w1 and a "
     "3-D w2 (make_kron unsqueezes w1 only for 4-D, Conv2d, kernels), which kron broadcasts as (1, a, c) ⊗ (b, d, k) "
     "and the reshape to (out, in, k) scrambles: not w1 ⊗ w2 over channels; tests/python/test_peft_defects.py::"
     "test_known_peft_defect_lokr_conv1d_kron"),
    *((name, kind, lambda layer, adapter: any(d != 1 for d in layer.get_base_layer().dilation),
       "confirmed PEFT defect: LoRA's lora_A convolution is built without the base's dilation (an undilated kernel; a "
       "shape error when the output lengths differ, wrong numbers when they agree); tests/python/test_peft_defects.py::"
       "test_known_peft_defect_lora_conv_dilation")
      for name in ("lora", "dora") for kind in ("Conv1d", "Conv2d")),
]


def known_layer_defect(adapter: str, kind: str, layer, peft_adapter: str) -> str | None:
    """The reason, when PEFT's layer for ``adapter`` on this base layer type (``kind``, gradguard.layers) is a confirmed
    PEFT defect that depends on the layer itself."""
    for name, k, applies, why in _LAYER_DEFECTS:
        if name == adapter and k == kind and applies(layer, peft_adapter):
            return why
    return None
