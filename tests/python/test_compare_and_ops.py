"""gg.compare (eigen/torch/PEFT numerics), gg.from_peft, and the torch backend as an autograd op inside a live
model."""
import importlib
import json

import pytest
import torch
from torch import nn

import gradguard as gg
from gradguard.bridge import from_peft, make_peft_layer, peft_config
from gradguard.models import LLAMA_LINEARS, llama_batch, tiny_llama
from gradguard.ops import AdapterLinear

compare_mod = importlib.import_module("gradguard.compare")  # the module (gg.compare is the function)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.mark.parametrize("name", gg.adapters())
def test_compare_agrees_everywhere(name):
    res = gg.compare(name)
    assert res.ok, str(res)
    seen = {(r["backend"], r["dtype"]) for r in res.rows}
    assert seen == {(b, d) for b in ("eigen", "torch", "peft") for d in ("float64", "float32")}
    assert [s["backend"] for s in res.skipped] == ["cuda"]  # reported, never hidden
    json.dumps(res.to_json())


def test_compare_reports_what_peft_cannot_express():
    res = gg.compare("dora", exact_gradient=True)
    assert res.ok
    assert any(s["backend"] == "peft" and "detached" in s["reason"] for s in res.skipped)


def test_compare_fails_on_a_planted_deviation(monkeypatch):
    real = compare_mod._run_peft

    def off_by_scale(name, case, dtype):
        out = real(name, case, dtype)
        out["d lora_A"] = out["d lora_A"] * 1.001  # a 0.1% wrong scale on one gradient
        return out

    monkeypatch.setattr(compare_mod, "_run_peft", off_by_scale)
    res = gg.compare("lora")
    assert not res.ok
    assert {(r["backend"], r["tensor"]) for r in res.rows if not r["ok"]} == {("peft", "d lora_A")}


def test_compare_bad_input():
    with pytest.raises(gg.InputError, match="'backends'"):
        gg.compare("lora", backends=("eigen", "tpu"))
    with pytest.raises(gg.InputError, match="'dtype'"):
        gg.compare("lora", dtype="int8")


@pytest.mark.parametrize("name,hp", [("lora", {}), ("lora", {"use_rslora": True}), ("lora", {"lora_bias": True}),
                                     ("dora", {}), ("weight_lora", {}), ("my_lora", {"use_rslora": True})])
def test_from_peft_reads_name_hyper_parameters_and_tensors(name, hp):
    layer = make_peft_layer(name, nn.Linear(6, 4), {"r": 2, "lora_alpha": 16, **hp})
    got, got_hp, tensors = from_peft(layer)
    assert got == name
    assert got_hp["r"] == 2 and got_hp["lora_alpha"] == 16
    for k, v in hp.items():
        assert got_hp[k] == v
    shapes = gg._C.tensor_shapes(name, 6, 4, got_hp)
    assert {k: list(v.shape) for k, v in tensors.items()} == shapes


def test_from_peft_rejects_other_layers():
    with pytest.raises(gg.InputError, match="'layer'"):
        from_peft(nn.Linear(3, 3))


@pytest.mark.parametrize("name", gg.adapters())
def test_adapter_op_inside_a_live_llama(name):
    """Swap every PEFT layer of a tiny Llama for gradguard's op: same loss, and gg.check finds every adapter
    parameter trained (init_lora_weights=False so no factor is zero)."""
    from peft import get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(tiny_llama(0), peft_config(name, {"r": 4}, target_modules=LLAMA_LINEARS,
                                                      init_lora_weights=False))
    batch = llama_batch(0)
    peft_loss = model(**batch).loss.item()
    swapped = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if hasattr(child, "active_adapters") and hasattr(child, "get_base_layer") and child is not model:
                try:
                    replacement = AdapterLinear.from_peft(child)
                except gg.InputError:
                    continue
                setattr(parent, child_name, replacement)
                swapped += 1
    assert swapped == 2 * len(LLAMA_LINEARS)
    assert model(**batch).loss.item() == pytest.approx(peft_loss, rel=1e-5)
    report = gg.check(model, **batch)
    assert report.ok, str(report)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trained) == swapped * len(gg.registry.trainable_names(name, 32, 32, {"r": 4}))
    assert not report.notes  # nothing is zero: every parameter got a non-zero gradient


def test_adapter_op_bad_input():
    case = gg._C.make_case("lora", 6, 4, 3, 0, {"r": 2})
    t = dict(case["tensors"])
    with pytest.raises(gg.InputError, match=r"'x'.*\(\.\.\., 6\).*\(3, 5\)"):
        gg.adapter_linear("lora", torch.ones(3, 5, dtype=torch.float64), t, r=2)
    t["lora_A"] = t["lora_A"].float()
    with pytest.raises(gg.InputError, match="lora_A.*dtype"):
        gg.adapter_linear("lora", case["x"], t, r=2)
    with pytest.raises(gg.InputError, match="'weight'"):
        gg.adapter_linear("lora", case["x"], {}, r=2)
