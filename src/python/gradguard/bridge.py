"""PEFT <-> gradguard: read a live PEFT layer into registry tensors (``from_peft``), build PEFT's own layer for an
adapter (``make_peft_layer``) and load registry tensors into it (``load_into_peft``).

The tensor mapping comes from the registry (each tensor's ``peft_key``); the only per-adapter knowledge here is which
PEFT config and layer class implement it, in ``_PEFT_SIDE``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import _C
from .registry import info


@dataclass(frozen=True)
class _PeftSide:
    config: Callable[..., object]      # (resolved hp, **PEFT config kwargs) -> PEFT config
    layer: Callable[[], type]          # the PEFT layer class (imported lazily)
    matches: Callable[[nn.Module, str], bool]
    # Why PEFT cannot express these hyper-parameters (None when it can).
    unsupported: Callable[[dict], str | None] = lambda hp: None


def _lora_config(hp: dict, use_dora: bool, **extra):
    from peft import LoraConfig

    return LoraConfig(r=hp["r"], lora_alpha=hp["lora_alpha"], use_rslora=hp["use_rslora"], use_dora=use_dora,
                      lora_bias=hp.get("lora_bias", False), lora_dropout=0.0, **extra)


def _lora_layer():
    from peft.tuners.lora import Linear

    return Linear


def _is_peft_lora(layer: nn.Module, adapter: str, dora: bool) -> bool:
    from peft.tuners.lora import Linear

    if type(layer) is not Linear:
        return False
    return bool(layer.use_dora.get(adapter, False)) == dora


def _gg_config(cls_name: str):
    def make(hp: dict, **extra):
        import gradguard.peft as ggpeft

        return getattr(ggpeft, cls_name)(r=hp["r"], lora_alpha=hp["lora_alpha"], use_rslora=hp["use_rslora"],
                                         lora_dropout=0.0, **extra)
    return make


def _gg_layer(module: str):
    def cls():
        import importlib

        return importlib.import_module(f"gradguard.peft.{module}.layer").Linear
    return cls


_PEFT_SIDE: dict[str, _PeftSide] = {
    "lora": _PeftSide(lambda hp, **kw: _lora_config(hp, False, **kw), _lora_layer,
                      lambda l, a: _is_peft_lora(l, a, False)),
    "dora": _PeftSide(lambda hp, **kw: _lora_config(hp, True, **kw), _lora_layer,
                      lambda l, a: _is_peft_lora(l, a, True),
                      lambda hp: ("PEFT implements only DoRA's detached-norm gradient (paper §4.3), not "
                                  "exact_gradient=True") if hp.get("exact_gradient") else None),
    "weight_lora": _PeftSide(_gg_config("WeightLoraConfig"), _gg_layer("weight_lora"),
                             lambda l, a: type(l) is _gg_layer("weight_lora")()),
    "my_lora": _PeftSide(_gg_config("MyLoraConfig"), _gg_layer("my_lora"),
                         lambda l, a: type(l) is _gg_layer("my_lora")()),
}


def peft_supported(name: str) -> bool:
    return name in _PEFT_SIDE


def peft_unsupported_reason(name: str, hp: dict) -> str | None:
    """None when PEFT has a layer for ``name`` that implements these hyper-parameters, else why not."""
    if name not in _PEFT_SIDE:
        return f"PEFT has no layer for '{name}'"
    return _PEFT_SIDE[name].unsupported(hp)


def peft_config(name: str, hp: dict, d_in: int = 32, d_out: int = 32, **config_kwargs):
    """The PEFT config that applies adapter ``name`` with these hyper-parameters (e.g. for get_peft_model);
    ``config_kwargs`` go to the config (target_modules, init_lora_weights, ...)."""
    if name not in _PEFT_SIDE:
        raise _C.InputError(f"argument 'adapter': expected one with a PEFT layer ({sorted(_PEFT_SIDE)}), got '{name}'")
    return _PEFT_SIDE[name].config(_C.resolve_hyper(name, d_in, d_out, hp), **config_kwargs)


def make_peft_layer(name: str, base: nn.Linear, hp: dict, adapter: str = "default") -> nn.Module:
    """PEFT's own layer for adapter ``name`` around ``base`` (nn.Linear), with PEFT's default init."""
    if name not in _PEFT_SIDE:
        raise _C.InputError(f"argument 'adapter': expected one with a PEFT layer ({sorted(_PEFT_SIDE)}), got '{name}'")
    hp = _C.resolve_hyper(name, base.in_features, base.out_features, hp)
    side = _PEFT_SIDE[name]
    config = side.config(hp, init_lora_weights=True)
    return side.layer()(base, adapter, config=config, r=hp["r"], lora_alpha=hp["lora_alpha"],
                        use_rslora=hp["use_rslora"], use_dora=getattr(config, "use_dora", False),
                        lora_bias=hp.get("lora_bias", False), lora_dropout=0.0, init_lora_weights=True)


def _peft_tensor(layer: nn.Module, key: str) -> torch.Tensor | None:
    state = dict(layer.named_parameters())
    state.update(dict(layer.named_buffers()))
    return state.get(key)


def _active_adapter(layer: nn.Module) -> str:
    adapters = getattr(layer, "active_adapters", None) if hasattr(layer, "get_base_layer") else None
    if not adapters:
        raise _C.InputError(f"argument 'layer': expected a PEFT tuner layer with an active adapter, got "
                            f"{type(layer).__module__}.{type(layer).__name__}")
    return adapters[0]


def _identify(layer: nn.Module, adapter: str) -> str:
    for name, side in _PEFT_SIDE.items():
        try:
            if side.matches(layer, adapter):
                return name
        except ImportError:
            continue
    raise _C.InputError(
        f"argument 'layer': expected a PEFT layer of a registered adapter ({sorted(_PEFT_SIDE)}) around nn.Linear, "
        f"got {type(layer).__module__}.{type(layer).__name__}")


def _hyper_from_layer(name: str, layer: nn.Module, adapter: str) -> dict:
    r = int(layer.r[adapter])
    alpha = float(layer.lora_alpha[adapter])
    scaling = float(layer.scaling[adapter])
    hp = {"r": r, "lora_alpha": alpha,
          # PEFT keeps only the resulting scaling; rsLoRA is recognised by it (identical to plain LoRA when r = 1).
          "use_rslora": r != 1 and math.isclose(scaling, alpha / math.sqrt(r), rel_tol=1e-12)}
    names = {h["name"] for h in info(name)["hyper"]}
    if "lora_bias" in names:
        hp["lora_bias"] = bool(getattr(layer, "lora_bias", {}).get(adapter, False))
    if "exact_gradient" in names:
        hp["exact_gradient"] = False  # PEFT's semantics: the weight norm is detached
    return hp


def from_peft(layer: nn.Module, adapter: str | None = None) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """Read a live PEFT layer: ``(adapter name in the registry, hyper-parameters, {tensor name: tensor})``.

    Tensors are detached views of the layer's own parameters, reshaped to the registry's shapes; the base bias is
    zeros when the base layer has none.
    """
    adapter = adapter or _active_adapter(layer)
    name = _identify(layer, adapter)
    hp = _hyper_from_layer(name, layer, adapter)
    base = layer.get_base_layer()
    shapes = _C.tensor_shapes(name, base.in_features, base.out_features, hp)
    tensors = {}
    for spec in info(name)["tensors"]:
        if spec["name"] not in shapes:
            continue
        t = _peft_tensor(layer, spec["peft_key"].replace("{adapter}", adapter))
        if t is None and spec["name"] == "bias":
            t = torch.zeros(base.out_features, dtype=base.weight.dtype, device=base.weight.device)
        if t is None:
            raise _C.InputError(f"argument 'layer': expected PEFT tensor '{spec['peft_key']}' for {name}, not found")
        tensors[spec["name"]] = t.detach().reshape(shapes[spec["name"]])
    return name, hp, tensors


def load_into_peft(layer: nn.Module, tensors: dict[str, torch.Tensor], adapter: str | None = None) -> None:
    """Copy registry tensors (e.g. a seeded case) into a PEFT layer's parameters, in place."""
    adapter = adapter or _active_adapter(layer)
    name = _identify(layer, adapter)
    with torch.no_grad():
        for spec in info(name)["tensors"]:
            if spec["name"] not in tensors:
                continue
            t = _peft_tensor(layer, spec["peft_key"].replace("{adapter}", adapter))
            if t is None:
                raise _C.InputError(f"argument 'layer': the PEFT layer has no '{spec['peft_key']}' for {spec['name']}")
            t.copy_(tensors[spec["name"]].reshape(t.shape))
