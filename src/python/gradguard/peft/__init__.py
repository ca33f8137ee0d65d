"""gradguard.peft: gradguard's adapters as PEFT methods for the stock, pip-installed PEFT.

Importing this package adds ``PeftType.MY_LORA`` / ``PeftType.WEIGHT_LORA`` and registers both methods, so that
``get_peft_model(model, MyLoraConfig(...))``, ``save_pretrained`` and ``PeftModel.from_pretrained`` work unchanged.
Importing it again (or reloading) is harmless. Nothing here depends on the rest of gradguard.
"""

from ._registration import extend_peft_type, register_adapter
from .my_lora import MyLoraConfig, MyLoraLayer, MyLoraModel
from .weight_lora import WeightLoraConfig, WeightLoraLayer, WeightLoraModel

__all__ = [
    "MyLoraConfig",
    "MyLoraLayer",
    "MyLoraModel",
    "WeightLoraConfig",
    "WeightLoraLayer",
    "WeightLoraModel",
    "extend_peft_type",
    "register_adapter",
]
