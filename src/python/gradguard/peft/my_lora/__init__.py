"""my_lora: template adapter (LoRA plus a trainable per-rank gate), registered with the stock PEFT."""

from .._registration import register_adapter
from .config import MyLoraConfig
from .layer import Linear, MyLoraLayer
from .model import MyLoraModel

__all__ = ["Linear", "MyLoraConfig", "MyLoraLayer", "MyLoraModel"]

# as PEFT's own tuners do in their __init__ (e.g. peft/tuners/lokr/__init__.py), but idempotent
register_adapter(name="my_lora", config_cls=MyLoraConfig, model_cls=MyLoraModel, prefix=MyLoraModel.prefix)
