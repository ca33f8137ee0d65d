"""One regression test per confirmed defect in the pinned PEFT (gradguard.peft_defects): each reproduces the defect on
PEFT's own layer and fails once PEFT fixes it, so that an upgrade is noticed and the entry retired. Each also shows
gradguard's value is the one finite differences confirm."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradguard as gg
from gradguard import _C
from gradguard.bridge import load_into_peft, make_peft_layer
from gradguard.peft_defects import defect_free_hp, known_peft_defect, known_peft_defects


def _peft_c3a(d_in: int, d_out: int, block_size: int, seed: int = 0):
    hp = {"block_size": block_size}
    case = _C.make_case("c3a", d_in, d_out, 4, seed, hp)
    layer = make_peft_layer("c3a", nn.Linear(d_in, d_out), hp).double()
    load_into_peft(layer, case["tensors"])
    x = case["x"].clone().requires_grad_(True)
    y = layer(x)
    y.backward(case["dy"])
    ref = _C.run_backend("c3a", "eigen", "float64", case["x"], case["tensors"], case["dy"], case["hp"])
    return case, layer, x, y, ref


def test_known_peft_defect_c3a_input_gradient():
    # block_size 3 on a 6 -> 9 layer: PEFT's forward and kernel gradient agree with gradguard's reference (to the
    # float32 precision PEFT computes C3A in), its input gradient is O(1) off.
    case, layer, x, y, ref = _peft_c3a(6, 9, 3)
    assert (y.detach() - ref["y"]).abs().max() < 1e-5
    assert (layer.c3a_kernel["default"].grad.reshape(ref["d c3a_kernel"].shape) - ref["d c3a_kernel"]).abs().max() < 1e-5
    dx_err = (x.grad - ref["dx"]).abs().max().item()
    assert dx_err > 1e-2 * ref["dx"].abs().max().item(), f"PEFT's C3A input gradient is right now ({dx_err:.2e}): retire the entry"
    # gradguard's reference at the same configuration passes finite differences, fast and full
    for mode in ("fast", "full"):
        assert gg.gradcheck("c3a", d_in=6, d_out=9, mode=mode, block_size=3).ok
    assert known_peft_defect("c3a", "dx", case["hp"])


def test_c3a_defect_is_out_of_reach_at_block_size_two():
    # the reason tests that need PEFT's layer to be right can use defect_free_hp: at B <= 2 (s + t ≡ s − t mod B)
    # PEFT's input gradient is the true one
    assert defect_free_hp("c3a", {"block_size": 16}) == {"block_size": 2}
    _, _, x, _, ref = _peft_c3a(6, 8, 2)
    assert (x.grad - ref["dx"]).abs().max() < 1e-5


def test_every_known_defect_names_an_existing_regression_test():
    here = open(__file__).read()
    defects = known_peft_defects()
    assert defects  # the C3A one at least
    for d in defects:
        path, test = d["regression_test"].split("::")
        assert path == "tests/python/test_peft_defects.py" and f"def {test}(" in here


def _peft_oft(base: nn.Module, **config):
    from peft import OFTConfig, inject_adapter_in_model

    from gradguard.audit_peft import _Host

    torch.manual_seed(0)
    host = _Host(base).double()
    return inject_adapter_in_model(OFTConfig(target_modules=["target"], r=0, **config), host).double()


def test_known_peft_defect_oft_conv2d_forward():
    # At PEFT's default init every rotation is I, so the layer must equal its base convolution. PEFT's
    # OFTRotationModule unfolds the input with stride 1 and no padding whatever the convolution's own, rotates each
    # patch and folds the overlapping patches back as a sum: the output changes by O(1) instead.
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    base = torch.nn.Sequential(conv).double()
    model = _peft_oft(conv, oft_block_size=2, init_weights=True)
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = (model(x) - base(x)).abs().max().item()
    assert err > 1e-2, f"PEFT's OFT Conv2d is the identity at init now ({err:.2e}): retire the audit's known entry"
    # With every rotation random, gradguard's Conv2d OFT (the rotated filter) is PEFT's merged layer, not its forward.
    from gradguard.compare import compare_live_layer

    model = _peft_oft(nn.Conv2d(4, 6, 3, stride=2, padding=1), oft_block_size=4, init_weights=False)
    rows = {r["tensor"]: r for r in compare_live_layer(model.target, x, model=model)}
    assert rows["y"]["ok"] and rows["dx"]["ok"] and rows["y"]["reference"] == "peft merged"
    assert not rows["d oft_R"]["ok"] and "stride 1" in rows["d oft_R"]["known_peft_defect"]
    # On a grouped Conv2d PEFT's OFT builds and runs but cannot merge: no PEFT value is a reference there
    grouped = _peft_oft(nn.Conv2d(4, 6, 3, padding=1, groups=2), oft_block_size=2, init_weights=False)
    with pytest.raises(RuntimeError, match="is invalid for input of size"):
        grouped.target.merge()
    # gradguard's grouped OFT is the rotation PEFT's merge means: W_dense (each output row on its group's channels)
    # times the rotation PEFT builds, oft_mat, as in OFT's Conv2d.merge (W oft_matᵀ); built here by explicit loops
    from gradguard import layers

    base = grouped.target.get_base_layer()
    dense = torch.zeros(6, 4, 3, 3, dtype=torch.float64)
    for o in range(6):
        dense[o, (o // 3) * 2:(o // 3) * 2 + 2] = base.weight[o].detach()
    oft_mat = grouped.target.get_delta_weight("default").detach()
    merged = (dense.reshape(6, -1) @ oft_mat.t()).reshape(6, 4, 3, 3)
    want = torch.nn.functional.conv2d(x, merged, base.bias.detach(), padding=1)
    name, hp, tensors = gg.from_peft(grouped.target)
    geom = layers.geometry(base, "oft")
    got = layers.run_backend("oft", "eigen", "float64", geom, x, tensors, torch.zeros_like(want), hp)["y"]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_known_peft_defect_oft_unmerge_float32():
    # merge then unmerge must restore W; PEFT inverts the block rotation in float32 even for a float64 layer, so W
    # comes back only to ~1e-8 (a float64 inverse, or Rᵀ for the exact Cayley, restores it to ~1e-16).
    model = _peft_oft(nn.Linear(6, 9), oft_block_size=3, init_weights=False)
    layer = model.target
    w0 = layer.get_base_layer().weight.detach().clone()
    with torch.no_grad():
        layer.merge()
        layer.unmerge()
    err = (layer.get_base_layer().weight - w0).abs().max().item()
    assert err > 1e-10, f"PEFT's OFT unmerge restores W to {err:.1e} now: retire the audit's known entry"
    assert err < 1e-5  # a precision defect, not a wrong formula


@pytest.mark.parametrize("conv,x_shape", [(nn.Conv1d(4, 6, 3, stride=3, dilation=2), (2, 4, 11)),
                                          (nn.Conv3d(2, 3, 3, stride=3, dilation=2), (1, 2, 11, 11, 11))],
                         ids=["conv1d", "conv3d"])
def test_known_peft_defect_lora_conv_dilation(conv, x_shape):
    # PEFT's LoRA builds lora_A with the base convolution's kernel, stride and padding but not its dilation. Where the
    # strided output lengths agree anyway (11 -> 3 with or without dilation 2 at stride 3) the adapter path silently
    # convolves with an undilated kernel: merged (dilated ΔW, right) and unmerged forwards disagree, and gradguard's
    # lowering (the dilated patches) agrees with the merged one.
    from peft import LoraConfig

    err, rows = _merge_gap_and_rows(LoraConfig(r=2, init_lora_weights=False, target_modules=["target"]),
                                    conv, x_shape)
    assert err > 1e-2, f"PEFT's LoRA honours a convolution's dilation now ({err:.2e}): retire the audit's known entry"
    # gradguard's output and input gradient are the merged (dilated) layer's; PEFT's factor gradients are marked
    assert rows["y"]["ok"] and rows["dx"]["ok"] and rows["y"]["reference"] == "peft merged"
    assert not rows["d lora_A"]["ok"] and "dilation" in rows["d lora_A"]["known_peft_defect"]


def _merge_gap_and_rows(config, conv: nn.Module, x_shape: tuple) -> tuple[float, dict]:
    """(max |merged − unmerged| of PEFT's layer for ``config`` around ``conv``, compare_live_layer's rows by tensor)."""
    from peft import inject_adapter_in_model

    from gradguard.audit_peft import _Host
    from gradguard.compare import compare_live_layer

    torch.manual_seed(0)
    model = inject_adapter_in_model(config, _Host(conv)).double()
    x = torch.randn(*x_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
        model.target.merge()
        merged = model(x)
        model.target.unmerge()
    return (merged - y).abs().max().item(), {r["tensor"]: r for r in compare_live_layer(model.target, x, model=model)}


@pytest.mark.parametrize("config", ["BOFTConfig", "HRAConfig"])
def test_known_peft_defect_rotation_conv2d_geometry(config):
    # BOFT's and HRA's unmerged Conv2d forwards call F.conv2d(x, W', padding=base.padding[0], stride=base.stride[0])
    # with no dilation: on a dilated convolution whose output size happens to agree (11 -> 3 at stride 3), merged and
    # unmerged forwards disagree; gradguard's lowering is the merged layer.
    import peft

    kw = {"boft_block_size": 2} if config == "BOFTConfig" else {"r": 2}
    err, rows = _merge_gap_and_rows(getattr(peft, config)(init_weights=False, target_modules=["target"], **kw),
                                    nn.Conv2d(4, 6, 3, stride=3, dilation=2), (2, 4, 11, 11))
    assert err > 1e-2, f"PEFT's {config} Conv2d honours dilation now ({err:.2e}): retire its entry in peft_defects"
    assert rows["y"]["ok"] and rows["dx"]["ok"] and rows["y"]["reference"] == "peft merged"
    assert any(r.get("known_peft_defect") for r in rows.values())


def test_known_peft_defect_lokr_conv1d_kron():
    # LoKr's ΔW is w1 ⊗ w2 over (out, in) channels, w2 carrying the kernel. PEFT's make_kron unsqueezes w1 for a 4-D
    # (Conv2d) w2 only; on Conv1d torch.kron of the 2-D w1 and the 3-D w2 broadcasts w1 as (1, a, c), and the reshape
    # to (out, in, k) scrambles the result. Its Conv2d form is right; gradguard computes the Kronecker product on both.
    from peft import LoKrConfig, inject_adapter_in_model

    from gradguard.audit_peft import _Host
    from gradguard.compare import compare_live_layer

    def delta_error(conv):
        torch.manual_seed(0)
        model = inject_adapter_in_model(LoKrConfig(r=2, init_weights=False, target_modules=["target"]),
                                        _Host(conv)).double()
        layer = model.target
        w1, w2 = layer.lokr_w1["default"], layer.lokr_w2["default"]
        kron = torch.kron(w1, w2.reshape(w2.shape[0], -1)) * layer.scaling["default"]
        return (layer.get_delta_weight("default") - kron.reshape(conv.weight.shape)).abs().max().item(), model

    err1, model = delta_error(nn.Conv1d(4, 6, 3))
    err2, _ = delta_error(nn.Conv2d(4, 6, 3))
    assert err2 < 1e-12  # the Conv2d form is the Kronecker product
    assert err1 > 1e-2, f"PEFT's LoKr Conv1d builds w1 ⊗ w2 now ({err1:.2e}): retire the known entry in peft_defects"
    x = torch.randn(2, 4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rows = {r["tensor"]: r for r in compare_live_layer(model.target, x, model=model)}
    assert not rows["y"]["ok"] and "make_kron" in rows["y"]["known_peft_defect"]


@pytest.mark.parametrize("tuner", ["C3A", "FOURIERFT", "DEFT"])
def test_known_peft_defect_float32_compute(tuner):
    # These layers compute in float32 inside a float64 model: their float64 output is off by float32 rounding (not 0,
    # not a wrong formula), which is what makes their float64 finite differences fail at small steps.
    import importlib

    ap = importlib.import_module("gradguard.audit_peft")  # the module (gradguard.audit_peft is also the function)
    cls = ap._tuners()[tuner]
    base, model, x = ap._build(tuner, cls, ap._config(cls, {}, tuner=tuner), "Linear", 0)
    layer = ap._tuner_layer(model)
    with torch.no_grad():
        y = model(x)
    if tuner != "DEFT":  # gradguard implements these: PEFT's output against its float64 reference
        from gradguard.compare import compare_live_layer

        rows = {r["tensor"]: r for r in compare_live_layer(layer, x, model=model)}
        gap = rows["y"]["max_abs"] / y.abs().max().item()
    else:  # merged (ΔW added to W in float64) against the float32 forward
        with torch.no_grad():
            layer.merge()
            gap = (model(x) - y).abs().max().item() / y.abs().max().item()
            layer.unmerge()
    assert 1e-12 < gap < 1e-5, f"PEFT's {tuner} float64 output is off by {gap:.1e} (relative): retire the known entry"
    if tuner != "DEFT":
        return
    # DeFT (relu projection): y = x Wᵀ + b − (x Wᵀ) relu(P) Pᵀ + (x (sR)ᵀ) Pᵀ. PEFT's deft_P gradient (autograd of
    # its float32 forward) equals float64 autograd of this formula to float32 precision: the audit's deft_P
    # gradcheck failure is the float32 forward's noise plus relu's kink at 0 within the steps, not a wrong gradient.
    assert layer.deft_decomposition["default"] == "relu" and not layer.deft_para["default"]
    W, b = layer.get_base_layer().weight, layer.get_base_layer().bias
    P = layer.deft_P["default"]
    R = layer.deft_R["default"] * layer.deft_scaling["default"]
    dy = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (g_peft,) = torch.autograd.grad(model(x), P, dy)
    Pd = P.detach().clone().requires_grad_(True)
    xw = x @ W.T
    formula = xw + b - (xw @ torch.relu(Pd)) @ Pd.T + (x @ R.detach().T) @ Pd.T
    (g_ref,) = torch.autograd.grad(formula, Pd, dy)
    torch.testing.assert_close(model(x).detach(), formula.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_peft, g_ref, rtol=1e-4, atol=1e-5)
    assert (P.abs() < 1e-2).any()  # entries within the audit's largest step of relu's kink


def test_known_peft_defect_trainable_tokens_linear_drops_bias():
    # On a Linear (PEFT's case of a tied LM head) TrainableTokens' unmerged forward is F.linear(x, W_with_tokens) with
    # no bias; merged, the base layer runs with its bias: the two differ by exactly the bias.
    from peft import TrainableTokensConfig, inject_adapter_in_model

    from gradguard.audit_peft import _Host

    torch.manual_seed(0)
    model = inject_adapter_in_model(TrainableTokensConfig(token_indices=[1, 4], target_modules=["target"]),
                                    _Host(nn.Linear(6, 9))).double()
    x = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
        model.target.merge()
        merged = model(x)
    bias = model.target.get_base_layer().bias
    gap = (merged - y - bias).abs().max().item()
    assert gap < 1e-12 and bias.abs().max() > 1e-3, "PEFT's TrainableTokens keeps a Linear's bias now: retire the known entry"


def test_known_peft_defect_adalora_ranknum_trainable_off_float32():
    # AdaLoRA divides its update by ranknum, a constant PEFT creates with requires_grad=False. Injected into a model
    # that is not float32, moving the adapter to the base dtype re-wraps it as a trainable nn.Parameter, and
    # get_peft_model leaves it so: the optimizer then changes AdaLoRA's scaling (its gradient is non-zero once lora_B
    # is). gradguard's op holds it constant, so after fast_path gg.check names it, and fast_path's report says why.
    from peft import AdaLoraConfig, get_peft_model

    from gradguard.audit_peft import _Host

    def model(dtype, **kw):
        torch.manual_seed(0)
        return get_peft_model(_Host(nn.Linear(6, 5)).to(dtype), AdaLoraConfig(init_r=2, total_step=1,
                                                                              target_modules=["target"], **kw))

    assert not model(torch.float32).base_model.model.target.ranknum["default"].requires_grad
    m = model(torch.float64, init_lora_weights=False)
    rank = m.base_model.model.target.ranknum["default"]
    assert rank.requires_grad, "PEFT keeps AdaLoRA's ranknum frozen off float32 now: retire this known defect"
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    m(x).pow(2).sum().backward()
    assert rank.grad is not None and rank.grad.abs().item() > 0
    report = gg.fast_path(m, backend="torch")
    assert report.swapped and any("ranknum" in note for _, note in report.notes)
    flow = gg.check(m, x, loss_fn=lambda y: y.pow(2).mean())
    assert [p.param for p in flow.problems] == ["base_model.model.target.ranknum.default"]


def test_known_peft_defect_loha_tucker_backward():
    # LoHa's Tucker form (use_effective_conv2d) has its own autograd Function, HadaWeightCP. Its backward builds the
    # gradient of hada_w1_a from the second side's core and mode factor (t2 ×₂ w2_b) and that of hada_w2_a from the
    # first's: central differences in float64 disagree by O(1) on exactly those two; the other four are right.
    from peft import LoHaConfig, inject_adapter_in_model

    from gradguard.audit_peft import _Host
    from gradguard.compare import compare_live_layer

    torch.manual_seed(0)
    config = LoHaConfig(r=2, use_effective_conv2d=True, init_weights=False, target_modules=["target"])
    model = inject_adapter_in_model(config, _Host(nn.Conv2d(4, 6, 3, padding=1))).double()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    params = {n.split(".")[1]: p for n, p in model.named_parameters() if "hada_" in n}
    grads = dict(zip(params, torch.autograd.grad(model(x).pow(2).sum(), list(params.values()))))

    def central_difference(p: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
        out = torch.empty_like(p)
        with torch.no_grad():
            for i in range(p.numel()):
                flat = p.view(-1)
                flat[i] += h
                up = model(x).pow(2).sum()
                flat[i] -= 2 * h
                down = model(x).pow(2).sum()
                flat[i] += h
                out.view(-1)[i] = (up - down) / (2 * h)
        return out

    err = {k: (grads[k] - central_difference(p)).abs().max().item() for k, p in params.items()}
    assert min(err["hada_w1_a"], err["hada_w2_a"]) > 1e-2, \
        f"PEFT's HadaWeightCP.backward is right now ({err}): retire loha's registry peft_defects entries"
    assert max(err[k] for k in ("hada_w1_b", "hada_w2_b", "hada_t1", "hada_t2")) < 1e-6, err
    # gradguard's Tucker LoHa agrees with PEFT everywhere else and marks exactly the two defective gradients
    rows = {r["tensor"]: r for r in compare_live_layer(model.target, x, model=model)}
    assert {k for k, r in rows.items() if not r["ok"]} == {"d hada_w1_a", "d hada_w2_a"}
    assert all("HadaWeightCP" in rows[k]["known_peft_defect"] for k in ("d hada_w1_a", "d hada_w2_a"))


def test_known_peft_defect_lokr_conv1d_tucker_rank1():
    # LoKr's Tucker form on a Conv1d at r = 1 (w2 factored: r below half its larger side): make_weight_cp's einsum
    # returns w2 (b, d, k, 1) whose size-1 axes keep odd strides, w2.contiguous() is then a no-op, and torch.kron's
    # internal view raises. Forward and merge both fail; at r = 2 (a wider layer) the same form runs.
    from peft import LoKrConfig, inject_adapter_in_model

    from gradguard.audit_peft import _Host
    from gradguard.compare import compare_live_layer

    def build(channels: int, out: int, r: int):
        torch.manual_seed(0)
        config = LoKrConfig(r=r, use_effective_conv2d=True, init_weights=False, target_modules=["target"])
        return inject_adapter_in_model(config, _Host(nn.Conv1d(channels, out, 3, padding=1))).double()

    model = build(4, 6, 1)  # w2 (3, 2): factored at r = 1
    assert "default" in model.target.lokr_t2
    x = torch.randn(1, 4, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        model(x)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        model.target.merge()
    # gradguard's op runs the same layer; the comparison says why PEFT's numbers are missing
    rows = compare_live_layer(model.target, x, model=model)
    assert rows and all("r = 1 cannot run" in r["known_peft_defect"] for r in rows)
    wide = build(36, 36, 2)
    assert wide(torch.randn(1, 36, 5, dtype=torch.float64)).shape == (1, 36, 5)


def test_known_peft_defect_dora_grouped_conv_norm():
    # DoRA scales each output channel by magnitude / ||row of the effective weight||. On a grouped convolution the
    # effective weight is the base's (non-zero on its group's input channels) plus s·B A, where lora_A reads every
    # channel and lora_B is grouped (output o mixes only its group's r/groups ranks). PEFT's get_lora_weight views the
    # grouped lora_B as (-1, r), so its norm is that of another matrix. Built here by explicit loops, independently of
    # gradguard's expansion code.
    from peft import LoraConfig, inject_adapter_in_model

    from gradguard.audit_peft import _Host
    from gradguard.compare import compare_live_layer

    torch.manual_seed(0)
    groups, r, out, cin = 2, 2, 6, 4
    config = LoraConfig(r=r, use_dora=True, init_lora_weights=False, target_modules=["target"])
    model = inject_adapter_in_model(config, _Host(nn.Conv2d(cin, out, 3, padding=1, groups=groups))).double()
    layer = model.target
    base, A, B = layer.get_base_layer(), layer.lora_A["default"].weight, layer.lora_B["default"].weight
    s = layer.scaling["default"]
    effective = torch.zeros(out, cin, 3, 3, dtype=torch.float64)
    per_out, per_in, per_rank = out // groups, cin // groups, r // groups
    for o in range(out):
        g = o // per_out
        effective[o, g * per_in:(g + 1) * per_in] = base.weight[o].detach()
        for k in range(per_rank):
            effective[o] += s * B[o, k, 0, 0].detach() * A[g * per_rank + k].detach()
    true_norm = effective.flatten(1).norm(dim=1)
    dora = layer.lora_magnitude_vector["default"]
    lora_weight = dora.get_lora_weight(layer.lora_A["default"], layer.lora_B["default"]).reshape(base.weight.shape)
    peft_norm = dora.get_weight_norm(base.weight, lora_weight.detach(), s).flatten()
    err = (peft_norm - true_norm).abs().max().item()
    assert err > 1e-2, f"PEFT's grouped DoRA uses the effective weight's norm now ({err:.1e}): retire its entry"
    # gradguard's DoRA is the one with the true norm: y = m / ||V|| ⊙ conv(x, V) + b, V the effective weight
    from gradguard import layers

    x = torch.randn(1, cin, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    m = dora.weight.detach().flatten()
    want = (m / true_norm).view(1, -1, 1, 1) * torch.nn.functional.conv2d(x, effective, padding=1) \
        + base.bias.detach().view(1, -1, 1, 1)
    name, hp, tensors = gg.from_peft(layer)
    got = layers.run_backend(name, "eigen", "float64", layers.geometry(base, name), x, tensors, torch.zeros_like(want),
                             hp)["y"]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert not {r["tensor"]: r for r in compare_live_layer(layer, x, model=model)}["y"]["ok"]  # PEFT's differs


def test_known_peft_defect_lora_mha_out_proj_twice():
    # LoRA on nn.MultiheadAttention merges its adapters for every unmerged forward: merge() sets out_proj's weight to
    # W + ΔW and then calls out_proj.merge(), which adds ΔW again in place. The forward thus uses W + 2ΔW on out_proj
    # (the merged layer W + ΔW), and autograd sees one copy: out_proj's lora_A/lora_B get half the derivative of the
    # forward PEFT computes (central differences agree at steps 1e-3 and 1e-5).
    import torch.nn.functional as F
    from peft import LoraConfig, inject_adapter_in_model

    from gradguard.audit_peft import _Host

    torch.manual_seed(0)
    model = inject_adapter_in_model(LoraConfig(r=2, init_lora_weights=False, target_modules=["target"]),
                                    _Host(nn.MultiheadAttention(6, 2, batch_first=True))).double()
    x = torch.randn(2, 3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    layer = model.target
    base, out = layer.get_base_layer(), layer.get_base_layer().out_proj

    def attention(out_copies: int) -> torch.Tensor:  # by hand: in_proj W + ΔW, out_proj W + copies·ΔW
        w_in = base.in_proj_weight + layer.scaling["default"] * (
            layer.lora_B["default"].weight @ layer.lora_A["default"].weight)
        w_out = out.base_layer.weight + out_copies * out.scaling["default"] * (
            out.lora_B["default"].weight @ out.lora_A["default"].weight)
        q = x.transpose(0, 1)
        y, _ = F.multi_head_attention_forward(q, q, q, 6, 2, w_in, base.in_proj_bias, None, None, False, 0.0, w_out,
                                              out.base_layer.bias, training=False, need_weights=False)
        return y.transpose(0, 1)

    with torch.no_grad():
        y = model(x)
        twice, once = (y - attention(2)).abs().max().item(), (y - attention(1)).abs().max().item()
    assert once > 1e-2, f"PEFT's MHA LoRA adds out_proj's update once now ({once:.1e}): retire the audit's entry"
    assert twice < 1e-12
    # the gradient of out_proj's lora_A is half the derivative of that forward
    a = out.lora_A["default"].weight
    direction = torch.randn(a.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    analytic = (torch.autograd.grad(model(x).pow(2).sum(), a)[0] * direction).sum().item()
    with torch.no_grad():
        a.add_(1e-5 * direction)
        up = model(x).pow(2).sum().item()
        a.sub_(2e-5 * direction)
        down = model(x).pow(2).sum().item()
        a.add_(1e-5 * direction)
    assert abs((up - down) / 2e-5 / analytic - 2.0) < 1e-6
