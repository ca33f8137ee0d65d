"""weight_lora layers: y = base(x) + (scaling * w) * ((dropout(x) @ A) @ B), A (d_in, r), B (r, d_out), w scalar."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._common import LowRankLayer


class WeightLoraLayer(LowRankLayer):
    """The user's fork: LoRA with a learnable scalar gate w per layer; dW = scaling * w * (A @ B).T.

    Parameters are plain tensors in ParameterDicts, stored "input-major" (A: (d_in, r), B: (r, d_out)), with
    state-dict keys ``...weight_lora_A.<adapter>``, ``...weight_lora_B.<adapter>``, ``...weight_lora_w.<adapter>``.
    The forward stays low rank; only ``get_delta_weight`` (merging) forms the dense d_out x d_in matrix.
    """

    adapter_layer_names = ("weight_lora_A", "weight_lora_B", "weight_lora_w")
    other_param_names = ("r", "lora_alpha", "scaling", "use_rslora", "weight_lora_dropout")
    dropout_name = "weight_lora_dropout"

    def _new_container(self, name: str) -> nn.Module:
        return nn.ParameterDict({})

    def _create_adapter(self, adapter_name: str, r: int) -> None:
        self.weight_lora_A[adapter_name] = nn.Parameter(torch.empty(self.in_features, r))
        self.weight_lora_B[adapter_name] = nn.Parameter(torch.empty(r, self.out_features))
        self.weight_lora_w[adapter_name] = nn.Parameter(torch.tensor(1.0))

    def _reset_adapter(self, adapter_name: str, init_weights: bool) -> None:
        # As in the fork: kaiming_uniform_(a=sqrt(5)) on the (d_in, r) tensor itself, so torch's fan_in is r
        # (not d_in as for LoRA's (r, d_in) lora_A). B = 0 gives identity at init; init_lora_weights=False draws
        # B the same way (fan_in = d_out) so every term is non-degenerate. w = 1.
        nn.init.kaiming_uniform_(self.weight_lora_A[adapter_name], a=math.sqrt(5))
        if init_weights:
            nn.init.zeros_(self.weight_lora_B[adapter_name])
        else:
            nn.init.kaiming_uniform_(self.weight_lora_B[adapter_name], a=math.sqrt(5))
        nn.init.ones_(self.weight_lora_w[adapter_name])

    def _delta_output(self, x, t, scaling):
        return ((x @ t["weight_lora_A"]) @ t["weight_lora_B"]) * (scaling * t["weight_lora_w"])

    def _delta_weight(self, t, scaling):
        return (t["weight_lora_A"] @ t["weight_lora_B"]).T * (scaling * t["weight_lora_w"])


class Linear(WeightLoraLayer, nn.Module):
    """weight_lora wrapper around an nn.Linear.

    The layer mixin comes first in the bases so that its ``forward``/``__repr__`` win over nn.Module's (PEFT
    writes ``(nn.Module, LoraLayer)`` and re-defines them in every layer class instead).
    """

    def __init__(self, base_layer: nn.Module, adapter_name: str, config, r: int = 8, lora_alpha: float = 8, **kwargs):
        nn.Module.__init__(self)
        WeightLoraLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, r, lora_alpha, config)
