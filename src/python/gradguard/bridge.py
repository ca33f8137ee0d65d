"""PEFT <-> gradguard: read a live PEFT layer into registry tensors (``from_peft``), build PEFT's own layer for an
adapter (``make_peft_layer``) and load registry tensors into it (``load_into_peft``).

The tensor mapping comes from the registry (each tensor's ``peft_key``); the only per-adapter knowledge here is which
PEFT config and layer class implement it, in ``_PEFT_SIDE`` (PEFT's own tuners) and, found by name, the packages of
``gradguard.peft`` (my_lora, weight_lora and any adapter ``gradguard new-adapter`` wrote).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import _C
from .registry import info


@dataclass(frozen=True)
class _PeftSide:
    config: Callable[..., object]      # (resolved hp, **PEFT config kwargs) -> PEFT config
    layer: Callable[[], type]          # the PEFT layer class (imported lazily)
    layer_kwargs: Callable[[dict, object], dict]  # (resolved hp, config) -> the layer constructor's keyword arguments
    matches: Callable[[nn.Module, str], bool]
    # Why PEFT cannot express these hyper-parameters (None when it can).
    unsupported: Callable[[dict], str | None] = lambda hp: None
    # The config field that switches PEFT's default initialisation on/off; None where the config has none (VB-LoRA:
    # its init is always random).
    init_flag: str | None = "init_lora_weights"
    # nn.Parameters of PEFT's layer that the adapter's maths holds constant ("{adapter}" for the adapter name):
    # gradguard's op reads them as hyper-parameters, so one left trainable gets no gradient through the op.
    constants: tuple[str, ...] = ()


def _lora_config(hp: dict, use_dora: bool, **extra):
    from peft import LoraConfig

    return LoraConfig(r=hp["r"], lora_alpha=hp["lora_alpha"], use_rslora=hp["use_rslora"], use_dora=use_dora,
                      lora_bias=hp.get("lora_bias", False), lora_dropout=0.0, **extra)


def _lora_layer_kwargs(hp: dict, config) -> dict:
    """LoRA-style layers (PEFT's lora.Linear and gradguard.peft's layers) take the hyper-parameters again."""
    return dict(r=hp["r"], lora_alpha=hp["lora_alpha"], use_rslora=hp["use_rslora"],
                use_dora=getattr(config, "use_dora", False), lora_bias=hp.get("lora_bias", False), lora_dropout=0.0,
                init_lora_weights=config.init_lora_weights)


def _lora_layer():
    from peft.tuners.lora import Linear

    return Linear


def _is_kasa(layer: nn.Module, adapter: str) -> bool:
    return adapter in getattr(layer, "lora_diag", {})  # only KaSA's variant gives lora.Linear a lora_diag


def _is_peft_lora(layer: nn.Module, adapter: str, dora: bool) -> bool:
    from peft.tuners.lora import layer as lora

    # lora.Linear also wraps GPT-2's Conv1D (fan_in_fan_out); gradguard.layers lowers the other types to Linear
    if type(layer) not in (lora.Linear, lora.Conv1d, lora.Conv2d, lora.Conv3d, lora.Embedding) or _is_kasa(layer, adapter):
        return False
    return bool(layer.use_dora.get(adapter, False)) == dora


def _kasa_config(hp: dict, **extra):
    from peft.tuners.lora import KasaConfig

    return _lora_config(hp, False, kasa_config=KasaConfig(), **extra)


def _is_peft_kasa(layer: nn.Module, adapter: str) -> bool:
    from peft.tuners.lora import Linear

    if type(layer) is not Linear or not _is_kasa(layer, adapter):
        return False
    if adapter in getattr(layer, "_lora_kasa_truncation_deferred", ()):
        raise _C.InputError("argument 'layer': expected a KaSA layer whose base weight PEFT has already truncated, got "
                            "one created on the meta device whose truncation is deferred to its first forward (run one "
                            "forward or merge first)")
    if bool(getattr(layer, "lora_bias", {}).get(adapter, False)):
        raise _C.InputError("argument 'layer': expected a KaSA layer without lora_bias (gradguard's kasa does not "
                            "model LoRA's bias on B), got lora_bias=True")
    return True


def _gg_config(cls_name: str):
    def make(hp: dict, **extra):
        import gradguard.peft as ggpeft

        return getattr(ggpeft, cls_name)(r=hp["r"], lora_alpha=hp["lora_alpha"], use_rslora=hp["use_rslora"],
                                         lora_dropout=0.0, **extra)
    return make


def _gg_layer(module: str):
    def cls():
        import importlib

        return importlib.import_module(f"gradguard.peft.{module}.layer").Linear
    return cls


def _adalora_config(hp: dict, **extra):
    from peft import AdaLoraConfig

    # AdaLoraConfig refuses total_step=None; it only paces the rank allocator (a training extra, not the layer), so
    # a one-step schedule stands in unless the caller gives one.
    extra.setdefault("total_step", 1)
    return AdaLoraConfig(init_r=hp["init_r"], lora_alpha=hp["lora_alpha"], lora_dropout=0.0, **extra)


def _ia3_config(hp: dict, **extra):
    from peft import IA3Config

    # is_feedforward belongs to one layer; PEFT decides it per module from feedforward_modules. With target_modules
    # given, the flag makes every target feed-forward or none; without, PEFT's per-architecture tables pick both.
    if "feedforward_modules" not in extra and extra.get("target_modules") is not None:
        extra["feedforward_modules"] = extra["target_modules"] if hp["is_feedforward"] else []
    return IA3Config(**extra)


def _loha_config(hp: dict, **extra):
    from peft import LoHaConfig

    # rank_dropout/module_dropout draw random masks in training; the op is the dropout-free layer.
    return LoHaConfig(r=hp["r"], alpha=hp["alpha"], use_effective_conv2d=bool(hp["use_effective_conv2d"]),
                      rank_dropout=0.0, module_dropout=0.0, **extra)


def _lycoris_layer(module: str) -> Callable[[nn.Module, str], bool]:
    """LoHa's/LoKr's layers (Linear, Conv1d, Conv2d), in the default or the Tucker (use_effective_conv2d) form."""
    return _is(*(_peft_class(module, c) for c in ("Linear", "Conv1d", "Conv2d")))


def _tucker_form(layer: nn.Module, adapter: str) -> bool:
    # PEFT keeps no flag: the Tucker core exists only where it built the form (a kernel larger than 1, and for LoKr a
    # factored w2)
    return adapter in getattr(layer, "hada_t1", {}) or adapter in getattr(layer, "lokr_t2", {})


def _conv_kernel(layer: nn.Module, adapter: str) -> int:
    """The kernel volume of the layer's base (1 unless a convolution)."""
    return math.prod(layer_geometry(layer).kernel)


def _no_kernel(hp: dict) -> str | None:
    """make_peft_layer builds PEFT's Linear layer: a conv_kernel (a convolution lowered to a Linear) is not one, and
    PEFT builds the Tucker form (use_effective_conv2d) on convolutions only."""
    if hp.get("use_effective_conv2d"):
        return ("use_effective_conv2d: PEFT builds the Tucker form only on a convolution with a kernel larger than 1 "
                "(its Linear layer ignores the flag); PEFT's own Conv1d/Conv2d layers are compared in "
                "tests/python/test_layer_types.py")
    if hp.get("conv_kernel", 1) == 1:
        return None
    return ("conv_kernel > 1 describes a convolution lowered to a Linear, which PEFT's Linear layer has no form for "
            "(PEFT's own Conv1d/Conv2d layers are compared in tests/python/test_layer_types.py)")


def _lokr_config(hp: dict, **extra):
    from peft import LoKrConfig

    return LoKrConfig(r=hp["r"], alpha=hp["alpha"], decompose_both=hp["decompose_both"],
                      decompose_factor=hp["decompose_factor"], use_effective_conv2d=bool(hp["use_effective_conv2d"]),
                      rank_dropout=0.0, module_dropout=0.0, **extra)


def _vera_config(hp: dict, **extra):
    from peft import VeraConfig

    return VeraConfig(r=hp["r"], vera_dropout=0.0, **extra)


def _vera_layer():
    """PEFT's vera.Linear takes the model-wide projections (BufferDicts) as arguments: drawn here as VeraModel draws
    them for a model whose largest layer is this one (torch.Generator(projection_prng_key), A then B)."""
    from peft.tuners._buffer_dict import BufferDict
    from peft.tuners.vera import Linear
    from peft.tuners.vera.model import _kaiming_init

    def make(base: nn.Linear, adapter: str, config, r: int):
        gen = torch.Generator(device="cpu").manual_seed(config.projection_prng_key)
        vera_A = BufferDict({adapter: _kaiming_init((r, base.in_features), generator=gen)}, persistent=True)
        vera_B = BufferDict({adapter: _kaiming_init((base.out_features, r), generator=gen)}, persistent=True)
        return Linear(base, vera_A, vera_B, adapter, config=config, r=r)
    return make


def _miss_config(hp: dict, **extra):
    from peft import MissConfig

    return MissConfig(r=hp["r"], miss_dropout=0.0, **extra)


def _hra_config(hp: dict, **extra):
    from peft import HRAConfig

    return HRAConfig(r=hp["r"], apply_GS=False, **extra)


def _delora_config(hp: dict, **extra):
    from peft import DeloraConfig

    return DeloraConfig(r=hp["r"], module_dropout=0.0, **extra)


def _gralora_config(hp: dict, **extra):
    from peft import GraloraConfig

    return GraloraConfig(r=hp["r"], alpha=hp["alpha"], gralora_k=hp["gralora_k"], hybrid_r=hp["hybrid_r"],
                         gralora_dropout=0.0, **extra)


def _randlora_config(hp: dict, **extra):
    from peft import RandLoraConfig

    return RandLoraConfig(r=hp["r"], randlora_alpha=hp["randlora_alpha"], randlora_dropout=0.0, **extra)


def _randlora_layer():
    """PEFT's randlora.Linear takes the model-wide bases (BufferDicts): drawn here as RandLoraModel draws them for a
    model whose only layer is this one (torch.Generator(projection_prng_key): A, then one B block per basis, / std)."""
    from peft.tuners._buffer_dict import BufferDict
    from peft.tuners.randlora import Linear
    from peft.tuners.randlora.model import _kaiming_init

    def make(base: nn.Linear, adapter: str, config, r: int):
        mn, mx = min(base.in_features, base.out_features), max(base.in_features, base.out_features)
        gen = torch.Generator(device="cpu").manual_seed(config.projection_prng_key)
        a = _kaiming_init((r, 1, mn), generator=gen)
        b = torch.cat([_kaiming_init((mx, 1, r), generator=gen) for _ in range(-(-mn // r))], dim=1)
        bases_a = BufferDict({adapter: a / a.std()}, persistent=True)
        bases_b = BufferDict({adapter: b / b.std()}, persistent=True)
        return Linear(base, bases_a, bases_b, adapter, config=config, r=r)
    return make


def _c3a_config(hp: dict, **extra):
    from peft import C3AConfig

    return C3AConfig(block_size=hp["block_size"], **extra)


def _oft_config(hp: dict, **extra):
    from peft import OFTConfig

    return OFTConfig(r=0, oft_block_size=hp["oft_block_size"], use_cayley_neumann=hp["use_cayley_neumann"],
                     num_cayley_neumann_terms=hp["num_cayley_neumann_terms"], block_share=hp["block_share"],
                     module_dropout=0.0, **extra)


def _oft_rotation(layer: nn.Module, adapter: str):
    # OFT's Embedding layer keeps its rotation as oft_embedding_R (its oft_R stays empty)
    rot = layer.oft_R[adapter] if adapter in layer.oft_R else layer.oft_embedding_R[adapter]
    if rot.coft:
        raise _C.InputError("argument 'layer': expected an OFT layer without coft (its forward projects the parameter "
                            "in place, under no_grad; gradguard does not model it), got coft=True")
    return rot


def _boft_config(hp: dict, **extra):
    from peft import BOFTConfig

    return BOFTConfig(boft_block_size=hp["boft_block_size"], boft_block_num=0,
                      boft_n_butterfly_factor=hp["boft_n_butterfly_factor"], boft_dropout=0.0, **extra)


def _boft_unsupported(hp: dict) -> str | None:
    # PEFT's butterfly path (boft_n_butterfly_factor > 1) needs its CUDA extension fbd_cuda and CUDA tensors: without
    # the extension PEFT silently forces the factor to 1, and its kernel does not run on the CPU, where gradguard runs
    # PEFT's layer for comparisons.
    if hp["boft_n_butterfly_factor"] == 1:
        return None
    return ("PEFT's butterfly factors need its CUDA extension fbd_cuda on CUDA tensors (without it PEFT forces "
            "boft_n_butterfly_factor to 1); gradguard compares PEFT's layer on the CPU")


def _shira_config(hp: dict, **extra):
    from peft import ShiraConfig

    return ShiraConfig(r=hp["r"], mask_type="random", **extra)


def _shira_layer():
    """PEFT's shira.Linear takes its mask as an argument: drawn here as ShiraModel draws it (the config's mask_fn,
    the random mask seeded with random_seed)."""
    from peft.tuners.shira.layer import Linear
    from peft.tuners.shira.mask_functions import random_mask

    def make(base: nn.Linear, adapter: str, config, r: int):
        return Linear(base, random_mask(base, r, random_seed=config.random_seed), adapter, config=config, r=r)
    return make


def _is_peft_shira(layer: nn.Module, adapter: str) -> bool:
    from peft.tuners.shira.layer import Linear

    if type(layer) is not Linear:
        return False
    scale = float(layer.scaling[adapter])
    if scale != 1.0:
        raise _C.InputError(f"argument 'layer': expected a SHiRA layer at scale 1 (training; gradguard's shira has no "
                            f"scale), got scale {scale:g} from set_scale")
    return True


def _fourierft_config(hp: dict, **extra):
    from peft import FourierFTConfig

    return FourierFTConfig(n_frequency=hp["n_frequency"], scaling=hp["scaling"], **extra)


def _waveft_config(hp: dict, **extra):
    from peft import WaveFTConfig

    return WaveFTConfig(n_frequency=hp["n_frequency"], scaling=hp["scaling"], use_idwt=hp["use_idwt"],
                        wavelet_family="db1", **extra)


_HAAR = ("db1", "haar")  # the wavelet gradguard's waveft implements (PEFT's default)


def _is_peft_waveft(layer: nn.Module, adapter: str) -> bool:
    from peft.tuners.waveft import WaveFTLinear

    if type(layer) is not WaveFTLinear:
        return False
    family = str(layer.waveft_wavelet_family[adapter])
    if layer.waveft_use_idwt[adapter] and family.lower() not in _HAAR:
        raise _C.InputError(f"argument 'layer': expected a WaveFT layer with the Haar wavelet (wavelet_family 'db1', "
                            f"PEFT's default: the one gradguard implements), got '{family}'")
    return True


def _road_config(hp: dict, **extra):
    from peft import RoadConfig

    return RoadConfig(variant=f"road_{hp['variant']}", group_size=hp["group_size"], **extra)


def _vblora_config(hp: dict, **extra):
    from peft import VBLoRAConfig

    return VBLoRAConfig(r=hp["r"], num_vectors=hp["num_vectors"], vector_length=hp["vector_length"], topk=hp["topk"],
                        vblora_dropout=0.0, **extra)


def _vblora_layer():
    """PEFT's vblora.Linear takes the model-wide vector bank (a ParameterDict) as an argument: drawn here as
    VBLoRAModel draws it (uniform within init_vector_bank_bound)."""
    from peft.tuners.vblora import Linear

    def make(base: nn.Linear, adapter: str, config, r: int):
        bank = torch.empty(config.num_vectors, config.vector_length)
        nn.init.uniform_(bank, -config.init_vector_bank_bound, config.init_vector_bank_bound)
        return Linear(base, nn.ParameterDict({adapter: nn.Parameter(bank)}), adapter, config=config, r=r)
    return make


def _is_peft_vblora(layer: nn.Module, adapter: str) -> bool:
    from peft.tuners.vblora import Linear

    if type(layer) is not Linear:
        return False
    if not isinstance(layer.vblora_dropout[adapter], nn.Identity):
        raise _C.InputError("argument 'layer': expected a VB-LoRA layer with vblora_dropout = 0 (gradguard checks the "
                            "dropout-free layer), got a dropout module")
    return True


def _peft_class(module: str, cls: str):
    def get():
        import importlib

        return getattr(importlib.import_module(module), cls)
    return get


def _is(*classes: Callable[[], type]) -> Callable[[nn.Module, str], bool]:
    """Matches PEFT's layer classes for an adapter: its Linear one first, then those for other base layer types."""
    def matches(layer: nn.Module, adapter: str) -> bool:
        for cls in classes:
            try:
                if type(layer) is cls():
                    return True
            except (ImportError, AttributeError):
                continue
        return False
    return matches


_PEFT_SIDE: dict[str, _PeftSide] = {
    "lora": _PeftSide(lambda hp, **kw: _lora_config(hp, False, **kw), _lora_layer, _lora_layer_kwargs,
                      lambda l, a: _is_peft_lora(l, a, False)),
    "dora": _PeftSide(lambda hp, **kw: _lora_config(hp, True, **kw), _lora_layer, _lora_layer_kwargs,
                      lambda l, a: _is_peft_lora(l, a, True),
                      lambda hp: ("PEFT implements only DoRA's detached-norm gradient (paper §4.3), not "
                                  "exact_gradient=True") if hp.get("exact_gradient") else None),
    "kasa": _PeftSide(_kasa_config, _lora_layer, _lora_layer_kwargs, _is_peft_kasa),
    "adalora": _PeftSide(_adalora_config, _peft_class("peft.tuners.adalora", "SVDLinear"),
                         lambda hp, config: dict(r=hp["init_r"], lora_alpha=hp["lora_alpha"]),
                         _is(*(_peft_class("peft.tuners.adalora.layer", c) for c in ("SVDLinear", "SVDConv2d"))),
                         constants=("ranknum.{adapter}",)),
    "ia3": _PeftSide(_ia3_config, _peft_class("peft.tuners.ia3", "Linear"),
                     lambda hp, config: dict(is_feedforward=hp["is_feedforward"]),
                     _is(*(_peft_class("peft.tuners.ia3.layer", c) for c in ("Linear", "Conv2d", "Conv3d"))), _no_kernel,
                     init_flag="init_ia3_weights"),
    "loha": _PeftSide(_loha_config, _peft_class("peft.tuners.loha", "Linear"),
                      lambda hp, config: dict(r=hp["r"], alpha=hp["alpha"]),
                      _lycoris_layer("peft.tuners.loha.layer"), _no_kernel, init_flag="init_weights"),
    "vera": _PeftSide(_vera_config, _vera_layer, lambda hp, config: dict(r=hp["r"]),
                      _is(_peft_class("peft.tuners.vera", "Linear")), init_flag="init_weights"),
    "miss": _PeftSide(_miss_config, _peft_class("peft.tuners.miss", "MissLinear"), lambda hp, config: dict(r=hp["r"]),
                      _is(_peft_class("peft.tuners.miss", "MissLinear")), init_flag="init_weights"),
    "hra": _PeftSide(_hra_config, _peft_class("peft.tuners.hra", "HRALinear"), lambda hp, config: dict(r=hp["r"]),
                     _is(*(_peft_class("peft.tuners.hra", c) for c in ("HRALinear", "HRAConv2d"))), init_flag="init_weights"),
    "delora": _PeftSide(_delora_config, _peft_class("peft.tuners.delora", "DeloraLinear"),
                        lambda hp, config: dict(r=hp["r"], delora_lambda=config.delora_lambda),
                        _is(_peft_class("peft.tuners.delora", "DeloraLinear")), init_flag="init_weights"),
    "gralora": _PeftSide(_gralora_config, _peft_class("peft.tuners.gralora.layer", "Linear"),
                         lambda hp, config: dict(module_name="layer", r=hp["r"]),
                         _is(_peft_class("peft.tuners.gralora.layer", "Linear")), init_flag="init_weights"),
    "randlora": _PeftSide(_randlora_config, _randlora_layer, lambda hp, config: dict(r=hp["r"]),
                          _is(_peft_class("peft.tuners.randlora", "Linear")), init_flag="init_weights"),
    "c3a": _PeftSide(_c3a_config, _peft_class("peft.tuners.c3a", "C3ALinear"),
                     lambda hp, config: dict(block_size=hp["block_size"]),
                     _is(_peft_class("peft.tuners.c3a", "C3ALinear")), init_flag="init_weights"),
    "oft": _PeftSide(_oft_config, _peft_class("peft.tuners.oft", "Linear"), lambda hp, config: dict(r=0),
                     _is(*(_peft_class("peft.tuners.oft", c) for c in ("Linear", "Conv2d", "Embedding"))), init_flag="init_weights"),
    "boft": _PeftSide(_boft_config, _peft_class("peft.tuners.boft.layer", "Linear"), lambda hp, config: dict(),
                      _is(*(_peft_class("peft.tuners.boft.layer", c) for c in ("Linear", "Conv2d"))), _boft_unsupported, init_flag="init_weights"),
    "shira": _PeftSide(_shira_config, _shira_layer, lambda hp, config: dict(r=hp["r"]), _is_peft_shira,
                       init_flag="init_weights"),
    "fourierft": _PeftSide(_fourierft_config, _peft_class("peft.tuners.fourierft", "FourierFTLinear"),
                           lambda hp, config: dict(n_frequency=hp["n_frequency"]),
                           _is(_peft_class("peft.tuners.fourierft", "FourierFTLinear")), init_flag="init_weights"),
    "waveft": _PeftSide(_waveft_config, _peft_class("peft.tuners.waveft", "WaveFTLinear"),
                        lambda hp, config: dict(n_frequency=hp["n_frequency"]), _is_peft_waveft,
                        init_flag="init_weights"),
    "road": _PeftSide(_road_config, _peft_class("peft.tuners.road.layer", "Linear"), lambda hp, config: dict(),
                      _is(_peft_class("peft.tuners.road.layer", "Linear")), init_flag="init_weights"),
    "vblora": _PeftSide(_vblora_config, _vblora_layer, lambda hp, config: dict(r=hp["r"]), _is_peft_vblora,
                        init_flag=None),
    "lokr": _PeftSide(_lokr_config, _peft_class("peft.tuners.lokr", "Linear"),
                      lambda hp, config: dict(r=hp["r"], alpha=hp["alpha"]),
                      _lycoris_layer("peft.tuners.lokr.layer"), _no_kernel, init_flag="init_weights"),
}


def trainable_constants(layer: nn.Module, name: str, adapter: str) -> list[str]:
    """PEFT parameters of ``layer`` that adapter ``name``'s maths holds constant but that require grad (AdaLoRA's
    ranknum on a model that is not float32: a confirmed PEFT defect)."""
    keys = [k.replace("{adapter}", adapter) for k in _side(name).constants]
    params = dict(layer.named_parameters())
    return [k for k in keys if k in params and params[k].requires_grad]


def _sides() -> dict[str, _PeftSide]:
    """_PEFT_SIDE plus, once, every registry adapter with a package in gradguard.peft: its <Camel>Config and its
    layer.Linear, the LoRA-family layer base's (LowRankLayer) keyword arguments."""
    if not _DISCOVERED:
        import importlib

        import gradguard.peft as ggpeft

        registered = set(_C.adapters())
        for name in ggpeft.ADAPTER_PACKAGES:
            if name in registered and name not in _PEFT_SIDE:
                exports = importlib.import_module(f"gradguard.peft.{name}").__all__
                config = next(e for e in exports if e.endswith("Config"))
                _PEFT_SIDE[name] = _PeftSide(_gg_config(config), _gg_layer(name), _lora_layer_kwargs,
                                             _is(_gg_layer(name)))
        _DISCOVERED.append(True)
    return _PEFT_SIDE


_DISCOVERED: list[bool] = []


def peft_supported(name: str) -> bool:
    return name in _sides()


def peft_unsupported_reason(name: str, hp: dict) -> str | None:
    """None when PEFT has a layer for ``name`` that implements these hyper-parameters, else why not."""
    if name not in _sides():
        return f"PEFT has no layer for '{name}'"
    return _sides()[name].unsupported(hp)


def _side(name: str) -> _PeftSide:
    if name not in _sides():
        raise _C.InputError(f"argument 'adapter': expected one with a PEFT layer ({sorted(_sides())}), got '{name}'")
    return _sides()[name]


def peft_config(name: str, hp: dict, d_in: int = 32, d_out: int = 32, init_weights: bool | None = None,
                **config_kwargs):
    """The PEFT config that applies adapter ``name`` with these hyper-parameters (e.g. for get_peft_model);
    ``config_kwargs`` go to the config (target_modules, ...). ``init_weights`` sets the adapter's own init switch
    (init_lora_weights, init_ia3_weights, ...): False gives every factor a random non-zero value."""
    side = _side(name)
    if init_weights is not None and side.init_flag is not None:
        config_kwargs[side.init_flag] = init_weights
    return side.config(_C.resolve_hyper(name, d_in, d_out, hp), **config_kwargs)


def make_peft_layer(name: str, base: nn.Linear, hp: dict, adapter: str = "default") -> nn.Module:
    """PEFT's own layer for adapter ``name`` around ``base`` (nn.Linear), with PEFT's default init."""
    side = _side(name)
    hp = _C.resolve_hyper(name, base.in_features, base.out_features, hp)
    config = side.config(hp, **({side.init_flag: True} if side.init_flag else {}))
    return side.layer()(base, adapter, config=config, **side.layer_kwargs(hp, config))


def fit(t: torch.Tensor, shape) -> torch.Tensor:
    """A PEFT tensor as the registry's shape: a reshape when the sizes agree, else the leading block of a larger
    shared tensor of the same rank (VeRA's model-wide projections, which each layer slices as [:r, :d_in] and
    [:d_out, :r]). A view either way: gradients and in-place copies reach the PEFT tensor."""
    shape = tuple(shape)
    if t.numel() == math.prod(shape):
        return t.reshape(shape)
    if t.dim() == len(shape) and all(have >= want for have, want in zip(t.shape, shape)):
        return t[tuple(slice(0, want) for want in shape)]
    raise _C.InputError(f"argument 'layer': expected a PEFT tensor of shape {list(shape)} (or a larger shared one to "
                        f"slice), got {list(t.shape)}")


def _peft_tensor(layer: nn.Module, key: str) -> torch.Tensor | None:
    state = dict(layer.named_parameters())
    state.update(dict(layer.named_buffers()))
    if key in state:
        return state[key]
    # Tensors PEFT keeps in a plain dict on the layer, outside its state_dict (FourierFT's `indices`, WaveFT's
    # `waveft_indices`, SHiRA's `shira_indices`): "attribute.adapter".
    attr, _, adapter = key.rpartition(".")
    table = getattr(layer, attr, None)
    return table.get(adapter) if isinstance(table, dict) else None


def _active_adapter(layer: nn.Module) -> str:
    adapters = getattr(layer, "active_adapters", None) if hasattr(layer, "get_base_layer") else None
    if not adapters:
        raise _C.InputError(f"argument 'layer': expected a PEFT tuner layer with an active adapter, got "
                            f"{type(layer).__module__}.{type(layer).__name__}")
    return adapters[0]


def _identify(layer: nn.Module, adapter: str) -> str:
    for name, side in _sides().items():
        try:
            if side.matches(layer, adapter):
                return name
        except ImportError:
            continue
    raise _C.InputError(
        f"argument 'layer': expected a PEFT layer of a registered adapter ({sorted(_sides())}), "
        f"got {type(layer).__module__}.{type(layer).__name__}")


def _rank(layer: nn.Module, adapter: str) -> int:
    # MiSS keeps its block width as miss_r, HRA its number of reflections as hra_r
    ranks = getattr(layer, "miss_r", None) or getattr(layer, "hra_r", None) or layer.r
    return int(ranks[adapter])


def _adalora_rank(layer: nn.Module, adapter: str) -> int:
    r = _rank(layer, adapter)
    ranknum = float(layer.ranknum[adapter])
    if ranknum != r:  # resize_modules_by_rank_pattern keeps the initial ranknum while the tensors shrink
        raise _C.InputError(f"argument 'layer': expected an AdaLoRA layer whose ranknum equals its rank (scaling "
                            f"alpha/(r + 1e-5)), got r={r} and ranknum={ranknum:g} (a layer resized by a rank_pattern)")
    return r


def _lycoris_alpha(layer: nn.Module, adapter: str) -> float:
    # LyCORIS layers (LoHa, LoKr) keep alpha and apply rank/module dropout with random masks in training; gradguard's
    # op is the dropout-free layer, so a layer with either dropout cannot be read as it.
    for kind in ("rank_dropout", "module_dropout"):
        p = float(getattr(layer, kind, {}).get(adapter, 0.0))
        if p != 0.0:
            raise _C.InputError(f"argument 'layer': expected a layer with {kind} = 0 (gradguard checks the dropout-free "
                                f"layer), got {kind} = {p:g}")
    return float(layer.alpha[adapter])


def _use_rslora(layer: nn.Module, adapter: str) -> bool:
    # PEFT keeps only the resulting scaling; rsLoRA is recognised by it (identical to plain LoRA when r = 1).
    r, alpha, scaling = _rank(layer, adapter), float(layer.lora_alpha[adapter]), float(layer.scaling[adapter])
    return r != 1 and math.isclose(scaling, alpha / math.sqrt(r), rel_tol=1e-12)


def _lokr_decompose_both(layer: nn.Module, adapter: str) -> bool:
    # The layer keeps no flag: a factored w1 means decompose_both was set. An unfactored one means either it was not
    # or r was too large for it to matter; both give the same tensors, so False stands for both.
    return adapter in getattr(layer, "lokr_w1_a", {})


def _lokr_decompose_factor(layer: nn.Module, adapter: str) -> int:
    # The layer keeps no factor either: find the one that reproduces its Kronecker sides (default -1 first).
    geom, kernel = layer_geometry(layer), _conv_kernel(layer, adapter)
    w1 = layer.lokr_w1[adapter] if adapter in layer.lokr_w1 else layer.lokr_w1_a[adapter] @ layer.lokr_w1_b[adapter]
    a, c = w1.shape
    candidates = [-1] + sorted({a, c, geom.d_out // a, geom.d_in // kernel // c})
    for f in candidates:
        hp = _C.resolve_hyper("lokr", geom.d_in, geom.d_out,
                              {"r": _rank(layer, adapter), "decompose_factor": f, "conv_kernel": kernel,
                               "decompose_both": _lokr_decompose_both(layer, adapter)})
        shapes = _C.tensor_shapes("lokr", geom.d_in, geom.d_out, hp)
        w1_shape = shapes["lokr_w1"] if "lokr_w1" in shapes else [shapes["lokr_w1_a"][0], shapes["lokr_w1_b"][1]]
        if list(w1_shape) == [a, c]:
            return f
    raise _C.InputError(f"argument 'layer': expected LoKr sides that a decompose_factor reproduces, got w1 {a}x{c} "
                        f"for a {geom.d_out}x{geom.d_in} (lowered) base weight")


def _prefixed(layer: nn.Module, prefixes: tuple[str, ...], field: str) -> dict:
    """The per-adapter dict ``<prefix>_<field>`` of whichever prefix the layer has."""
    for prefix in prefixes:
        table = getattr(layer, f"{prefix}_{field}", None)
        if table is not None:
            return table
    raise _C.InputError(f"argument 'layer': expected one of {[f'{p}_{field}' for p in prefixes]} on "
                        f"{type(layer).__name__}, found none")


# How each registry hyper-parameter is read off a live PEFT layer, by name: one line per name, shared by every adapter
# that has it (an adapter's hyper-parameters are the registry's, so nothing here is per adapter).
_HYPER_FROM_LAYER: dict[str, Callable[[nn.Module, str], object]] = {
    "r": _rank,
    "init_r": _adalora_rank,  # AdaLoRA's layer stores config.init_r as its r
    "lora_alpha": lambda layer, a: float(layer.lora_alpha[a]),
    "alpha": _lycoris_alpha,  # LoHa/LoKr: scaling = alpha / r
    "use_rslora": _use_rslora,
    "lora_bias": lambda layer, a: bool(getattr(layer, "lora_bias", {}).get(a, False)),
    "exact_gradient": lambda layer, a: False,  # PEFT's semantics: DoRA's weight norm is detached
    "is_feedforward": lambda layer, a: bool(layer.is_feedforward),
    # the layer keeps only alpha / r; 12 significant digits undo the division's rounding (16/3 * 3 = 16.000000000000004)
    "randlora_alpha": lambda layer, a: float(f"{float(layer.scaling[a]) * _rank(layer, a):.12g}"),
    "block_size": lambda layer, a: int(layer.block_size[a]),
    "oft_block_size": lambda layer, a: int(_oft_rotation(layer, a).block_size),
    "use_cayley_neumann": lambda layer, a: bool(_oft_rotation(layer, a).use_cayley_neumann),
    "num_cayley_neumann_terms": lambda layer, a: int(_oft_rotation(layer, a).num_cayley_neumann_terms),
    "block_share": lambda layer, a: bool(_oft_rotation(layer, a).block_share),
    "boft_block_size": lambda layer, a: int(layer.boft_block_size[a]),
    "boft_n_butterfly_factor": lambda layer, a: int(layer.boft_R[a].shape[0]),
    "gralora_k": lambda layer, a: int(layer.gralora_k[a]),
    "hybrid_r": lambda layer, a: int(layer.hybrid_r[a]),
    # FourierFT's and WaveFT's coefficient count and factor, each layer keeping them under its own prefix
    "n_frequency": lambda layer, a: int(_prefixed(layer, ("fourierft", "waveft"), "n_frequency")[a]),
    "scaling": lambda layer, a: float(_prefixed(layer, ("fourierft", "waveft"), "scaling")[a]),
    "use_idwt": lambda layer, a: bool(layer.waveft_use_idwt[a]),
    "variant": lambda layer, a: int(str(layer.variant[a]).removeprefix("road_")),
    "group_size": lambda layer, a: int(layer.group_size[a]),
    "num_vectors": lambda layer, a: int(layer.vblora_vector_bank[a].shape[0]),
    "vector_length": lambda layer, a: int(layer.vblora_vector_bank[a].shape[1]),
    "topk": lambda layer, a: int(layer.topk[a]),
    "decompose_both": _lokr_decompose_both,
    "decompose_factor": _lokr_decompose_factor,
    "conv_kernel": _conv_kernel,
    "use_effective_conv2d": _tucker_form,
}


def _hyper_from_layer(name: str, layer: nn.Module, adapter: str) -> dict:
    hp = {}
    for h in info(name)["hyper"]:
        if h["kind"] == "derived":  # implied by the layer's dims and the rest; resolve_hyper recomputes it
            continue
        read = _HYPER_FROM_LAYER.get(h["name"])
        if read is None:
            raise NotImplementedError(f"gradguard.bridge: no reader for hyper-parameter '{h['name']}' of {name} "
                                      f"(add one to _HYPER_FROM_LAYER)")
        hp[h["name"]] = read(layer, adapter)
    return hp


def _layer_base(layer: nn.Module, name: str | None = None) -> tuple[nn.Module, "Geometry"]:
    """The PEFT layer's base layer and how it lowers to a Linear for registry adapter ``name`` (gradguard.layers;
    identified from the layer when not given)."""
    from .layers import geometry

    base = layer.get_base_layer()
    return base, geometry(base, name or _identify(layer, _active_adapter(layer)))


def layer_geometry(layer: nn.Module) -> "Geometry":
    """How a PEFT layer's base (Linear, Conv1d/2d/3d, Embedding, GPT-2 Conv1D) lowers to the Linear case."""
    return _layer_base(layer)[1]


# PEFT names some tensors differently on an Embedding (LoRA's factors are nn.Parameters there, not modules; OFT's
# rotation is its own module dict): registry key -> PEFT key.
_EMBEDDING_KEYS = {"lora_A.{adapter}.weight": "lora_embedding_A.{adapter}",
                   "lora_B.{adapter}.weight": "lora_embedding_B.{adapter}",
                   "oft_R.{adapter}.weight": "oft_embedding_R.{adapter}.weight"}


def _peft_key(spec: dict, geom, adapter: str) -> str:
    key = _EMBEDDING_KEYS.get(spec["peft_key"], spec["peft_key"]) if geom.kind == "Embedding" else spec["peft_key"]
    return key.replace("{adapter}", adapter)


def from_peft(layer: nn.Module, adapter: str | None = None) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """Read a live PEFT layer: ``(adapter name in the registry, hyper-parameters, {tensor name: tensor})``.

    Tensors are detached views of the layer's own parameters, reshaped to the registry's shapes; the base bias is
    zeros when the base layer has none.
    """
    from .layers import check_supported

    adapter = adapter or _active_adapter(layer)
    name = _identify(layer, adapter)
    _, geom = _layer_base(layer, name)
    check_supported(name, geom)
    hp = _hyper_from_layer(name, layer, adapter)
    return name, hp, {k: v.detach() for k, v in layer_tensors(layer, adapter, name, hp).items()}


def layer_sources(layer: nn.Module, adapter: str, name: str, hp: dict) -> dict[str, tuple[torch.Tensor, tuple]]:
    """{registry name: (the PEFT layer's own tensor, the registry's shape for it)} for every present tensor; the base
    bias is absent when the base layer has none. InputError when another tensor is missing. On a grouped convolution
    whose PEFT form keeps a tensor grouped (layers.GROUP_EXPANDED) the shape is that grouped layout: layers.to_registry
    expands the fitted tensor."""
    from .layers import expanded_tensors, grouped_shape, weight_as_linear

    base, geom = _layer_base(layer, name)
    shapes = _C.tensor_shapes(name, geom.d_in, geom.d_out, hp)
    for key in expanded_tensors(name, geom):
        if key != "weight" and key in shapes:
            shapes[key] = grouped_shape(tuple(shapes[key]), geom)
    out = {}
    for spec in info(name)["tensors"]:
        if spec["name"] not in shapes:
            continue
        if spec["name"] == "weight":  # GPT-2's Conv1D and Embedding keep it transposed: a reshape would scramble it
            out["weight"] = (weight_as_linear(base, geom), tuple(shapes["weight"]))
            continue
        t = _peft_tensor(layer, _peft_key(spec, geom, adapter))
        if t is None and spec["name"] != "bias":
            raise _C.InputError(f"argument 'layer': expected PEFT tensor '{spec['peft_key']}' for {name}, not found")
        if t is not None and spec["kind"] == "positions" and t.device != base.weight.device:
            # PEFT keeps index tables in plain dicts that .to()/.cuda() do not move (it moves them per call)
            t = t.to(base.weight.device)
        if t is not None:
            _check_own_size(spec, t, shapes[spec["name"]], _peft_key(spec, geom, adapter))
            out[spec["name"]] = (t, tuple(shapes[spec["name"]]))
    return out


def _check_own_size(spec: dict, t: torch.Tensor, shape, key: str) -> None:
    """Only frozen tensors may be leading blocks of larger shared ones (VeRA's projections); a trainable tensor of
    another size means PEFT built the layer for other dims (e.g. BOFT/HRA on a non-square kernel, sized by
    kernel_size[0]²), and a slice of it would train part of the parameter."""
    if spec["role"] == "trainable" and t.numel() != math.prod(shape):
        raise _C.InputError(f"argument 'layer': expected PEFT's {key} with {math.prod(shape)} entries "
                            f"(registry shape {list(shape)} for this layer), got shape {list(t.shape)}")


def layer_tensors(layer: nn.Module, adapter: str, name: str, hp: dict) -> dict[str, torch.Tensor]:
    """The registry tensors of a live PEFT layer as views of its own parameters (not detached: gradients reach the
    layer's nn.Parameters through them); the base bias is zeros when the base layer has none."""
    from .layers import to_registry

    geom = _layer_base(layer, name)[1]
    tensors = {k: to_registry(name, geom, k, fit(t, shape))
               for k, (t, shape) in layer_sources(layer, adapter, name, hp).items()}
    if "bias" not in tensors:
        w = tensors["weight"]
        tensors["bias"] = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    return tensors


def load_into_peft(layer: nn.Module, tensors: dict[str, torch.Tensor], adapter: str | None = None) -> None:
    """Copy registry tensors (e.g. a seeded case) into a PEFT layer's parameters, in place."""
    from .layers import expanded_tensors, take_groups, weight_from_linear

    adapter = adapter or _active_adapter(layer)
    name = _identify(layer, adapter)
    base, geom = _layer_base(layer, name)
    with torch.no_grad():
        for spec in info(name)["tensors"]:
            if spec["name"] not in tensors:
                continue
            if spec["name"] == "bias" and getattr(base, "bias", None) is None:
                if bool(tensors["bias"].any()):  # from_peft reads an absent bias as zeros: only zeros map back
                    raise _C.InputError("argument 'tensors': expected a zero 'bias' for a base layer without one, got "
                                        "non-zero values")
                continue
            if spec["name"] == "weight":
                w = weight_from_linear(tensors["weight"], base, geom)
                if w is not base.weight:  # an Embedding looked up by rows keeps its own table
                    base.weight.copy_(w)
                continue
            t = _peft_tensor(layer, _peft_key(spec, geom, adapter))
            if t is None:
                raise _C.InputError(f"argument 'layer': the PEFT layer has no '{spec['peft_key']}' for {spec['name']}")
            value = tensors[spec["name"]]
            if spec["name"] in expanded_tensors(name, geom):  # PEFT keeps it grouped: each row's own block
                value = take_groups(value, geom.groups)
            _check_own_size(spec, t, value.shape, _peft_key(spec, geom, adapter))
            fit(t, value.shape).copy_(value)
