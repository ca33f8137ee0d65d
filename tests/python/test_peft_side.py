"""gradguard.peft: my_lora and weight_lora run through the stock, pip-installed PEFT on a tiny random Llama.

Run: PYTHONPATH=src/python python -m pytest -q tests/python/test_peft_side.py
"""

from __future__ import annotations

import enum
import importlib
import json
import math
import os
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import gradguard.peft as gp
from gradguard.peft import MyLoraConfig, MyLoraModel, WeightLoraConfig, WeightLoraModel
from gradguard.peft._registration import add_enum_member
from gradguard.peft.my_lora import MyLoraLayer
from gradguard.peft.weight_lora import WeightLoraLayer

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
from peft import PeftConfig, PeftModel, get_peft_model  # noqa: E402
from peft.mapping import (  # noqa: E402
    PEFT_TYPE_TO_CONFIG_MAPPING,
    PEFT_TYPE_TO_PREFIX_MAPPING,
    PEFT_TYPE_TO_TUNER_MAPPING,
)
from peft.utils.peft_types import PeftType  # noqa: E402

TARGETS = ("q_proj", "v_proj")
N_LAYERS = 2
R, ALPHA = 8, 16


@dataclass(frozen=True)
class Spec:
    name: str
    config_cls: type
    model_cls: type
    layer_cls: type
    peft_type: str
    prefix: str
    containers: tuple[str, str, str]  # A, B, gate
    param_suffixes: tuple[str, ...]  # state-dict suffixes of one adapter's parameters (adapter name "default")


MY_LORA = Spec(
    "my_lora", MyLoraConfig, MyLoraModel, MyLoraLayer, "MY_LORA", "lora_",
    ("lora_A", "lora_B", "lora_gate"),
    ("lora_A.default.weight", "lora_B.default.weight", "lora_gate.default"),
)
WEIGHT_LORA = Spec(
    "weight_lora", WeightLoraConfig, WeightLoraModel, WeightLoraLayer, "WEIGHT_LORA", "weight_lora_",
    ("weight_lora_A", "weight_lora_B", "weight_lora_w"),
    ("weight_lora_A.default", "weight_lora_B.default", "weight_lora_w.default"),
)
SPECS = pytest.mark.parametrize("spec", [MY_LORA, WEIGHT_LORA], ids=lambda s: s.name)


def make_base(dtype=torch.float32, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=128,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).to(dtype).eval()


def make_peft(spec, dtype=torch.float32, **kw):
    kw = {"r": R, "lora_alpha": ALPHA, "target_modules": list(TARGETS), "lora_dropout": 0.0, **kw}
    model = get_peft_model(make_base(dtype), spec.config_cls(**kw))
    return model.eval()


def ids():
    return torch.randint(0, 128, (2, 7), generator=torch.Generator().manual_seed(1))


def logits(model):
    with torch.no_grad():
        return model(ids()).logits


def adapted_layers(model):
    return [getattr(model.base_model.model.model.layers[i].self_attn, t) for i in range(N_LAYERS) for t in TARGETS]


def expected_adapter_param_names(spec, adapter="default"):
    return {
        f"base_model.model.model.layers.{i}.self_attn.{t}.{s.replace('default', adapter)}"
        for i in range(N_LAYERS) for t in TARGETS for s in spec.param_suffixes
    }


def manual_delta(spec, layer, x):
    """The documented adapter formula, written independently of the layer code."""
    A, B, g = (getattr(layer, c)["default"] for c in spec.containers)
    s = layer.scaling["default"]
    if spec is MY_LORA:
        return s * ((x @ A.weight.T) * g) @ B.weight.T
    return (s * g) * ((x @ A) @ B)


# ---------------------------------------------------------------------------------------------- registration
def test_peft_type_members_behave_like_builtin_ones():
    for name in ("MY_LORA", "WEIGHT_LORA"):
        member = PeftType(name)
        assert member is getattr(PeftType, name) is PeftType[name] is PeftType.__members__[name]
        assert member == name and member.value == name and member.name == name
        assert name in list(PeftType) and member in list(PeftType)
        assert isinstance(member, str) and json.dumps(member) == f'"{name}"'
    assert len(list(PeftType)) == len(PeftType) == len(PeftType._member_names_)
    assert PeftType.LORA == "LORA"  # built-in members untouched


@SPECS
def test_peft_mappings_hold_the_new_type(spec):
    assert PEFT_TYPE_TO_CONFIG_MAPPING[spec.peft_type] is spec.config_cls  # plain-str lookup, as from_pretrained does
    assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType(spec.peft_type)] is spec.model_cls
    assert PEFT_TYPE_TO_PREFIX_MAPPING[PeftType(spec.peft_type)] == spec.prefix == spec.model_cls.prefix
    cfg = spec.config_cls(r=4, target_modules=["q_proj"])
    assert cfg.peft_type is PeftType(spec.peft_type)
    assert cfg.to_dict()["peft_type"] == spec.peft_type
    assert type(PeftConfig.from_peft_type(**cfg.to_dict())) is spec.config_cls


def test_import_twice_and_reload_are_harmless():
    n_members = len(PeftType)
    import gradguard.peft as again

    assert again is gp
    for mod in ("gradguard.peft._registration", "gradguard.peft.my_lora", "gradguard.peft.weight_lora",
                "gradguard.peft"):
        importlib.reload(importlib.import_module(mod))
    assert len(PeftType) == n_members
    assert PEFT_TYPE_TO_CONFIG_MAPPING["MY_LORA"] is MyLoraConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["WEIGHT_LORA"] is WeightLoraModel
    make_peft(MY_LORA)  # still usable


@pytest.mark.parametrize("use_proto", [True, False], ids=["enum-machinery", "manual"])
def test_add_enum_member_both_paths(use_proto):
    class E(str, enum.Enum):
        A = "A"

    b = add_enum_member(E, "B", "B", use_proto=use_proto)
    assert E("B") is E.B is E["B"] is b and b == "B" and list(E) == [E.A, E.B] and len(E) == 2
    assert add_enum_member(E, "B", "B", use_proto=use_proto) is b  # idempotent
    with pytest.raises(ValueError):
        add_enum_member(E, "B", "other", use_proto=use_proto)
    with pytest.raises(ValueError):
        add_enum_member(E, "C", "A", use_proto=use_proto)  # value already taken


# ---------------------------------------------------------------------------------------------- structure
@SPECS
def test_get_peft_model_structure_and_trainable_names(spec, capsys):
    model = make_peft(spec)
    model.print_trainable_parameters()
    assert "trainable params" in capsys.readouterr().out
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected_adapter_param_names(spec)
    assert isinstance(model.base_model, spec.model_cls)
    r = R
    for layer in adapted_layers(model):  # q_proj is 32 -> 32, v_proj 32 -> 16 (2 kv heads)
        d_in, d_out = layer.base_layer.in_features, layer.base_layer.out_features
        assert isinstance(layer, spec.layer_cls) and isinstance(layer.base_layer, nn.Linear)
        assert layer.active_adapters == ["default"]
        assert layer.adapter_layer_names == spec.containers
        assert set(layer.other_param_names) >= {"r", "lora_alpha", "scaling", layer.dropout_name}
        assert layer.r == {"default": R} and layer.scaling["default"] == ALPHA / R
        A, B, g = (layer.adapter_tensors("default")[c] for c in spec.containers)
        if spec is MY_LORA:
            assert A.shape == (r, d_in) and B.shape == (d_out, r) and g.shape == (r,)
        else:
            assert A.shape == (d_in, r) and B.shape == (r, d_out) and g.shape == ()


@SPECS
def test_default_init_values_and_identity(spec):
    model = make_peft(spec)
    for layer in adapted_layers(model):
        A, B, g = (layer.adapter_tensors("default")[c] for c in spec.containers)
        # kaiming_uniform_(a=sqrt(5)) bound is 1/sqrt(fan_in); torch's fan_in is dim 1 of the stored tensor
        bound = 1 / math.sqrt(A.shape[1])
        assert A.abs().max() <= bound and A.abs().max() > bound / 2
        assert torch.count_nonzero(B) == 0 and torch.all(g == 1)
    with model.disable_adapter():
        base_out = logits(model)
    assert torch.equal(logits(model), base_out)
    assert torch.equal(logits(make_base()), base_out)


@SPECS
def test_non_linear_target_raises(spec):
    with pytest.raises(ValueError, match=r"'model\.layers\.0\.mlp'.*LlamaMLP"):
        get_peft_model(make_base(), spec.config_cls(r=4, target_modules=["mlp"]))


@SPECS
def test_config_options(spec):
    layer = adapted_layers(make_peft(spec, use_rslora=True))[0]
    assert layer.scaling["default"] == pytest.approx(ALPHA / math.sqrt(R))
    layer = adapted_layers(make_peft(spec, rank_pattern={"v_proj": 2}))[1]
    assert layer.r["default"] == 2 and layer.scaling["default"] == ALPHA / 2
    assert isinstance(adapted_layers(make_peft(spec, lora_dropout=0.1))[0].dropout["default"], nn.Dropout)
    for bad in ({"use_dora": True}, {"init_lora_weights": "gaussian"}, {"lora_bias": True}):
        with pytest.raises(ValueError):
            spec.config_cls(r=4, target_modules=["q_proj"], **bad)


# ---------------------------------------------------------------------------------------------- maths
@SPECS
def test_layer_forward_matches_formula(spec):
    model = make_peft(spec, dtype=torch.float64, init_lora_weights=False)
    for layer in adapted_layers(model):
        x = torch.randn(3, 5, 32, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), layer.base_layer(x) + manual_delta(spec, layer, x), rtol=0,
                                       atol=1e-12)
            torch.testing.assert_close(x @ layer.get_delta_weight("default").T, manual_delta(spec, layer, x),
                                       rtol=0, atol=1e-12)


@SPECS
def test_merge_unmerge_disable(spec):
    model = make_peft(spec, dtype=torch.float64, init_lora_weights=False)
    for layer in adapted_layers(model):
        assert torch.count_nonzero(layer.adapter_tensors("default")[spec.containers[1]]) > 0
    base_weights = [layer.base_layer.weight.detach().clone() for layer in adapted_layers(model)]
    base_out = logits(make_base(torch.float64))
    unmerged = logits(model)
    assert (unmerged - base_out).abs().max() > 1e-6  # the adapter really acts
    with model.disable_adapter():
        torch.testing.assert_close(logits(model), base_out, rtol=0, atol=0)
    model.merge_adapter()
    assert all(layer.merged for layer in adapted_layers(model))
    torch.testing.assert_close(logits(model), unmerged, rtol=0, atol=1e-10)
    with model.disable_adapter():  # disabling a merged model unmerges it, as in PEFT LoRA
        torch.testing.assert_close(logits(model), base_out, rtol=0, atol=1e-10)
    model.merge_adapter()
    model.unmerge_adapter()
    for w0, layer in zip(base_weights, adapted_layers(model)):
        torch.testing.assert_close(layer.base_layer.weight, w0, rtol=0, atol=1e-12)
    torch.testing.assert_close(logits(model), unmerged, rtol=0, atol=1e-12)
    merged_plain = model.merge_and_unload()
    assert not any(isinstance(m, spec.layer_cls) for m in merged_plain.modules())
    assert isinstance(merged_plain.model.layers[0].self_attn.q_proj, nn.Linear)
    with torch.no_grad():
        torch.testing.assert_close(merged_plain(ids()).logits, unmerged, rtol=0, atol=1e-10)


@SPECS
def test_merge_float32_within_1e5(spec):
    model = make_peft(spec, init_lora_weights=False)
    unmerged = logits(model)
    model.merge_adapter()
    torch.testing.assert_close(logits(model), unmerged, rtol=0, atol=1e-5)


@SPECS
def test_every_adapter_param_gets_a_finite_grad(spec):
    model = make_peft(spec, init_lora_weights=False).train()
    out = model(ids(), labels=ids())
    out.loss.backward()
    params = dict(model.named_parameters())
    for name in expected_adapter_param_names(spec):
        grad = params[name].grad
        assert grad is not None, name
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert all(p.grad is None for n, p in params.items() if n not in expected_adapter_param_names(spec))


@SPECS
def test_gate_changes_output(spec):
    model = make_peft(spec, dtype=torch.float64, init_lora_weights=False)
    base_out = logits(make_base(torch.float64))
    before = logits(model)
    gate_name = spec.containers[2]
    with torch.no_grad():
        for layer in adapted_layers(model):
            gate = getattr(layer, gate_name)["default"]
            gate.mul_(0.0) if spec is WEIGHT_LORA else gate[: R // 2].zero_()
    after = logits(model)
    assert (after - before).abs().max() > 1e-6
    if spec is WEIGHT_LORA:  # w = 0 switches the adapter off exactly
        torch.testing.assert_close(after, base_out, rtol=0, atol=0)
    with torch.no_grad():  # all-zero my_lora gate does the same
        for layer in adapted_layers(model):
            getattr(layer, gate_name)["default"].zero_()
    torch.testing.assert_close(logits(model), base_out, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- save / load
@SPECS
@pytest.mark.parametrize("low_cpu_mem_usage", [False, True], ids=["plain", "low_cpu_mem"])
def test_save_load_round_trip(spec, low_cpu_mem_usage, tmp_path):
    model = make_peft(spec, init_lora_weights=False)
    with torch.no_grad():  # make the gates non-trivial so that a lost gate would show
        for layer in adapted_layers(model):
            getattr(layer, spec.containers[2])["default"].mul_(1.5)
    expected = logits(model)
    model.save_pretrained(tmp_path)
    with open(os.path.join(tmp_path, "adapter_config.json")) as f:
        assert json.load(f)["peft_type"] == spec.peft_type
    from safetensors.torch import load_file

    saved = load_file(os.path.join(tmp_path, "adapter_model.safetensors"))
    assert set(saved) == {k.replace(".default", "") for k in expected_adapter_param_names(spec)}

    torch.manual_seed(123)  # fresh adapters would be initialised differently: the loaded weights must win
    loaded = PeftModel.from_pretrained(make_base(), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage).eval()
    assert type(loaded.peft_config["default"]) is spec.config_cls
    assert loaded.peft_config["default"].peft_type is PeftType(spec.peft_type)
    assert isinstance(loaded.base_model, spec.model_cls)
    assert torch.equal(logits(loaded), expected)
    assert type(PeftConfig.from_pretrained(tmp_path)) is spec.config_cls


@SPECS
def test_second_adapter_and_active_adapters(spec):
    model = make_peft(spec)
    model.add_adapter("other", spec.config_cls(r=4, lora_alpha=8, target_modules=list(TARGETS)))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected_adapter_param_names(spec)
    model.set_adapter("other")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected_adapter_param_names(spec, "other")
    for layer in adapted_layers(model):
        assert layer.active_adapters == ["other"] and layer.r == {"default": R, "other": 4}
    model.delete_adapter("default")
    assert adapted_layers(model)[0].r == {"other": 4}
