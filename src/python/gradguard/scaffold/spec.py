"""What `gradguard new-adapter` is told: the adapter's name and its trainable tensors (name, shape, PEFT init).

A tensor is described as NAME:SHAPE:INIT, e.g. ``lora_A:r,d_in:kaiming``:
  SHAPE  comma-separated sizes, each d_in, d_out, r or a positive integer; at most two of them; ``scalar`` (or
         nothing) for a 0-d tensor
  INIT   PEFT's default initialisation: zeros, ones, kaiming (uniform, a=sqrt(5), as LoRA's lora_A; needs 2-D) or
         normal (std 0.02)
"""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME = 32  # generated lines that carry the name stay within the linter's 120 columns
SIZES = ("d_in", "d_out", "r")
# PEFT's words for each init (the registry's peft_init, which the generic tests read: "zeros" and "ones" literally).
INITS = {"zeros": "zeros", "ones": "ones", "kaiming": "kaiming_uniform(a=sqrt(5))", "normal": "normal(0, 0.02)"}
# Names the base layer's tensors or PEFT's layer bookkeeping already use.
# Attributes the generated layer already has (the LowRankLayer base and PEFT's BaseTunerLayer/nn.Module add the rest,
# checked by name at parse time): a tensor container of the same name would replace one of them.
RESERVED = {"weight", "bias", "base_layer", "r", "lora_alpha", "scaling", "use_rslora", "merged_adapters",
            "in_features", "out_features", "kwargs", "cast_input_dtype_enabled", "dropout"}
MAX_SIZE = 1 << 20  # a literal size beyond this is a typo, not a layer
# C++ keywords (and alternative tokens) that are valid Python identifiers: an adapter name becomes a C++ namespace.
CPP_KEYWORDS = set("""alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
    char32_t class compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield
    decltype default delete do double dynamic_cast else enum explicit export extern false float for friend goto if
    inline int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public
    register reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch
    template this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
    wchar_t while xor xor_eq""".split())
# The default description: LoRA's two factors.
DEFAULT_PARAMS = ("lora_A:r,d_in:kaiming", "lora_B:d_out,r:zeros")


class ScaffoldError(ValueError):
    """Bad input to the scaffold (exit 2): names the argument and what was expected."""


@dataclass(frozen=True)
class TensorDesc:
    name: str
    shape: tuple[str, ...]  # each a size name (d_in, d_out, r) or a decimal integer
    init: str               # a key of INITS

    @property
    def words(self) -> str:
        return "(" + ", ".join(self.shape) + ")" if self.shape else "scalar"


@dataclass(frozen=True)
class AdapterDesc:
    name: str
    tensors: tuple[TensorDesc, ...]

    @property
    def camel(self) -> str:  # my_new_lora -> MyNewLora (PEFT's class names: MyNewLoraConfig, ...)
        return "".join(part[:1].upper() + part[1:] for part in self.name.split("_"))

    @property
    def peft_type(self) -> str:
        return self.name.upper()

    @property
    def prefix(self) -> str:
        """PEFT's tuner prefix: BaseTuner keeps trainable only parameters whose name contains it, and loading finds
        the adapted modules by it, so every tensor name must start with it."""
        return common_prefix([t.name for t in self.tensors])


def common_prefix(names: list[str]) -> str:
    first = names[0]
    n = 0
    while n < len(first) and all(len(x) > n and x[n] == first[n] for x in names):
        n += 1
    cut = first[:n].rfind("_")
    return first[:cut + 1] if cut > 0 else ""


def parse_name(name: str) -> str:
    if not NAME_RE.match(name) or keyword.iskeyword(name) or name in CPP_KEYWORDS or name.endswith("_") \
            or len(name) > MAX_NAME:
        raise ScaffoldError(f"argument 'NAME': expected a snake_case adapter name (a lower-case letter, then "
                            f"lower-case letters, digits or '_', not ending in '_', at most {MAX_NAME} characters, "
                            f"no Python or C++ keyword), got '{name}'")
    return name


def parse_tensor(text: str) -> TensorDesc:
    parts = text.split(":")
    if len(parts) != 3:
        raise ScaffoldError(f"argument '--param': expected NAME:SHAPE:INIT (e.g. lora_A:r,d_in:kaiming), got '{text}'")
    name, shape_text, init = (p.strip() for p in parts)
    if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name) or keyword.iskeyword(name) or name in CPP_KEYWORDS \
            or len(name) > MAX_NAME:
        raise ScaffoldError(f"argument '--param': expected an identifier (no Python or C++ keyword, at most "
                            f"{MAX_NAME} characters) as the tensor name, got '{name}'")
    if name in RESERVED or _layer_attribute(name):
        raise ScaffoldError(f"argument '--param': '{name}' is taken by the base layer or PEFT's bookkeeping; "
                            f"expected another name")
    shape = () if shape_text in ("", "scalar") else tuple(s.strip() for s in shape_text.split(","))
    for s in shape:
        if s not in SIZES and not (re.fullmatch(r"[1-9][0-9]*", s) and int(s) <= MAX_SIZE):
            raise ScaffoldError(f"argument '--param {name}': expected sizes d_in, d_out, r or integers from 1 to "
                                f"{MAX_SIZE} (no leading zero), got '{s}'")
    if len(shape) > 2:
        raise ScaffoldError(f"argument '--param {name}': expected at most 2 sizes (the Eigen reference holds each "
                            f"tensor as a matrix), got {len(shape)}")
    if init not in INITS:
        raise ScaffoldError(f"argument '--param {name}': expected INIT one of {', '.join(INITS)}, got '{init}'")
    if init == "kaiming" and len(shape) != 2:
        raise ScaffoldError(f"argument '--param {name}': kaiming init needs a 2-D shape (its fan-in), got "
                            f"{len(shape)}-D; use normal, zeros or ones")
    return TensorDesc(name, shape, init)


def _layer_attribute(name: str) -> bool:
    """Whether the generated layer class already has an attribute ``name`` (PEFT's tuner-layer API, nn.Module's)."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from torch import nn

    return hasattr(BaseTunerLayer, name) or hasattr(nn.Module, name)


def parse_adapter(name: str, params: list[str] | None) -> AdapterDesc:
    name = parse_name(name)
    tensors = tuple(parse_tensor(p) for p in (params or DEFAULT_PARAMS))
    seen: set[str] = set()
    for t in tensors:
        if t.name in seen:
            raise ScaffoldError(f"argument '--param': tensor '{t.name}' is described twice")
        if t.name == f"{name}_dropout":
            raise ScaffoldError(f"argument '--param': '{t.name}' is the layer's dropout container; expected another "
                                "name")
        seen.add(t.name)
    desc = AdapterDesc(name, tensors)
    if not desc.prefix:
        raise ScaffoldError("argument '--param': expected tensor names that share a prefix ending in '_' (PEFT keeps "
                            "trainable only parameters whose name contains the tuner's prefix), e.g. "
                            f"{name}_A, {name}_B; got " + ", ".join(t.name for t in tensors))
    return desc
