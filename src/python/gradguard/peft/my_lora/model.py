"""MyLoraModel: the tuner PEFT builds for PeftType.MY_LORA."""

from __future__ import annotations

from .._common import LowRankTuner
from .layer import Linear, MyLoraLayer


class MyLoraModel(LowRankTuner):
    """Replaces the targeted nn.Linear modules by my_lora ``Linear`` layers.

    ``prefix`` must equal the start of the adapter parameter names: PEFT uses it to find the adapted modules in a
    state dict (``key.rsplit(".lora_")``) and to filter missing keys on load. It is "lora_" like LoRA because the
    parameter names are LoRA's (lora_A, lora_B) plus lora_gate.
    """

    prefix: str = "lora_"
    tuner_layer_cls = MyLoraLayer
    linear_cls = Linear
