"""The cuda backend (cuBLAS + gradguard's fused kernels) on a GPU: numerics against the float64 reference under the
policy of DESIGN.md §4 at every dtype, finite differences in float64 on the device, bitwise determinism of the
backward, bad input, and gg.fast_path on a bf16 Llama with gg.check. Every test skips with the reason when no GPU
is visible (pytest -rs prints it); bench/gpu-check.sh runs them on a lent GPU."""
import pytest
import torch

import gradguard as gg
from gradguard.bridge import peft_config
from gradguard.models import LLAMA_LINEARS, llama_batch, tiny_llama

STATUS = gg.cuda_status()
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not STATUS["available"], reason=f"cuda backend unavailable: {STATUS['reason']}")]
WITH_KERNELS = STATUS["adapters"] or ["lora", "dora", "weight_lora", "my_lora"]
SHAPES = [(11, 7, 5), (64, 48, 33), (256, 512, 130)]  # (d_in, d_out, n_rows): odd sizes and vector-aligned ones


@pytest.mark.parametrize("name", WITH_KERNELS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_numerics_against_the_float64_reference(name, shape):
    d_in, d_out, n = shape
    res = gg.compare(name, backends=("eigen", "cuda"), d_in=d_in, d_out=d_out, n_rows=n, seed=3)
    assert not res.skipped, res.skipped
    assert {r["dtype"] for r in res.rows if r["backend"] == "cuda"} == {"float64", "float32", "bfloat16", "float16"}
    assert res.ok, str(res)


@pytest.mark.parametrize("name", WITH_KERNELS)
@pytest.mark.parametrize("mode", ["fast", "full"])
def test_gradcheck_on_the_device(name, mode):
    res = gg.gradcheck(name, d_in=9, d_out=6, backend="cuda", mode=mode)
    assert res.ok, str(res)


def test_dora_exact_gradient_on_the_device():
    assert gg.gradcheck("dora", d_in=9, d_out=6, backend="cuda", mode="full", exact_gradient=True).ok
    assert gg.compare("dora", backends=("eigen", "cuda"), d_in=40, d_out=24, n_rows=17, exact_gradient=True).ok


@pytest.mark.parametrize("name", WITH_KERNELS)
def test_backward_is_bitwise_deterministic(name):
    case = gg._C.make_case(name, 256, 192, 300, 5, {"r": 16})
    dev = torch.device("cuda")
    x = case["x"].to(dev, torch.bfloat16).requires_grad_(True)
    tensors = {k: v.to(dev, torch.bfloat16) for k, v in case["tensors"].items()}
    trainable = [t["name"] for t in gg.info(name)["tensors"] if t["role"] == "trainable" and t["name"] in tensors]
    for k in trainable:
        tensors[k].requires_grad_(True)
    dy = case["dy"].to(dev, torch.bfloat16)
    first = None
    for _ in range(20):
        y = gg.adapter_linear(name, x, tensors, backend="cuda", **case["hp"])
        grads = torch.autograd.grad(y, [x] + [tensors[k] for k in trainable], dy)
        got = [y.detach()] + [g for g in grads]
        if first is None:
            first = got
        for a, b in zip(first, got):
            assert torch.equal(a, b)


def test_bad_input_names_the_argument():
    case = gg._C.make_case("lora", 8, 8, 3, 0, {"r": 2})
    with pytest.raises(gg.InputError, match="'x'.*CUDA tensor"):
        gg.adapter_linear("lora", case["x"], case["tensors"], backend="cuda", **case["hp"])
    dev = {k: v.cuda() for k, v in case["tensors"].items()}
    with pytest.raises(gg.InputError, match="'x'.*float32 or float64 on the torch backend"):
        gg.adapter_linear("lora", case["x"].cuda().bfloat16(), {k: v.bfloat16() for k, v in dev.items()}, **case["hp"])
    with pytest.raises(gg.InputError, match="tensors\\['lora_A'\\]"):
        gg.adapter_linear("lora", case["x"].cuda(), {**dev, "lora_A": dev["lora_A"][:1]}, backend="cuda", **case["hp"])
    with pytest.raises(gg.InputError, match="device"):
        gg.adapter_linear("lora", case["x"].cuda(), {**dev, "lora_B": case["tensors"]["lora_B"]}, backend="cuda", **case["hp"])


@pytest.mark.parametrize("name", ["lora", "dora", "weight_lora", "my_lora"])
def test_fast_path_on_a_bf16_llama_trains_every_parameter(name):
    from peft import get_peft_model

    hp = {"r": 4}
    model = get_peft_model(tiny_llama(0), peft_config(name, hp, init_weights=False, target_modules=LLAMA_LINEARS))
    model = model.to("cuda", torch.bfloat16)
    batch = {k: v.cuda() for k, v in llama_batch().items()}
    ref = model(**batch).logits.float()
    report = gg.fast_path(model)
    assert report.backend == "cuda" and len(report.swapped) == 2 * len(LLAMA_LINEARS), str(report)
    out = model(**batch).logits.float()
    assert (out - ref).abs().max() <= 0.05 * ref.abs().max()  # bf16 end to end: a loose sanity bound only
    flow = gg.check(model, **batch)
    assert flow.ok, str(flow)
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
