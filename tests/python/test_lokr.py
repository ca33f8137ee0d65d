"""LoKr's shapes follow PEFT's own per-layer decisions exactly: the Kronecker factorization of each dim
(decompose_factor) and which side is one tensor or a product of two (use_w1/use_w2, derived from the dims, r and
decompose_both). Checked against PEFT's live layers over a grid of shapes, so a mismatch in the C++ port of
factorization() or of the use_w1/use_w2 rule cannot hide; plus the derived hyper-parameters' contract."""
import itertools

import pytest
import torch
from torch import nn

import gradguard as gg
from gradguard import _C
from gradguard.bridge import from_peft, make_peft_layer

DIMS = [1, 2, 3, 5, 7, 8, 12, 16, 18, 30, 64, 127, 128, 256]


def _peft_shapes(d_in, d_out, hp):
    layer = make_peft_layer("lokr", nn.Linear(d_in, d_out), hp)
    return {n.split(".")[0]: list(p.shape) for n, p in layer.named_parameters() if n.startswith("lokr_")}


@pytest.mark.parametrize("factor", [-1, 2, 4])
@pytest.mark.parametrize("decompose_both", [False, True])
def test_tensor_shapes_match_peft(factor, decompose_both):
    for d_in, d_out in itertools.product(DIMS, DIMS[::3]):
        for r in (1, 2, 4, 8):
            hp = {"r": r, "decompose_factor": factor, "decompose_both": decompose_both}
            ours = _C.tensor_shapes("lokr", d_in, d_out, _C.resolve_hyper("lokr", d_in, d_out, hp))
            ours = {k: list(v) for k, v in ours.items() if k.startswith("lokr_")}
            assert ours == _peft_shapes(d_in, d_out, hp), (d_in, d_out, hp)


def test_from_peft_recovers_decompose_options():
    for hp in ({"r": 1, "decompose_both": True}, {"r": 2, "decompose_factor": 4}, {"r": 8}):
        layer = make_peft_layer("lokr", nn.Linear(64, 48), hp)
        name, got, tensors = from_peft(layer)
        resolved = _C.resolve_hyper("lokr", 64, 48, hp)
        assert name == "lokr"
        assert {k: got[k] for k in ("r", "decompose_both", "decompose_factor")} == \
            {k: resolved[k] for k in ("r", "decompose_both", "decompose_factor")}
        assert set(tensors) == set(_C.tensor_shapes("lokr", 64, 48, resolved))


def test_derived_hyper_parameters_are_not_settable():
    hp = _C.resolve_hyper("lokr", 64, 64, {"r": 2})
    assert hp["use_w1"] == 1 and hp["use_w2"] == 0  # w2 (8, 8) is factored at r = 2 < 8 / 2
    assert _C.resolve_hyper("lokr", 64, 64, hp) == hp  # a resolved dict travels back in unchanged
    with pytest.raises(gg.InputError, match="'use_w2'.*derived"):
        _C.resolve_hyper("lokr", 64, 64, {"r": 2, "use_w2": 1})
    with pytest.raises(gg.InputError, match="'decompose_factor'"):
        _C.resolve_hyper("lokr", 64, 64, {"decompose_factor": 0})
    assert [h["kind"] for h in gg.info("lokr")["hyper"] if h["name"] in ("use_w1", "use_w2")] == ["derived", "derived"]


@pytest.mark.parametrize("hp", [{"r": 1, "decompose_both": True}, {"r": 2, "decompose_factor": 4}, {"r": 8}],
                         ids=["both_factored", "factor4", "whole"])
def test_gradcheck_and_peft_agree_on_every_side_layout(hp):
    # Every combination of whole/factored sides: finite differences on both backends and PEFT's own numbers.
    for backend in ("eigen", "torch"):
        res = gg.gradcheck("lokr", d_in=16, d_out=12, backend=backend, mode="full", **hp)
        assert res.ok, str(res)
    res = gg.compare("lokr", backends=("eigen", "torch", "peft"), d_in=16, d_out=12, n_rows=5, **hp)
    assert res.ok, str(res)
