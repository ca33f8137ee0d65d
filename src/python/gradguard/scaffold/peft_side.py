"""The PEFT side of a scaffolded adapter: a package with __init__.py, config.py (<Camel>Config), layer.py
(<Camel>Layer and Linear) and model.py (<Camel>Model) on the shared LoRA-family base (gradguard/peft/_common.py).

Two flavours of the same files: in gradguard's tree (src/python/gradguard/peft/<name>/, registered with the stock
pip-installed PEFT at import, no fork), or inside a PEFT source checkout (src/peft/tuners/<name>/, registered as
PEFT's own tuners are, with the base copied beside it as _lowrank.py so the fork does not depend on gradguard)."""
from __future__ import annotations

from string import Template

from .spec import AdapterDesc, TensorDesc

_PY_SIZE = {"d_in": "self.in_features", "d_out": "self.out_features", "r": "r"}
_PY_INIT = {"zeros": "nn.init.zeros_({p})", "ones": "nn.init.ones_({p})",
            "kaiming": "nn.init.kaiming_uniform_({p}, a=math.sqrt(5))", "normal": "nn.init.normal_({p}, std=0.02)"}


def _py_shape(t: TensorDesc) -> str:
    if not t.shape:
        return "()"
    return "(" + ", ".join(_PY_SIZE.get(s, s) for s in t.shape) + ("," if len(t.shape) == 1 else "") + ")"


INIT_PY = Template('''\
"""$name: scaffolded by `gradguard new-adapter`;
$registered"""

$register_import
from .config import ${camel}Config
from .layer import $layer_imports
from .model import ${camel}Model

__all__ = ["Linear", "${camel}Config", "${camel}Layer", "${camel}Model"]

$register_call
''')

CONFIG_PY = Template('''\
"""${camel}Config: LoraConfig's arguments (r, lora_alpha, target_modules, lora_dropout, use_rslora, ...), PEFT type
$peft_type."""

from __future__ import annotations

from dataclasses import dataclass

from peft.tuners.lora import LoraConfig
from peft.utils.peft_types import PeftType

$base_import
$extend


@dataclass
class ${camel}Config(LoraConfig):
    """Configuration of a :class:`${camel}Model`. LoRA-variant options (use_dora, lora_bias, ...) are refused."""

    def __post_init__(self):
        super().__post_init__()  # LoraConfig's checks; it sets peft_type = LORA ...
        self.peft_type = PeftType.$peft_type  # ... and PEFT dispatches on this value
        check_lora_options(self)
''')

LAYER_PY = Template('''\
"""$name layers (scaffolded by `gradguard new-adapter`): y = base(x) + the adapter's term. Write _delta_output and
_delta_weight; the rest (per-adapter bookkeeping, dropout, merge/unmerge, the forward over the active adapters) is
the shared LoRA-family base's."""

from __future__ import annotations

${math_import}import torch
from torch import nn

$base_import


class ${camel}Layer(LowRankLayer):
    """Trainable tensors (nn.ParameterDict per tensor, state-dict keys ``...<tensor>.<adapter>``):
$tensor_doc
    """

    adapter_layer_names = $containers
    other_param_names = ("r", "lora_alpha", "scaling", "use_rslora", "${name}_dropout")
    dropout_name = "${name}_dropout"

    def _new_container(self, name: str) -> nn.Module:
        return nn.ParameterDict({})

    def _create_adapter(self, adapter_name: str, r: int) -> None:
$create

    def _reset_adapter(self, adapter_name: str, init_weights: bool) -> None:
        # init_weights=True: PEFT's default init. False: every tensor random, so that no factor is zero (the checks
        # that compare implementations need every term non-degenerate).
$reset

    def _delta_output(self, x: torch.Tensor, t: dict[str, torch.Tensor], scaling: float) -> torch.Tensor:
        """The adapter's additive output (..., out_features) for the dropped-out input x (..., in_features); t maps
        each tensor name to this adapter's tensor. Keep it low rank: never form a dense delta weight here."""
        raise NotImplementedError("not implemented: $name forward (peft): write _delta_output in "
                                  "$layer_path")

    def _delta_weight(self, t: dict[str, torch.Tensor], scaling: float) -> torch.Tensor:
        """The dense delta weight (out_features, in_features), for merging."""
        raise NotImplementedError("not implemented: $name delta weight (peft): write _delta_weight "
                                  "in $layer_path")


class Linear(${camel}Layer, nn.Module):
    """$name wrapper around an nn.Linear (the layer mixin first, so that its forward and __repr__ win)."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, config, r: int = 8, lora_alpha: float = 8, **kwargs):
        nn.Module.__init__(self)
        ${camel}Layer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, r, lora_alpha, config)
''')

MODEL_PY = Template('''\
"""${camel}Model: the tuner PEFT builds for PeftType.$peft_type."""

from __future__ import annotations

$base_import
from .layer import $layer_imports


class ${camel}Model(LowRankTuner):
    """Replaces the targeted nn.Linear modules by $name ``Linear`` layers.

    ``prefix`` starts every adapter tensor's name: PEFT keeps trainable only parameters whose name contains it and
    finds the adapted modules of a saved state dict by it.
    """

    prefix: str = "$prefix"
    tuner_layer_cls = ${camel}Layer
    linear_cls = Linear
''')


def peft_files(desc: AdapterDesc, folder: str, fork: bool) -> dict[str, str]:
    """Relative path (under ``folder``) -> text. ``fork``: the flavour for a PEFT source checkout."""
    base = "._lowrank" if fork else ".._common"
    layer_path = f"{folder}/layer.py"
    create = "\n".join(f"        self.{t.name}[adapter_name] = nn.Parameter(torch.empty({_py_shape(t)}))"
                       for t in desc.tensors)
    reset_lines = []
    for t in desc.tensors:
        p = f"self.{t.name}[adapter_name]"
        default = _PY_INIT[t.init].format(p=p)
        if t.init == "zeros":
            reset_lines += ["        if init_weights:", f"            {default}", "        else:",
                            f"            nn.init.normal_({p}, std=0.02)"]
        else:
            reset_lines.append(f"        {default}")
    tensor_doc = "\n".join(f"      {t.name}: {t.words}, init {t.init}" for t in desc.tensors)
    containers = "(" + ", ".join(f'"{t.name}"' for t in desc.tensors) + ("," if len(desc.tensors) == 1 else "") + ")"
    # isort's order (the linter's I001): the two class names sorted as strings
    layer_imports = ", ".join(sorted(["Linear", f"{desc.camel}Layer"]))
    common = dict(name=desc.name, camel=desc.camel, peft_type=desc.peft_type, prefix=desc.prefix,
                  layer_imports=layer_imports)
    if fork:
        registered = "registered with PEFT as its own tuners are."
        register_import = "from peft.utils import register_peft_method"
        register_call = (f'register_peft_method(\n    name="{desc.name}",\n    config_cls={desc.camel}Config,\n'
                         f"    model_cls={desc.camel}Model,\n    prefix={desc.camel}Model.prefix,\n)")
        extend = ""
    else:
        registered = "registered with the stock, pip-installed PEFT on import (no fork)."
        register_import = "from .._registration import register_adapter"
        register_call = (f'register_adapter(\n    name="{desc.name}",\n    config_cls={desc.camel}Config,\n'
                         f"    model_cls={desc.camel}Model,\n    prefix={desc.camel}Model.prefix,\n)")
        extend = ("from .._registration import extend_peft_type\n\n"
                  "# The enum member must exist before any config is built (and before PEFT's registration checks\n"
                  "# it).\n"
                  f'extend_peft_type("{desc.peft_type}")')
    return {
        f"{folder}/__init__.py": INIT_PY.substitute(common, registered=registered, register_import=register_import,
                                                    register_call=register_call),
        f"{folder}/config.py": _tidy(CONFIG_PY.substitute(common, base_import=f"from {base} import check_lora_options",
                                                          extend=extend)),
        f"{folder}/layer.py": LAYER_PY.substitute(common, base_import=f"from {base} import LowRankLayer",
                                                  tensor_doc=tensor_doc, containers=containers, create=create,
                                                  reset="\n".join(reset_lines), layer_path=layer_path,
                                                  math_import="import math\n\n" if any(t.init == "kaiming"
                                                                                        for t in desc.tensors) else ""),
        f"{folder}/model.py": MODEL_PY.substitute(common, base_import=f"from {base} import LowRankTuner"),
    }


def _tidy(text: str) -> str:
    """No run of more than two blank lines (an empty substitution leaves one)."""
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return text
