"""gradguard: proves parameter-efficient fine-tuning adapters correct and fast.

    import gradguard as gg
    gg.adapters()                      # the registry
    gg.check(model, *inputs)           # gradient flow on a live model
    gg.gradcheck("lora", d_in=8, d_out=8)   # finite differences in float64
    gg.compare("dora")                 # eigen vs torch vs cuda vs PEFT
    gg.compare_live_layer(peft_layer, x)   # a live PEFT layer (Linear, Conv, Embedding, Conv1D) vs the reference
    gg.fast_path(peft_model)           # every adapter layer through gradguard's op (all parameters train)
"""
import torch  # noqa: F401  (loads libc10/libtorch before the extension that links them)

from . import _C
from ._C import InputError
from .flow import FlowReport, Note, Problem, check
from .registry import adapters, info
from .gradcheck import GradcheckResult, gradcheck, gradcheck_module
from .bridge import from_peft
from .compare import CompareResult, compare, compare_live_layer
from .ops import adapter_linear, cuda_status
from .fast_path import FastPathReport, fast_path
from .audit_peft import AuditPeftReport, audit_peft

__all__ = [
    "InputError", "adapters", "info", "check", "FlowReport", "Problem", "Note", "gradcheck", "gradcheck_module",
    "GradcheckResult", "compare", "CompareResult", "compare_live_layer", "from_peft", "adapter_linear", "cuda_status", "fast_path",
    "FastPathReport", "audit_peft", "AuditPeftReport",
]
__version__ = "0.1.0"
