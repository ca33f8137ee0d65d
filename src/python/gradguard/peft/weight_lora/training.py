"""weight_lora's training extra (the WeightLoRA recipe): keep only K adapters alive.

After every optimizer step the vector of scalar gates ``weight_lora_w.<adapter>`` (one per adapted layer, across the
whole model) is projected onto the K-sparse set: the K gates of largest absolute value keep their value, every other
gate is set to exactly 0, in place. A zeroed gate switches its layer's adapter off (dW = scaling * w * A @ B = 0) and
its A and B then get exactly zero gradients; the gate itself still gets a gradient, so the next step may move it back
into the top K.

    model = get_peft_model(base, WeightLoraConfig(r=4, target_modules=[...]))
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[WeightLoraTopKCallback(k=4)])

The optimizer's state (e.g. Adam moments) of a zeroed gate is left as it is. Imports only torch (and, for the
callback's base class, transformers if it is installed).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
from torch import nn

from .layer import WeightLoraLayer

try:  # the callback base class; project_top_k itself does not need transformers
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - transformers is a dependency of the pinned environment
    TrainerCallback = object

GATE = "weight_lora_w"


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"argument 'k': expected a positive integer (the number of weight_lora gates to keep), "
                         f"got {k!r}")
    return int(k)


def _check_adapter_name(adapter_name) -> None:
    if adapter_name is not None and not isinstance(adapter_name, str):
        raise ValueError(f"argument 'adapter_name': expected an adapter name (str) or None for the active adapters, "
                         f"got {adapter_name!r}")


def weight_lora_gates(model: nn.Module, adapter_name: Optional[str] = None) -> dict[str, nn.Parameter]:
    """The gates ``project_top_k`` works on, by parameter name (as in ``model.named_parameters()``), in model order:
    those of adapter ``adapter_name`` (active or not), or with None those of each layer's active adapters."""
    _check_adapter_name(adapter_name)
    gates: dict[str, nn.Parameter] = {}
    for lname, layer in model.named_modules():
        if not isinstance(layer, WeightLoraLayer):
            continue
        container = getattr(layer, GATE)
        for adapter in ([adapter_name] if adapter_name is not None else list(layer.active_adapters)):
            if adapter in container:
                gates[f"{lname}.{GATE}.{adapter}" if lname else f"{GATE}.{adapter}"] = container[adapter]
    return gates


def project_top_k(model: nn.Module, k: int, adapter_name: Optional[str] = None) -> list[str]:
    """Keep the ``k`` weight_lora gates of largest |w| and set every other one to exactly 0 (in place, no autograd).

    The gates are those of ``weight_lora_gates(model, adapter_name)``: each layer's active adapter(s) by default, the
    adapter named ``adapter_name`` otherwise; gates of other adapters are never touched. Ties in |w| are broken by
    parameter name (string order), so the result does not depend on module order. ``k`` at least the number of gates
    keeps all of them (nothing is zeroed). Returns the names of the kept gates, in model order.

    Raises ValueError for a ``k`` that is not a positive integer, a model with no (matching) weight_lora gate, a gate
    that is not a scalar, and a non-finite gate (a diverged run: no ranking is meaningful then).
    """
    k = _check_k(k)
    gates = weight_lora_gates(model, adapter_name)
    if not gates:
        which = f"of adapter {adapter_name!r}" if adapter_name is not None else "of an active adapter"
        raise ValueError(f"project_top_k: the model ({type(model).__name__}) has no weight_lora gate ({GATE}) "
                         f"{which}: apply a WeightLoraConfig with get_peft_model first")
    size: dict[str, float] = {}
    for name, w in gates.items():
        if w.numel() != 1:
            raise ValueError(f"project_top_k: gate `{name}` has shape {tuple(w.shape)}; expected a scalar")
        value = float(w.detach().float())
        if not math.isfinite(value):
            raise ValueError(f"project_top_k: gate `{name}` is {value}; cannot rank non-finite gates")
        size[name] = abs(value)
    kept = set(sorted(size, key=lambda n: (-size[n], n))[:k])
    with torch.no_grad():
        for name, w in gates.items():
            if name not in kept:
                w.zero_()
    return [n for n in gates if n in kept]


# A Trainer that has the on_optimizer_step event (transformers 5.x does) calls it right after optimizer.step(), before
# the scheduler step, zero_grad and on_step_end; without it, on_step_end still runs before the next forward.
_HAS_OPTIMIZER_STEP_HOOK = hasattr(TrainerCallback, "on_optimizer_step")


class WeightLoraTopKCallback(TrainerCallback):
    """transformers.Trainer callback: ``project_top_k(model, k, adapter_name)`` after every optimizer step.

    ``history`` holds ``(step, kept gate names)`` per projection, ``step`` being the number of optimizer steps done
    (1 after the first). Nothing is projected before the first step.

    ``warmup_steps`` (default 0): project only after optimizer steps ``warmup_steps + 1, ...``. With weight_lora's
    default init (B = 0) the gates get an exactly zero gradient in the first step, so after it every gate is still
    1 and the first projection is decided by the name tie-break alone; a few warm-up steps let the gates differ first.
    """

    def __init__(self, k: int, adapter_name: Optional[str] = None, warmup_steps: int = 0):
        self.k = _check_k(k)
        _check_adapter_name(adapter_name)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) or warmup_steps < 0:
            raise ValueError(f"argument 'warmup_steps': expected a non-negative integer, got {warmup_steps!r}")
        self.adapter_name = adapter_name
        self.warmup_steps = int(warmup_steps)
        self.history: list[tuple[int, list[str]]] = []

    def _project(self, step: int, model) -> None:
        if step <= self.warmup_steps:
            return
        if model is None:
            raise ValueError("WeightLoraTopKCallback: the Trainer passed no model to the callback")
        self.history.append((step, project_top_k(model, self.k, self.adapter_name)))

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        self._project(state.global_step + 1, model)  # global_step counts this step only after the hook

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not _HAS_OPTIMIZER_STEP_HOOK:
            self._project(state.global_step, model)
