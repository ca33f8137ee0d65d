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


def _import_adapters() -> None:
    for name in ADAPTER_PACKAGES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except Exception as e:  # name the package: one broken adapter must not be a mystery for all the others
            raise ImportError(f"gradguard.peft.{name} (src/python/gradguard/peft/{name}/) failed to import: "
                              f"{type(e).__name__}: {e}") from e
        for export in getattr(module, "__all__", ()):
            if export != "Linear":  # every package has one; reach it as gradguard.peft.<name>.Linear
                globals()[export] = getattr(module, export)
                __all__.append(export)


_import_adapters()
