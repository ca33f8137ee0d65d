"""gradguard.peft: gradguard's adapters as PEFT methods for the stock, pip-installed PEFT.

Importing this package imports every adapter package beside it (my_lora, weight_lora and any that
`gradguard new-adapter` wrote), each of which adds its ``PeftType`` member and registers its method, so that
``get_peft_model(model, MyLoraConfig(...))``, ``save_pretrained`` and ``PeftModel.from_pretrained`` work unchanged;
their configs, layers and models are exported here (``gradguard.peft.MyLoraConfig``). Importing it again (or
reloading) is harmless. Nothing here depends on the rest of gradguard.
"""

import importlib
import pkgutil

from ._registration import extend_peft_type, register_adapter

ADAPTER_PACKAGES: list[str] = sorted(m.name for m in pkgutil.iter_modules(__path__)
                                     if m.ispkg and not m.name.startswith("_"))

__all__ = ["ADAPTER_PACKAGES", "extend_peft_type", "register_adapter"]
for _name in ADAPTER_PACKAGES:
    _module = importlib.import_module(f".{_name}", __name__)
    for _export in getattr(_module, "__all__", ()):
        if _export != "Linear":  # every package has one; reach it as gradguard.peft.<name>.Linear
            globals()[_export] = getattr(_module, _export)
            __all__.append(_export)
del _name, _module, _export
