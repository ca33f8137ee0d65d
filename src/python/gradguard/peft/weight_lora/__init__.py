"""weight_lora: the user's PEFT-fork adapter (LoRA with a learnable scalar gate), registered with the stock PEFT."""

from .._registration import register_adapter
from .config import WeightLoraConfig
from .layer import Linear, WeightLoraLayer
from .model import WeightLoraModel
from .training import WeightLoraTopKCallback, project_top_k, weight_lora_gates

__all__ = [
    "Linear",
    "WeightLoraConfig",
    "WeightLoraLayer",
    "WeightLoraModel",
    "WeightLoraTopKCallback",
    "project_top_k",
    "weight_lora_gates",
]

# as PEFT's own tuners do in their __init__ (e.g. peft/tuners/lokr/__init__.py), but idempotent
register_adapter(
    name="weight_lora", config_cls=WeightLoraConfig, model_cls=WeightLoraModel, prefix=WeightLoraModel.prefix
)
