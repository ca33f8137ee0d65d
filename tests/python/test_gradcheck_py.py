"""gg.gradcheck and gg.gradcheck_module: pass on healthy code, FAIL on planted wrong backwards (fast and full), and
find PEFT's deliberate DoRA deviation from the true gradient."""
import pytest
import torch
from torch import nn

import gradguard as gg
from gradguard.bridge import load_into_peft, make_peft_layer
from gradguard.registry import check_dims, rank_hp

MODES = ["fast", "full"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", ["eigen", "torch"])
@pytest.mark.parametrize("name", gg.adapters())
def test_registry_gradcheck_passes(name, backend, mode):
    d_in, d_out = check_dims(name, 7, 5)  # the odd/prime shape, or the nearest the adapter takes (RoAd: d_out 6)
    res = gg.gradcheck(name, d_in=d_in, d_out=d_out, backend=backend, mode=mode, **rank_hp(name, 3, d_in, d_out))
    assert res.ok, str(res)
    assert {t["name"] for t in res.tensors} >= {"x"}
    # x plus every trainable tensor present at these dims and hyper-parameters (LoKr's factored sides depend on both)
    present = gg._C.tensor_shapes(name, d_in, d_out, gg._C.resolve_hyper(name, d_in, d_out, rank_hp(name, 3, d_in, d_out)))
    trainable = [t["name"] for t in gg.info(name)["tensors"] if t["role"] == "trainable" and t["name"] in present]
    assert sorted(t["name"] for t in res.tensors) == sorted(["x"] + trainable)


def test_gradcheck_of_every_adapter_two_backends_is_fast():
    import time

    t0 = time.perf_counter()
    for name in gg.adapters():
        for backend in ("eigen", "torch"):
            assert gg.gradcheck(name, d_in=8, d_out=8, backend=backend, **rank_hp(name, 2, 8, 8)).ok
    # not a timing assertion: the benchmark reports the figure; this only guards against a pathological regression
    assert time.perf_counter() - t0 < 120


class _Linear(nn.Module):
    """y = x Wᵀ through a custom Function whose backward can be planted wrong."""

    def __init__(self, bug: str | None):
        super().__init__()
        torch.manual_seed(0)
        self.weight = nn.Parameter(torch.randn(4, 5, dtype=torch.float64))
        self.bug = bug

    def forward(self, x):
        return _PlantedMatmul.apply(x, self.weight, self.bug)


class _PlantedMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, bug):
        ctx.save_for_backward(x, w)
        ctx.bug = bug
        return x @ w.T

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dx, dw = dy @ w, dy.T @ x
        if ctx.bug == "wrong_scale":
            dw = 2 * dw
        elif ctx.bug == "transposed":
            dw = (x.T @ dy).reshape(dw.shape)  # the factor transposed, reshaped to fit
        elif ctx.bug == "dropped_term":
            dx = torch.zeros_like(dx)
        return dx, dw, None


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_module_passes_on_a_correct_backward(mode):
    assert gg.gradcheck_module(_Linear(None), torch.randn(3, 5, dtype=torch.float64), mode=mode).ok


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bug,tensor", [("wrong_scale", "weight"), ("transposed", "weight"), ("dropped_term", "input[0]")])
def test_gradcheck_module_fails_on_planted_bug(bug, tensor, mode):
    res = gg.gradcheck_module(_Linear(bug), torch.randn(3, 5, dtype=torch.float64), mode=mode)
    assert not res.ok
    assert [t["name"] for t in res.failing()] == [tensor]


def _variant_id(v):
    return v if isinstance(v, str) else "-".join(v) or "default"


def _peft_layer(name, **hp):
    torch.manual_seed(0)
    hp = {**rank_hp(name, 3, 7, 5), **hp}
    layer = make_peft_layer(name, nn.Linear(7, 5), hp).double()
    case = gg._C.make_case(name, 7, 5, 3, 1, hp)
    load_into_peft(layer, case["tensors"])  # every factor non-zero
    layer.get_base_layer().requires_grad_(False)  # frozen, as in a PEFT model
    return layer, case["x"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,hp", [("lora", {}), ("weight_lora", {}), ("my_lora", {}), ("adalora", {}),
                                     ("ia3", {}), ("ia3", {"is_feedforward": True})], ids=_variant_id)
def test_peft_layers_pass(name, hp, mode):
    """PEFT's own layers (not gradguard's code) pass finite differences: their backward is the true gradient."""
    layer, x = _peft_layer(name, **hp)
    res = gg.gradcheck_module(layer, x, mode=mode)
    assert res.ok, str(res)
    keys = {t["peft_key"].replace("{adapter}", "default") for t in gg.info(name)["tensors"] if t["role"] == "trainable"}
    assert keys & {t["name"] for t in res.tensors}  # the adapter's own parameters were checked


@pytest.mark.parametrize("mode", MODES)
def test_peft_dora_gradient_is_not_the_true_gradient(mode):
    """PEFT detaches DoRA's weight norm on purpose (paper §4.3): finite differences of PEFT's own forward disagree
    with its backward exactly on the factors the norm depends on. gradguard offers both semantics (exact_gradient)."""
    layer, x = _peft_layer("dora")
    res = gg.gradcheck_module(layer, x, mode=mode)
    assert not res.ok
    failing = {t["name"].split(".")[0] for t in res.failing()}
    assert failing == {"lora_A", "lora_B"}
    assert gg.gradcheck("dora", d_in=7, d_out=5, mode=mode, r=3, exact_gradient=True).ok


def test_gradcheck_rejects_low_precision_and_bad_input():
    with pytest.raises(gg.InputError, match="'dtype'.*float64"):
        gg.gradcheck("lora", d_in=4, d_out=4, dtype="float32")
    with pytest.raises(gg.InputError, match="'adapter'.*lora.*dora.*weight_lora.*my_lora"):
        gg.gradcheck("lorra", d_in=4, d_out=4)
    with pytest.raises(gg.InputError, match="'r'.*>= 1"):
        gg.gradcheck("lora", d_in=4, d_out=4, r=0)
    with pytest.raises(gg.InputError, match=r"'r'.*min\(d_in, d_out\) = 4"):
        gg.gradcheck("lora", d_in=4, d_out=9, r=5)
    with pytest.raises(gg.InputError, match="'backend'"):
        gg.gradcheck("lora", d_in=4, d_out=4, backend="tpu", r=2)
    if not gg.cuda_status()["available"]:  # a valid backend that cannot run here says why
        with pytest.raises(NotImplementedError, match="cuda backend is unavailable"):
            gg.gradcheck("lora", d_in=4, d_out=4, backend="cuda", r=2)
    with pytest.raises(gg.InputError, match="'mode'"):
        gg.gradcheck("lora", d_in=4, d_out=4, mode="exact", r=2)
    x = torch.randn(3, 5, dtype=torch.float64)
    x[0, 0] = float("nan")
    with pytest.raises(gg.InputError, match="input\\[0\\].*finite"):
        gg.gradcheck_module(_Linear(None), x)
