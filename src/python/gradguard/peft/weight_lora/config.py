"""WeightLoraConfig: LoraConfig's arguments, PEFT type WEIGHT_LORA (the user's fork: LoRA with a scalar gate)."""

from __future__ import annotations

from dataclasses import dataclass

from peft.tuners.lora import LoraConfig
from peft.utils.peft_types import PeftType

from .._common import check_lora_options
from .._registration import extend_peft_type

# The enum member must exist before any config is built (and before register_peft_method, which checks it).
extend_peft_type("WEIGHT_LORA")


@dataclass
class WeightLoraConfig(LoraConfig):
    """Configuration of a :class:`WeightLoraModel`; accepts LoraConfig's arguments (``r``, ``lora_alpha``,
    ``target_modules``, ``lora_dropout``, ``bias``, ``use_rslora``, ``init_lora_weights`` (bool),
    ``modules_to_save``, ``rank_pattern``, ...). LoRA-variant options (DoRA, ...) are rejected."""

    def __post_init__(self):
        super().__post_init__()  # LoraConfig's normalisation/validation; it sets peft_type = LORA ...
        self.peft_type = PeftType.WEIGHT_LORA  # ... so override it: PEFT dispatches on this value
        check_lora_options(self)
