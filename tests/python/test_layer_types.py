"""Layer types beyond nn.Linear (Conv1d, Conv2d, Embedding, GPT-2's Conv1D), generated from the registry's
``layer_types``: for every adapter x layer type it declares, PEFT's own layer around a real base of that type (every
factor non-zero) is read by ``from_peft`` and reproduced by gradguard's eigen and torch backends through the lowering
(gradguard.layers) at the float64 policy — output, input gradient and every trainable tensor's gradient; gradguard's
op on that layer passes finite differences; ``fast_path`` swaps it and every parameter still gets its gradient. No
test here names an adapter except the refusals, which are about one adapter's PEFT option."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import gradguard as gg
from gradguard import _C, layers
from gradguard.audit_peft import _Host as Host, inject
from gradguard.bridge import from_peft, layer_geometry, peft_config
from gradguard.compare import compare_live_layer
from gradguard.peft_defects import known_layer_defect, known_peft_defect
from gradguard.ops import AdapterLinear
from gradguard.registry import adapters, check_hp, info

pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


# Bases larger than their kernels, strided and padded; inputs drawn per seed.
BASES = {
    "Conv2d": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1), lambda g: torch.randn(2, 4, 7, 6, generator=g)),
    # no dilation: PEFT's LoRA builds lora_A without the base's dilation (output lengths then differ; see the note)
    "Conv1d": (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1), lambda g: torch.randn(2, 4, 9, generator=g)),
    "Embedding": (lambda: nn.Embedding(11, 6), lambda g: torch.randint(0, 11, (2, 3), generator=g)),
    "Conv1D": (lambda: transformers.pytorch_utils.Conv1D(5, 6), lambda g: torch.randn(2, 3, 6, generator=g)),
    "Conv3d": (lambda: nn.Conv3d(3, 4, (3, 2, 2), stride=(2, 1, 1), padding=(1, 0, 1)),
               lambda g: torch.randn(2, 3, 5, 4, 3, generator=g)),
    # grouped: 2 groups of 2 input channels, 3 output channels each
    "Conv2d-groups": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
                      lambda g: torch.randn(2, 4, 7, 6, generator=g)),
    "Conv1d-groups": (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2),
                      lambda g: torch.randn(2, 4, 9, generator=g)),
    # 36 = 6 x 6 channels: LoKr factors w2 (PEFT: r < half its larger side) at r = 2 as well
    "Conv1d-wide": (lambda: nn.Conv1d(36, 36, 3, stride=2, padding=1), lambda g: torch.randn(2, 36, 7, generator=g)),
}

# Every adapter on every layer type it declares, at its defaults, and on grouped convolutions where it declares
# them; then the options whose form differs on a convolution (one row each, as in test_options.py).
CASES = [(name, kind, {}) for name in adapters() for kind in info(name)["layer_types"] if kind != "Linear"] + [
    (name, f"{kind}-groups", {}) for name in adapters() if info(name)["grouped_convolutions"]
    for kind in info(name)["layer_types"] if f"{kind}-groups" in BASES] + [
    ("ia3", "Conv2d", {"is_feedforward": 1}),  # one value per input channel, shared by its kernel positions
    ("ia3", "Conv1D", {"is_feedforward": 1}),
    ("ia3", "Conv2d-groups", {"is_feedforward": 1}),  # every channel scaled, then the grouped base
    ("lokr", "Conv2d", {"r": 1}),              # w2 factored as w2_a (b, r) w2_b (r, channels x kernel)
    ("lokr", "Conv1d", {"r": 1}),              # ... where PEFT's Conv1d is right (its defect needs an unfactored w2)
    ("lokr", "Conv2d", {"decompose_both": 1, "r": 1}),
    # the Tucker form (use_effective_conv2d): a core over the kernel positions (LoKr's only with a factored w2)
    ("loha", "Conv2d", {"use_effective_conv2d": 1}),
    ("loha", "Conv1d", {"use_effective_conv2d": 1}),
    ("loha", "Conv2d-groups", {"use_effective_conv2d": 1}),
    ("lokr", "Conv2d", {"use_effective_conv2d": 1, "r": 1}),
    ("lokr", "Conv1d", {"use_effective_conv2d": 1, "r": 1}),  # PEFT's layer raises here (a known defect)
    ("lokr", "Conv1d-wide", {"use_effective_conv2d": 1, "r": 2}),
]
IDS = [f"{n}-{k}" + "".join(f"-{p}{v}" for p, v in hp.items()) for n, k, hp in CASES]


def build(name: str, kind: str, seed: int = 0, given: dict | None = None):
    """(model, PEFT's tuner layer, input): PEFT's own layer for ``name`` around a ``kind`` base, in float64, with
    every factor random (the adapter's init switch off)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    torch.manual_seed(seed)
    make_base, make_input = BASES[kind]
    # injected into the float32 layer, then cast: PEFT makes AdaLoRA's ranknum trainable when it injects into a
    # layer that is not float32 (a known defect, test_peft_defects.py), which is not what these tests are about
    host = Host(make_base())
    geom = layers.geometry(host.target, name)
    given = dict(given or {})
    if geom.kernel and any(h["name"] == "conv_kernel" for h in info(name)["hyper"]):  # as from_peft reads it
        given.setdefault("conv_kernel", math.prod(geom.kernel))
    hp = check_hp(name, geom.d_in, geom.d_out, given, 2)
    config = peft_config(name, hp, geom.d_in, geom.d_out, init_weights=False, target_modules=["target"])
    model = inject(config, host).double().eval()
    layer = next(m for m in model.modules() if isinstance(m, BaseTunerLayer))
    x = make_input(torch.Generator().manual_seed(seed))
    return model, layer, (x.double() if x.is_floating_point() else x)


def defect_of(name: str, layer):
    """The recorded PEFT defect of ``name`` on this layer's base type, or None."""
    return known_layer_defect(name, layers.layer_type(layer.get_base_layer()), layer, "default")


def registry_defects(name: str, layer) -> list[str]:
    """The registry's PEFT defects (by hyper-parameters) that apply to this layer: the tensors they affect."""
    hp = from_peft(layer)[1]
    return [d["tensor"] for d in info(name)["peft_defects"] if known_peft_defect(name, d["tensor"], hp)]


def compare_with_peft(name: str, kind: str, seed: int, backend: str, given: dict | None = None) -> list[dict]:
    """Failing rows of gradguard's ``backend`` (float64) against PEFT's layer (empty when all agree)."""
    model, layer, x = build(name, kind, seed, given)
    assert from_peft(layer)[0] == name
    rows = compare_live_layer(layer, x, backend=backend, seed=100 + seed, model=model)
    want = {"y", "dx"} if x.is_floating_point() else {"y"}
    want |= {"d " + t for t in AdapterLinear.from_peft(layer).params}
    assert {r["tensor"] for r in rows} == want  # every value compared, none missing
    known = [r for r in rows if r.get("known_peft_defect")]
    defect = defect_of(name, layer)
    if defect:  # a confirmed PEFT defect on this layer must still show; where PEFT's merge is right, y and dx count
        assert known, f"PEFT's {name} on {kind} agrees with gradguard now: retire its entry in peft_defects"
        if defect.merged_is_right:
            assert {r["tensor"] for r in rows if r["reference"] == "peft merged"} == want & {"y", "dx"}
    return [r for r in rows if not r["ok"] and not r.get("known_peft_defect")]


@pytest.mark.parametrize("name,kind,given", CASES, ids=IDS)
@pytest.mark.parametrize("backend", ["eigen", "torch"])
def test_matches_peft_layer(name, kind, given, backend):
    for seed in (0, 1):
        assert compare_with_peft(name, kind, seed, backend, given) == []


@pytest.mark.parametrize("name,kind,given", CASES, ids=IDS)
def test_op_passes_finite_differences(name, kind, given):
    _, layer, x = build(name, kind, 0, given)
    op = AdapterLinear.from_peft(layer)
    if "exact_gradient" in op.hp:  # DoRA: PEFT's detached norm is by design not the derivative; check the true one
        op.hp = {**op.hp, "exact_gradient": 1.0}
    res = gg.gradcheck_module(op, x, mode="full")
    assert res.ok, str(res)
    checked = {t["name"] for t in res.tensors}
    assert {f"params.{k}" for k in op.params} <= checked, checked  # every trainable tensor, not a subset
    if x.is_floating_point():
        assert any(n.startswith("input") for n in checked), checked


def _swappable(case) -> bool:  # embeddings stay on PEFT's lookup (test below)
    return case[1] != "Embedding"


@pytest.mark.parametrize("name,kind,given", [c for c in CASES if _swappable(c)],
                         ids=[i for c, i in zip(CASES, IDS) if _swappable(c)])
def test_fast_path_swaps_and_trains_every_parameter(name, kind, given):
    model, layer, x = build(name, kind, 0, given)
    if defect_of(name, layer):  # PEFT's forward is no reference (it may not even run): the eigen float64 one is
        got_name, hp, tensors = from_peft(layer)
        geom = layer_geometry(layer)
        dy = torch.zeros(layers.lower(geom, x)[1], dtype=torch.float64)
        want = layers.run_backend(name, "eigen", "float64", geom, x, tensors, dy, hp)["y"]
    else:
        want = model(x).detach()
    report = gg.fast_path(model, backend="torch", convolutions=True)
    assert [a for _, a in report.swapped] == [name], str(report)
    # a changed forward or gradient is said
    assert bool(report.notes) == bool(defect_of(name, layer) or registry_defects(name, layer))
    # against the reference forward: PEFT's registry-recorded deviation (FourierFT's float32 ΔW) is the only slack
    override = next((o for o in info(name)["tolerance_overrides"] if o["check"] == "peft"), None)
    rtol, atol = (override["rtol"], override["atol"]) if override else (1e-10, 1e-12)
    torch.testing.assert_close(model(x), want, rtol=rtol, atol=atol)
    flow = gg.check(model, x, loss_fn=lambda y: y.pow(2).mean())
    assert flow.ok, str(flow)


def test_convolutions_are_swapped_only_when_asked():
    model, _, x = build("lora", "Conv2d")
    report = gg.fast_path(model, backend="torch")
    assert report.swapped == [] and "kernel-volume times" in report.skipped[0][1] and "convolutions=True" in str(report)


def test_fast_path_follows_the_base_weight():
    """A non-Linear base's weight is read through a transpose/reshape: after .data is replaced (a merge, .to()) the
    swapped forward must use the new weight, not a view of the old one."""
    model, layer, x = build("lora", "Conv1D")
    gg.fast_path(model, backend="torch")
    with torch.no_grad():
        layer.get_base_layer().weight.data = 2 * layer.get_base_layer().weight.data
    got = model(x)
    want = layers.run_backend("lora", "eigen", "float64", layers.geometry(layer.get_base_layer()), x,
                              from_peft(layer)[2], torch.zeros_like(got), from_peft(layer)[1])["y"]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,why", [("lora", "one-hot"), ("oft", "identity base weight")])
def test_embedding_left_on_peft_forward_with_reason(name, why):
    model, _, _ = build(name, "Embedding")
    report = gg.fast_path(model, backend="torch")
    assert report.swapped == [] and why in report.skipped[0][1]


def test_grouped_convolutions_are_swapped_only_when_asked():
    from peft import LoHaConfig

    # a 1x1 kernel: only the groups gate it
    model = inject(LoHaConfig(r=2, target_modules=["target"]), Host(nn.Conv1d(4, 6, 1, groups=2))).double()
    report = gg.fast_path(model, backend="torch")
    assert report.swapped == [] and "groups=2" in report.skipped[0][1]
    assert [a for _, a in gg.fast_path(model, backend="torch", convolutions=True).swapped] == ["loha"]


def test_load_into_peft_round_trips_grouped_and_row_layers():
    """load_into_peft writes registry tensors back in PEFT's layouts: an expanded lora_B as its own blocks, and an
    Embedding looked up by rows keeps its table (only the identity 'weight' maps back; anything else is refused)."""
    from gradguard.bridge import load_into_peft

    _, layer, _ = build("lora", "Conv2d-groups")
    _, _, tensors = from_peft(layer)
    tensors = {k: v.clone() for k, v in tensors.items()}
    tensors["lora_B"] = 2 * tensors["lora_B"]
    before = layer.lora_B["default"].weight.detach().clone()
    load_into_peft(layer, tensors)
    torch.testing.assert_close(layer.lora_B["default"].weight, 2 * before, rtol=0, atol=0)
    torch.testing.assert_close(from_peft(layer)[2]["lora_B"], tensors["lora_B"], rtol=0, atol=0)

    _, layer, _ = build("oft", "Embedding")
    _, _, tensors = from_peft(layer)
    table = layer.get_base_layer().weight.detach().clone()
    load_into_peft(layer, tensors)
    load_into_peft(layer, tensors)
    torch.testing.assert_close(layer.get_base_layer().weight, table, rtol=0, atol=0)
    with pytest.raises(_C.InputError, match="argument 'tensors': expected the identity as 'weight'"):
        load_into_peft(layer, {**tensors, "weight": 2 * tensors["weight"]})


def test_adapter_linear_names_misshapen_grouped_tensors():
    conv = nn.Conv2d(4, 6, 3, groups=2).double()
    geom = layers.geometry(conv, "lora")
    good = {"weight": layers.weight_as_linear(conv, geom), "bias": conv.bias.detach(),
            "lora_A": torch.randn(2, 36, dtype=torch.float64), "lora_B": torch.randn(6, 1, dtype=torch.float64)}
    AdapterLinear("lora", good, {"r": 2}, geom)  # PEFT's grouped lora_B layout
    with pytest.raises(_C.InputError, match=r"argument 'tensors': expected 'weight' as the lowered \(6, 36\)"):
        AdapterLinear("lora", {**good, "weight": conv.weight.detach().reshape(6, -1)}, {"r": 2}, geom)
    with pytest.raises(_C.InputError, match=r"expected 'lora_B' in PEFT's grouped layout \[6, 1\]"):
        AdapterLinear("lora", {**good, "lora_B": nn.Parameter(torch.randn(6, 2, dtype=torch.float64))}, {"r": 2}, geom)


def test_oft_embedding_module_owns_its_table():
    _, layer, x = build("oft", "Embedding")
    op = AdapterLinear.from_peft(layer)
    want = op(x).detach()
    with torch.no_grad():
        layer.get_base_layer().weight.mul_(3)  # the module's copy, not the PEFT layer's table
    torch.testing.assert_close(op(x), want, rtol=0, atol=0)
    assert "embedding_table" in dict(op.named_buffers())


# --- planted faults: the comparison above must fail when the lowering is wrong -------------------------------------

def test_planted_untransposed_conv1d_weight_is_caught(monkeypatch):
    real = layers.weight_as_linear
    monkeypatch.setattr(layers, "weight_as_linear",
                        lambda base, geom: base.weight.reshape(geom.d_out, geom.d_in) if geom.kind == "Conv1D"
                        else real(base, geom))
    bad = compare_with_peft("lora", "Conv1D", 0, "eigen")
    assert {r["tensor"] for r in bad} >= {"y", "dx"}


def test_planted_wrong_patch_adjoint_is_caught(monkeypatch):
    real = layers.input_grad
    monkeypatch.setattr(layers, "input_grad", lambda geom, x, dX: real(geom, x, dX.flip(0)))
    bad = compare_with_peft("lora", "Conv2d", 0, "torch")
    assert [r["tensor"] for r in bad] == ["dx"]


def test_planted_wrong_group_is_caught(monkeypatch):
    """Each output channel must come from its own group's stacked row, and an expanded tensor must put each row's
    values in its own group's block: the other group's fails either way."""
    real = layers._group_of_output
    monkeypatch.setattr(layers, "_group_of_output", lambda geom, device: (real(geom, device) + 1) % geom.groups)
    bad = compare_with_peft("loha", "Conv2d-groups", 0, "eigen")
    assert {r["tensor"] for r in bad} >= {"y", "dx"}
    real_rows = layers._row_groups
    monkeypatch.setattr(layers, "_row_groups", lambda rows, groups, device: (real_rows(rows, groups, device) + 1) % groups)
    bad = compare_with_peft("lora", "Conv2d-groups", 0, "torch")
    assert {r["tensor"] for r in bad} >= {"y", "dx", "d lora_B"}


def test_planted_wrong_embedding_row_is_caught(monkeypatch):
    """OFT's Embedding lowering looks the ids up itself: a lookup one row off fails the comparison."""
    import torch.nn.functional as F

    class OneRowOff:  # gradguard's lowering only: PEFT's own lookup must stay right
        def __getattr__(self, name):
            return getattr(F, name)

        @staticmethod
        def embedding(ids, table, **kw):
            return F.embedding((ids + 1) % table.shape[0], table, **kw)

    monkeypatch.setattr(layers, "F", OneRowOff())
    bad = compare_with_peft("oft", "Embedding", 0, "torch")
    assert {r["tensor"] for r in bad} >= {"y", "d oft_R"}


# --- refusals -----------------------------------------------------------------------------------------------------

def test_unsupported_layer_type_names_the_supported_ones():
    with pytest.raises(_C.InputError, match=r"expected hra around one of the layer types .*\['Linear', 'Conv2d'\].*Embedding"):
        AdapterLinear("hra", {"weight": torch.zeros(3, 5), "bias": torch.zeros(3)}, {"r": 2},
                      layers.geometry(nn.Embedding(5, 3)))
    # OFT acts on the looked-up rows: a one-hot lowering of its Embedding would be another adapter's maths
    with pytest.raises(_C.InputError, match=r"argument 'geometry': expected lookup='rows' for oft"):
        AdapterLinear("oft", {"weight": torch.zeros(3, 5), "bias": torch.zeros(3)}, {"oft_block_size": 1},
                      layers.geometry(nn.Embedding(5, 3)))


def test_grouped_and_string_padded_convolutions_are_refused():
    grouped = layers.geometry(nn.Conv2d(4, 6, 3, groups=2))
    assert (grouped.d_in, grouped.groups, grouped.grouping) == (2 * 9, 2, "stacked")  # one group's width
    # LoRA reads every input channel in lora_A: its geometry is the expanded one, and the stacked one is refused
    assert layers.geometry(nn.Conv2d(4, 6, 3, groups=2), "lora").d_in == 4 * 9
    with pytest.raises(_C.InputError, match="argument 'geometry': expected grouping='expanded' for lora"):
        layers.check_supported("lora", grouped)
    with pytest.raises(_C.InputError, match="groups=1 for hra.*got groups=2"):
        layers.check_supported("hra", grouped)
    with pytest.raises(_C.InputError, match="padding='same'"):
        layers.geometry(nn.Conv1d(4, 6, 3, padding="same"))
    with pytest.raises(_C.InputError, match="max_norm=None.*got max_norm=1.0"):
        layers.geometry(nn.Embedding(5, 3, max_norm=1.0))


def test_bad_inputs_name_the_argument():
    conv = layers.geometry(nn.Conv2d(4, 6, 3))
    with pytest.raises(_C.InputError, match=r"argument 'x': expected shape \(\[N,\] 4, L, L\)"):
        layers.lower(conv, torch.randn(2, 3, 5, 5))
    with pytest.raises(_C.InputError, match="smaller than the Conv2d's dilated kernel"):
        layers.lower(conv, torch.randn(2, 4, 2, 2))
    emb = layers.geometry(nn.Embedding(5, 3))
    with pytest.raises(_C.InputError, match=r"ids in \[0, 5\)"):
        layers.lower(emb, torch.tensor([[1, 5]]))
    with pytest.raises(_C.InputError, match="integer token ids"):
        layers.lower(emb, torch.randn(2, 3))


@pytest.mark.parametrize("conv", [nn.Conv1d(3, 5, 3, stride=2, padding=2, dilation=2),
                                  nn.Conv2d(3, 5, (3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
                                  nn.Conv3d(3, 5, (2, 3, 1), stride=(2, 1, 3), padding=(0, 1, 1), dilation=(1, 2, 1)),
                                  nn.Conv2d(6, 4, 3, padding=1, groups=2), nn.Conv1d(6, 9, 2, groups=3)],
                         ids=["conv1d-dilated", "conv2d-mixed", "conv3d-mixed", "conv2d-groups2", "conv1d-groups3"])
@pytest.mark.parametrize("unbatched", [False, True])
def test_lowering_is_the_convolution(conv, unbatched):
    """lift(lower(x) Wᵀ + b) is the convolution itself, and input_grad is its adjoint (what autograd gives)."""
    conv = conv.double()
    geom = layers.geometry(conv)
    x = torch.randn(2, conv.in_channels, 9, 8, 7, dtype=torch.float64)
    x = x[(...,) + (0,) * (3 - len(geom.kernel))]  # as many spatial axes as the kernel
    if unbatched:
        x = x[0]
    rows, shape = layers.lower(geom, x)
    y = layers.lift(geom, rows @ layers.weight_as_linear(conv, geom).T + conv.bias, shape)
    xr = x.clone().requires_grad_(True)
    want = conv(xr)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(want)
    want.backward(dy)
    dX = layers.lower_grad(geom, dy) @ layers.weight_as_linear(conv, geom)
    torch.testing.assert_close(layers.input_grad(geom, x, dX), xr.grad, rtol=1e-12, atol=1e-12)


def _embedding_adapters(lookup: str) -> list[str]:
    return [n for n in adapters() if "Embedding" in info(n)["layer_types"]
            and layers.EMBEDDING_LOOKUP.get(n, "one-hot") == lookup]


@pytest.mark.parametrize("name", _embedding_adapters("rows"))
def test_embedding_rows_with_padding_idx(name, monkeypatch):
    """An adapter on the looked-up rows (OFT) sees the padding row's values like any other: PEFT's layer and
    gradguard agree with padding ids in the input."""
    monkeypatch.setitem(BASES, "Embedding", (lambda: nn.Embedding(11, 6, padding_idx=2),
                                             lambda g: torch.tensor([[2, 5, 2], [0, 2, 10]])))
    for backend in ("eigen", "torch"):
        assert compare_with_peft(name, "Embedding", 0, backend) == []


@pytest.mark.parametrize("name", _embedding_adapters("one-hot"))
def test_embedding_padding_idx_is_peft_lookup(name, monkeypatch):
    """With the base's padding_idx PEFT looks ids up in lora_A with it too, so that column gets no gradient (the
    forward still reads it): gradguard's reference and op reproduce PEFT's layer, and the op's other gradients are
    the finite-difference ones."""
    monkeypatch.setitem(BASES, "Embedding", (lambda: nn.Embedding(11, 6, padding_idx=2),
                                             lambda g: torch.tensor([[2, 5, 2], [0, 2, 10]])))
    for backend in ("eigen", "torch"):
        assert compare_with_peft(name, "Embedding", 0, backend) == []
    _, layer, x = build(name, "Embedding")
    op = AdapterLinear.from_peft(layer)
    op(x).pow(2).sum().backward()
    grad = op.params["lora_A"].grad
    assert torch.all(grad[:, 2] == 0) and grad[:, 5].abs().sum() > 0
    if "exact_gradient" in op.hp:
        op.hp = {**op.hp, "exact_gradient": 1.0}
    op.geometry = layers.Geometry(**{**op.geometry.__dict__, "padding_idx": None})  # the same values, full gradient
    assert gg.gradcheck_module(op, x, mode="full").ok


def test_non_square_rotation_kernel_is_refused():
    """PEFT sizes BOFT's/HRA's rotation by kernel_size[0]² (its own layer fails on a 3 x 1 kernel); from_peft must not
    slice the trainable tensor to fit."""
    from peft import HRAConfig, inject_adapter_in_model

    model = inject_adapter_in_model(HRAConfig(r=2, target_modules=["target"]), Host(nn.Conv2d(4, 6, (3, 1))))
    with pytest.raises(_C.InputError, match=r"expected PEFT's hra_u.default with 24 entries .*got shape \[36, 2\]"):
        from_peft(model.target)


def test_unbatched_convolution_input():
    model, layer, x = build("lora", "Conv2d")
    op = AdapterLinear.from_peft(layer)
    torch.testing.assert_close(op(x[0]), model(x[:1])[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["loha", "lokr"])
def test_tucker_form_on_a_linear_is_not_claimed_for_peft(name):
    """PEFT builds the Tucker form only for kernels larger than 1 (its Linear ignores the flag): gradguard's maths
    is defined at conv_kernel 1 too (a core between the factors), but no PEFT layer is claimed to compute it."""
    from gradguard.bridge import peft_unsupported_reason

    hp = _C.resolve_hyper(name, 12, 6, {"use_effective_conv2d": 1, "r": 1})
    assert "Tucker form only on a convolution" in peft_unsupported_reason(name, hp)


def test_conv_kernel_must_divide_d_in():
    with pytest.raises(_C.InputError, match="conv_kernel.*divides d_in = 12.*got 5"):
        _C.resolve_hyper("lokr", 12, 6, {"conv_kernel": 5})


def test_registry_declares_what_peft_wraps():
    """Every declared layer type is one PEFT's tuner builds (PEFT's refusal would make the comparisons above error)."""
    assert CASES, "no adapter declares a layer type beyond Linear"
    for name, kind, given in CASES:
        build(name, kind, 0, given)


@pytest.mark.parametrize("use_dora", [False, True])
def test_fast_path_on_a_gpt2_model(use_dora):
    """GPT-2 is the model whose linear layers are HF Conv1D: on a tiny random one, every targeted Conv1D layer is
    swapped, the logits are PEFT's, and every adapter parameter gets its gradient."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2, bos_token_id=None,
                                  eos_token_id=None)
    targets = ["c_attn", "c_proj", "c_fc"]
    model = get_peft_model(transformers.GPT2LMHeadModel(cfg), LoraConfig(
        r=4, target_modules=targets, use_dora=use_dora, init_lora_weights=False, lora_dropout=0.0)).double().eval()
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    want = model(ids).logits.detach()
    report = gg.fast_path(model, backend="torch")
    n_targets = sum(1 for n, m in model.named_modules() if n.split(".")[-1] in targets and hasattr(m, "base_layer"))
    assert len(report.swapped) == n_targets > 0 and not report.skipped, str(report)
    torch.testing.assert_close(model(ids).logits, want, rtol=1e-10, atol=1e-12)
    flow = gg.check(model, ids, loss_fn=lambda out: out.logits.pow(2).mean())
    assert flow.ok, str(flow)


def test_grouped_dilated_lora_has_no_merged_reference():
    """PEFT's LoRA ignores dilation (its merge is the reference) but cannot merge a grouped convolution: on both at
    once the comparison runs without a merged copy and says why PEFT's values differ."""
    from peft import LoraConfig

    model = inject(LoraConfig(r=2, init_lora_weights=False, target_modules=["target"]),
                   Host(nn.Conv2d(4, 6, 3, stride=3, dilation=2, groups=2))).double()
    x = torch.randn(1, 4, 11, 11, dtype=torch.float64)
    rows = compare_live_layer(model.target, x, model=model)
    assert {r["reference"] for r in rows} == {"peft"}
    assert not all(r["ok"] for r in rows)
    assert all(r["ok"] or "cannot merge a grouped convolution" in r["known_peft_defect"] for r in rows)
