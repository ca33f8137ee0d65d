"""gg.fast_path: PEFT adapter layers of a live model run through gradguard's op, same outputs and gradients as PEFT's
own forward, and every adapter parameter keeps its gradient (gg.check). CPU, torch backend; the cuda backend's
version of these checks is in test_cuda.py."""
import pytest
import torch

import gradguard as gg
from gradguard.bridge import peft_config, peft_supported
from gradguard.peft_defects import defect_free_hp
from gradguard.registry import declares_cuda, rank_hp
from gradguard.models import LLAMA_COMMON_DIMS, LLAMA_LINEARS, llama_batch, tiny_llama

ADAPTERS = [name for name in gg.adapters() if peft_supported(name)]  # every adapter PEFT can apply


def _model(name: str, **extra):
    from peft import get_peft_model

    # PEFT's layer is the reference here, so stay out of its known defects (C3A's input gradient at block_size >= 3)
    hp = defect_free_hp(name, rank_hp(name, 4, *LLAMA_COMMON_DIMS))
    targets = LLAMA_LINEARS if name != "ia3" else ["k_proj", "v_proj", "down_proj"]
    cfg = peft_config(name, hp, init_weights=False, target_modules=targets, **extra)
    model = get_peft_model(tiny_llama(0), cfg).double()
    return model


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.logits.detach(), grads


@pytest.mark.parametrize("name", ADAPTERS)
def test_swapped_model_matches_peft_and_trains_every_parameter(name, monkeypatch):
    model = _model(name)
    batch = llama_batch()
    ref_logits, ref_grads = _loss_and_grads(model, batch)

    calls = []
    real = gg._C.adapter_apply
    monkeypatch.setattr(gg._C, "adapter_apply", lambda *a: calls.append(a[0]) or real(*a))
    report = gg.fast_path(model, backend="torch")
    n_layers = sum(1 for _ in report.swapped)
    assert n_layers > 0 and not report.skipped, str(report)
    logits, grads = _loss_and_grads(model, batch)
    assert len(calls) == n_layers and set(calls) == {name}  # every swapped layer ran gradguard's op, once
    # float64 agreement, or the registry's declared tolerance for a known PEFT precision deviation (C3A's float32)
    over = next((o for o in gg.info(name)["tolerance_overrides"] if o["check"] == "peft"), None)
    atol, rtol = (over["atol"], over["rtol"]) if over else (1e-10, 1e-9)
    torch.testing.assert_close(logits, ref_logits, rtol=rtol if over else 1e-10, atol=atol)
    assert grads.keys() == ref_grads.keys()
    for k in grads:
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=rtol, atol=atol, msg=lambda m: f"{k}: {m}")
    flow = gg.check(model, **batch)
    assert flow.ok, str(flow)
    assert all(g.abs().sum() > 0 for k, g in grads.items()), "init_weights=False: no gradient may be exactly zero"

    report.undo()
    calls.clear()
    logits, _ = _loss_and_grads(model, batch)
    assert not calls
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0)


def test_layers_it_cannot_fuse_stay_on_peft_with_the_reason():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(0), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.1))
    report = gg.fast_path(model, backend="torch")
    assert not report.swapped and len(report.skipped) == 4
    assert all("lora_dropout = 0.1" in reason for _, reason in report.skipped)
    assert "left on PEFT" in str(report)


def test_merged_layers_are_skipped():
    model = _model("lora")
    model.merge_adapter()
    report = gg.fast_path(model, backend="torch")
    assert not report.swapped and all("merged" in r for _, r in report.skipped)


def test_bad_backend_names_the_argument():
    model = _model("lora")
    with pytest.raises(gg.InputError, match="'backend'"):
        gg.fast_path(model, backend="tpu")
    if not gg.cuda_status()["available"]:
        with pytest.raises(gg.InputError, match="'cuda' is unavailable"):
            gg.fast_path(model, backend="cuda")


def test_cuda_status_says_why():
    s = gg.cuda_status()
    assert set(s) == {"available", "reason", "adapters"}
    assert s["adapters"] in ([], declares_cuda())  # built without nvcc, or every adapter the registry says has kernels
    assert {"lora", "dora", "weight_lora", "my_lora"} <= set(declares_cuda())
    assert s["available"] == (s["reason"] == "")
    if not s["available"]:
        assert "CUDA" in s["reason"] or "cuda" in s["reason"]
