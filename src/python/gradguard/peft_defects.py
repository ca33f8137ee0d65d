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
