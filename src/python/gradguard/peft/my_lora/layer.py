"""my_lora layers: y = base(x) + scaling * lora_B((lora_A(dropout(x))) * lora_gate)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .._common import LowRankLayer


class MyLoraLayer(LowRankLayer):
    """LoRA with a trainable per-rank gate g (shape (r,)): dW = scaling * B @ diag(g) @ A.

    Parameter names mirror LoRA (``lora_A``/``lora_B`` are nn.Linear in ModuleDicts, state-dict keys
    ``...lora_A.<adapter>.weight``) plus ``lora_gate.<adapter>``. Construction and initialisation draw random
    numbers in the same order as PEFT LoRA, so with the same seed A (and, for init_lora_weights=False, B) equal
    PEFT LoRA's.
    """

    adapter_layer_names = ("lora_A", "lora_B", "lora_gate")
    other_param_names = ("r", "lora_alpha", "scaling", "use_rslora", "lora_dropout")
    dropout_name = "lora_dropout"

    def _new_container(self, name: str) -> nn.Module:
        return nn.ParameterDict({}) if name == "lora_gate" else nn.ModuleDict({})

    def _create_adapter(self, adapter_name: str, r: int) -> None:
        self.lora_A[adapter_name] = nn.Linear(self.in_features, r, bias=False)
        self.lora_B[adapter_name] = nn.Linear(r, self.out_features, bias=False)
        self.lora_gate[adapter_name] = nn.Parameter(torch.ones(r))

    def _reset_adapter(self, adapter_name: str, init_weights: bool) -> None:
        # True: as PEFT LoRA (A kaiming-uniform, B = 0 -> identity at init). False: keep nn.Linear's default init,
        # i.e. B is non-zero too, exactly like PEFT LoRA's init_lora_weights=False. The gate starts at 1 either way.
        if init_weights:
            nn.init.kaiming_uniform_(self.lora_A[adapter_name].weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[adapter_name].weight)
        nn.init.ones_(self.lora_gate[adapter_name])

    def _delta_output(self, x, t, scaling):
        return F.linear(F.linear(x, t["lora_A"]) * t["lora_gate"], t["lora_B"]) * scaling

    def _delta_weight(self, t, scaling):
        return (t["lora_B"] * t["lora_gate"]) @ t["lora_A"] * scaling  # B diag(g) A


class Linear(MyLoraLayer, nn.Module):
    """my_lora wrapper around an nn.Linear.

    The layer mixin comes first in the bases so that its ``forward``/``__repr__`` win over nn.Module's (PEFT
    writes ``(nn.Module, LoraLayer)`` and re-defines them in every layer class instead).
    """

    def __init__(self, base_layer: nn.Module, adapter_name: str, config, r: int = 8, lora_alpha: float = 8, **kwargs):
        nn.Module.__init__(self)
        MyLoraLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, r, lora_alpha, config)
