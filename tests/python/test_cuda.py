"""The cuda backend (cuBLAS + gradguard's fused kernels) on a GPU: numerics against the float64 reference under the
policy of DESIGN.md §4 at every dtype, finite differences in float64 on the device, bitwise determinism of the
backward, bad input, and gg.fast_path on a bf16 Llama with gg.check. Every test skips with the reason when no GPU
is visible (pytest -rs prints it); bench/gpu-check.sh runs them on a lent GPU.

GG_CUDA_REHEARSAL=1 runs the same tests on the CPU against the torch backend in float64/float32 (the device-only
checks skip, saying so): the suite's own parameters — shapes, ranks, flags, models — are then exercised on every CI
run (tests/python/test_cuda_rehearsal.py), so a mistake in them is not first found on a GPU's scarce minutes."""
import os

import pytest
import torch

import gradguard as gg
from gradguard.bridge import peft_config
from gradguard.models import LLAMA_COMMON_DIMS, LLAMA_LINEARS, llama_batch, tiny_llama
from gradguard.registry import declares_cuda, rank_hp

STATUS = gg.cuda_status()
REHEARSAL = os.environ.get("GG_CUDA_REHEARSAL") == "1"
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not (STATUS["available"] or REHEARSAL),
                                 reason=f"cuda backend unavailable: {STATUS['reason']}")]
device_only = pytest.mark.skipif(REHEARSAL, reason="GG_CUDA_REHEARSAL: checks only a CUDA device can make")
WITH_KERNELS = STATUS["adapters"] or declares_cuda()  # this build's, or (built without nvcc) the registry's
# What the tests run on: the cuda backend on the GPU in every dtype, or (rehearsal) the torch backend on the CPU.
BACKEND, DEVICE = ("torch", "cpu") if REHEARSAL else ("cuda", "cuda")
DTYPES = {"float64", "float32"} if REHEARSAL else {"float64", "float32", "bfloat16", "float16"}
LOW = torch.float32 if REHEARSAL else torch.bfloat16  # the training dtype of the determinism and Llama tests
SHAPES = [(11, 7, 5), (64, 48, 33), (256, 512, 130)]  # (d_in, d_out, n_rows): odd sizes and vector-aligned ones


@pytest.mark.parametrize("name", WITH_KERNELS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_numerics_against_the_float64_reference(name, shape):
    d_in, d_out, n = shape
    res = gg.compare(name, backends=(BACKEND,), d_in=d_in, d_out=d_out, n_rows=n, seed=3)
    assert not res.skipped, res.skipped
    assert {r["dtype"] for r in res.rows if r["backend"] == BACKEND} == DTYPES
    assert res.ok, str(res)


@pytest.mark.parametrize("name", WITH_KERNELS)
@pytest.mark.parametrize("mode", ["fast", "full"])
def test_gradcheck_on_the_device(name, mode):
    res = gg.gradcheck(name, d_in=9, d_out=6, backend=BACKEND, mode=mode, **rank_hp(name, 3, 9, 6))
    assert res.ok, str(res)


FLAG_VARIANTS = [(name, h["name"]) for name in WITH_KERNELS for h in gg.info(name)["hyper"] if h["kind"] == "bool"]


@pytest.mark.parametrize("name,flag", FLAG_VARIANTS, ids=lambda v: str(v))
def test_every_flag_flipped_against_the_float64_reference(name, flag):
    """use_rslora, lora_bias, exact_gradient, IA3's input form (is_feedforward): each away from its default."""
    default = next(h["default"] for h in gg.info(name)["hyper"] if h["name"] == flag)
    hp = {flag: not default}
    assert gg.gradcheck(name, d_in=9, d_out=6, backend=BACKEND, mode="full", **rank_hp(name, 3, 9, 6), **hp).ok
    res = gg.compare(name, backends=(BACKEND,), d_in=40, d_out=24, n_rows=17, **hp)
    assert res.ok, str(res)


def test_dora_exact_gradient_on_the_device():
    assert gg.gradcheck("dora", d_in=9, d_out=6, backend=BACKEND, mode="full", r=3, exact_gradient=True).ok
    assert gg.compare("dora", backends=(BACKEND,), d_in=40, d_out=24, n_rows=17, exact_gradient=True).ok


@pytest.mark.parametrize("name", WITH_KERNELS)
def test_backward_is_bitwise_deterministic(name):
    case = gg._C.make_case(name, 256, 192, 300, 5, rank_hp(name, 16, 256, 192))
    dev = torch.device(DEVICE)
    x = case["x"].to(dev, LOW).requires_grad_(True)
    tensors = {k: v.to(dev, LOW) for k, v in case["tensors"].items()}
    trainable = [t["name"] for t in gg.info(name)["tensors"] if t["role"] == "trainable" and t["name"] in tensors]
    for k in trainable:
        tensors[k].requires_grad_(True)
    dy = case["dy"].to(dev, LOW)
    first = None
    for _ in range(20):
        y = gg.adapter_linear(name, x, tensors, backend=BACKEND, **case["hp"])
        grads = torch.autograd.grad(y, [x] + [tensors[k] for k in trainable], dy)
        got = [y.detach()] + [g for g in grads]
        if first is None:
            first = got
        for a, b in zip(first, got):
            assert torch.equal(a, b)


@device_only
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


@pytest.mark.parametrize("name", WITH_KERNELS)
def test_fast_path_on_a_bf16_llama_trains_every_parameter(name):
    from peft import get_peft_model

    hp = rank_hp(name, 4, *LLAMA_COMMON_DIMS)
    targets = LLAMA_LINEARS if name != "ia3" else ["k_proj", "v_proj", "down_proj"]  # as test_fast_path.py
    model = get_peft_model(tiny_llama(0), peft_config(name, hp, init_weights=False, target_modules=targets))
    model = model.to(DEVICE, LOW)
    batch = {k: v.to(DEVICE) for k, v in llama_batch().items()}
    ref = model(**batch).logits.float()
    report = gg.fast_path(model)
    assert report.backend == BACKEND and len(report.swapped) == 2 * len(targets), str(report)
    out = model(**batch).logits.float()
    assert (out - ref).abs().max() <= 0.05 * ref.abs().max()  # bf16 end to end: a loose sanity bound only
    flow = gg.check(model, **batch)
    assert flow.ok, str(flow)
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
