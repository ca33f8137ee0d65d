"""WeightLoraModel: the tuner PEFT builds for PeftType.WEIGHT_LORA."""

from __future__ import annotations

from .._common import LowRankTuner
from .layer import Linear, WeightLoraLayer


class WeightLoraModel(LowRankTuner):
    """Replaces the targeted nn.Linear modules by weight_lora ``Linear`` layers.

    ``prefix`` is the start of every adapter parameter name (weight_lora_A/_B/_w); PEFT uses it to find the adapted
    modules in a state dict and to filter missing keys on load.
    """

    prefix: str = "weight_lora_"
    tuner_layer_cls = WeightLoraLayer
    linear_cls = Linear
