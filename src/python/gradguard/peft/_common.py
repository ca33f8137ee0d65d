"""Code shared by gradguard's out-of-tree LoRA-style adapters (my_lora, weight_lora).

Both adapters add a low-rank term to a frozen ``nn.Linear``: ``y = base(x) + delta(dropout(x))``.
``LowRankLayer`` holds PEFT's per-adapter bookkeeping (r, alpha, scaling, dropout), merge/unmerge and the forward
loop over the active adapters; a subclass only says which tensors exist, how they are initialised and what the
additive output / dense delta weight is. ``LowRankTuner`` is the matching ``BaseTuner``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Optional

import torch
from peft.tuners.lora import LoraConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, check_adapters_to_merge
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from peft.utils.other import get_pattern_key
from torch import nn

# LoraConfig options that belong to LoRA variants / integrations these adapters do not implement. They are
# rejected instead of being silently ignored (only names present in the installed LoraConfig are checked).
UNSUPPORTED_LORA_OPTIONS = (
    "use_dora", "lora_bias", "fan_in_fan_out", "target_parameters", "layer_replication", "megatron_config",
    "eva_config", "corda_config", "lora_ga_config", "velora_config", "alora_invocation_tokens", "use_qalora",
    "monteclora_config", "use_bdlora", "arrow_config", "kasa_config", "trainable_token_indices",
    "ensure_weight_tying",
)


def check_lora_options(config: LoraConfig) -> None:
    """Raise ValueError for LoraConfig options the adapter of ``config`` cannot honour."""
    name = type(config).__name__
    if not isinstance(config.init_lora_weights, bool):
        raise ValueError(f"{name} supports init_lora_weights=True/False only, got {config.init_lora_weights!r}")
    for field in dataclasses.fields(LoraConfig):
        if field.name not in UNSUPPORTED_LORA_OPTIONS:
            continue
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        if getattr(config, field.name) != default:
            raise ValueError(f"{name} does not support {field.name}={getattr(config, field.name)!r}")


class LowRankLayer(BaseTunerLayer):
    """Per-adapter state and Linear maths shared by my_lora and weight_lora layers.

    Subclasses set ``adapter_layer_names`` (the trainable per-adapter containers, read by PEFT and by gradguard's
    flow checker), ``dropout_name`` and implement ``_create_adapter``, ``_reset_adapter``, ``_delta_output`` and
    ``_delta_weight``. The containers are keyed by adapter name, so state-dict keys look like
    ``...q_proj.<container>.<adapter>[.weight]``.
    """

    dropout_name: str  # attribute holding the nn.ModuleDict of per-adapter input dropouts

    def __init__(self, base_layer: nn.Module, **kwargs) -> None:
        if not isinstance(base_layer, nn.Linear):
            raise ValueError(
                f"{type(self).__name__} wraps torch.nn.Linear only, got {type(base_layer).__module__}."
                f"{type(base_layer).__qualname__}"
            )
        self.base_layer = base_layer
        self.r: dict[str, int] = {}
        self.lora_alpha: dict[str, float] = {}
        self.scaling: dict[str, float] = {}
        self.use_rslora: dict[str, bool] = {}
        setattr(self, self.dropout_name, nn.ModuleDict({}))
        for container in self.adapter_layer_names:
            setattr(self, container, self._new_container(container))
        self._disable_adapters = False
        self.merged_adapters = []
        self.cast_input_dtype_enabled = True
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.kwargs = kwargs

    # ---- hooks for subclasses -------------------------------------------------------------------------------
    def _new_container(self, name: str) -> nn.Module:
        """Empty per-adapter container for ``name`` (an nn.ModuleDict or nn.ParameterDict)."""
        raise NotImplementedError

    def _create_adapter(self, adapter_name: str, r: int) -> None:
        raise NotImplementedError

    def _reset_adapter(self, adapter_name: str, init_weights: bool) -> None:
        raise NotImplementedError

    def _delta_output(self, x: torch.Tensor, t: dict[str, torch.Tensor], scaling: float) -> torch.Tensor:
        """Additive output for the (already dropped-out) input x; low rank, never a dense delta weight."""
        raise NotImplementedError

    def _delta_weight(self, t: dict[str, torch.Tensor], scaling: float) -> torch.Tensor:
        """Dense delta weight, shape (out_features, in_features), for merging."""
        raise NotImplementedError

    # ---- PEFT layer API -------------------------------------------------------------------------------------
    @property
    def dropout(self) -> nn.ModuleDict:
        return getattr(self, self.dropout_name)

    def update_layer(self, adapter_name: str, r: int, lora_alpha: float, config: LoraConfig, **kwargs) -> None:
        """Add (or re-create) adapter ``adapter_name`` on this layer."""
        if r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r}")
        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = lora_alpha
        self.use_rslora[adapter_name] = config.use_rslora
        self.scaling[adapter_name] = lora_alpha / (math.sqrt(r) if config.use_rslora else r)
        p = config.lora_dropout
        self.dropout[adapter_name] = nn.Dropout(p=p) if p > 0.0 else nn.Identity()
        self._create_adapter(adapter_name, r)
        self._reset_adapter(adapter_name, config.init_lora_weights)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def adapter_tensors(self, adapter_name: str) -> dict[str, torch.Tensor]:
        """The adapter's tensors by container name (an nn.Linear entry contributes its ``.weight``)."""
        out = {}
        for container in self.adapter_layer_names:
            item = getattr(self, container)[adapter_name]
            out[container] = item.weight if isinstance(item, nn.Module) else item
        return out

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        t = self.adapter_tensors(adapter_name)
        first = next(iter(t.values()))
        # like PEFT LoRA: fp16/bf16 matmuls are slow (or missing) on CPU, so compute in fp32 and cast back
        if first.device.type == "cpu" and first.dtype in (torch.float16, torch.bfloat16):
            return self._delta_weight({k: v.float() for k, v in t.items()}, self.scaling[adapter_name]).to(first.dtype)
        return self._delta_weight(t, self.scaling[adapter_name])

    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        """Add the delta weights of the given (default: active) adapters to the base weight."""
        base_weight = self.get_base_layer().weight
        for name in check_adapters_to_merge(self, adapter_names):
            if name not in self.r:
                continue
            delta = self.get_delta_weight(name).to(base_weight.dtype)
            if safe_merge:
                merged = base_weight.data + delta
                if not torch.isfinite(merged).all():
                    raise ValueError(f"NaNs detected in the merged weights. The adapter {name} seems to be broken")
                base_weight.data = merged
            else:
                base_weight.data += delta
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """Subtract all merged adapters from the base weight again (last merged first)."""
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.")
            return
        base_weight = self.get_base_layer().weight
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if name in self.r:
                base_weight.data -= self.get_delta_weight(name).to(base_weight.dtype)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        result_dtype = result.dtype
        for name in self.active_adapters:
            if name not in self.r:
                continue
            t = self.adapter_tensors(name)
            xa = self._cast_input_dtype(x, next(iter(t.values())).dtype)
            result = result + self._delta_output(self.dropout[name](xa), t, self.scaling[name])
        return result.to(result_dtype)

    def __repr__(self) -> str:
        return f"{self.__module__.split('.')[-2]}.{super().__repr__()}"


class LowRankTuner(BaseTuner):
    """BaseTuner for a LowRankLayer adapter: replaces each targeted nn.Linear by ``linear_cls``."""

    tuner_layer_cls: type[LowRankLayer]
    linear_cls: type[LowRankLayer]  # the nn.Module wrapper for nn.Linear targets
    # same default targets as LoRA when target_modules is None
    target_module_mapping = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    def _create_and_replace(
        self, config, adapter_name, target, target_name, parent, current_key, parameter_name=None
    ) -> None:
        if parameter_name is not None:
            raise ValueError(f"{type(self).__name__} does not support target_parameters")
        # rank_pattern / alpha_pattern work as in LoRA
        r = config.rank_pattern.get(get_pattern_key(config.rank_pattern.keys(), current_key), config.r)
        alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern.keys(), current_key), config.lora_alpha)
        if isinstance(target, self.tuner_layer_cls):  # a further adapter on an already wrapped layer
            target.update_layer(adapter_name, r, alpha, config)
            return
        if isinstance(target, BaseTunerLayer) or not isinstance(target, nn.Linear):
            raise ValueError(
                f"{type(self).__name__}: target module '{current_key}' is of type "
                f"{type(target).__module__}.{type(target).__qualname__}; only torch.nn.Linear is supported"
            )
        new_module = self.linear_cls(target, adapter_name, config, r=r, lora_alpha=alpha)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # an additional adapter is not trainable until activated
        self._replace_module(parent, target_name, new_module, target)
