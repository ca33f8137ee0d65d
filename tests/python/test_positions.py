"""Frozen index tables (TensorKind positions: FourierFT's and WaveFT's coefficient entries, SHiRA's sparse entries) and per-adapter
shape rules (RoAd's even d_out): seeded cases draw valid tables, every backend refuses invalid ones with the argument
named, and the bridge reads PEFT's tables, which live outside its state_dict."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradguard as gg
from gradguard.bridge import from_peft, make_peft_layer
from gradguard.registry import check_dims

POSITIONS = [("shira", "shira_indices", {"r": 2}), ("fourierft", "indices", {"n_frequency": 9}),
             ("waveft", "waveft_indices", {"n_frequency": 9})]


@pytest.mark.parametrize("name,key,hp", POSITIONS, ids=[p[0] for p in POSITIONS])
def test_seeded_positions_are_distinct_entries_of_the_weight(name, key, hp):
    for seed in range(5):
        case = gg._C.make_case(name, 7, 5, 3, seed, hp)
        pos = case["tensors"][key]
        assert pos.shape[0] == 2 and pos.shape[1] >= 9
        rows, cols = pos[0], pos[1]
        assert torch.equal(pos, pos.round())
        assert 0 <= rows.min() and rows.max() < 5 and 0 <= cols.min() and cols.max() < 7
        flat = (rows * 7 + cols).tolist()
        assert len(set(flat)) == len(flat) and flat == sorted(flat)  # distinct, row-major (PEFT's SHiRA order)


def _corrupt(pos: torch.Tensor, how: str) -> torch.Tensor:
    pos = pos.clone()
    if how == "fraction":
        pos[1, 0] += 0.5
    elif how == "row_out_of_range":
        pos[0, 1] = 5  # d_out = 5
    elif how == "negative":
        pos[1, 2] = -1
    else:  # repeated: entry 1 := entry 0
        pos[:, 1] = pos[:, 0]
    return pos


@pytest.mark.parametrize("how", ["fraction", "row_out_of_range", "negative", "repeated"])
@pytest.mark.parametrize("name,key,hp", POSITIONS, ids=[p[0] for p in POSITIONS])
def test_invalid_positions_are_refused_by_every_backend(name, key, hp, how):
    case = gg._C.make_case(name, 7, 5, 3, 0, hp)
    tensors = dict(case["tensors"])
    tensors[key] = _corrupt(tensors[key], how)
    for backend in ("eigen", "torch"):
        with pytest.raises(gg.InputError, match=rf"tensors\['{key}'\].*whole-number positions"):
            gg._C.run_backend(name, backend, "float64", case["x"], tensors, case["dy"], case["hp"])
    with pytest.raises(gg.InputError, match=rf"tensors\['{key}'\]"):
        gg.adapter_linear(name, case["x"], tensors, **case["hp"])


@pytest.mark.parametrize("name,key,hp", POSITIONS, ids=[p[0] for p in POSITIONS])
def test_positions_may_keep_peft_integer_dtype_in_the_op(name, key, hp):
    case = gg._C.make_case(name, 7, 5, 3, 0, hp)
    tensors = dict(case["tensors"])
    want = gg.adapter_linear(name, case["x"], tensors, **case["hp"])
    tensors[key] = tensors[key].to(torch.int32)
    torch.testing.assert_close(gg.adapter_linear(name, case["x"], tensors, **case["hp"]), want, rtol=0, atol=0)
    tensors[key] = tensors[key].to(torch.float32)  # a floating table must share x's dtype like every other tensor
    with pytest.raises(gg.InputError, match=rf"tensors\['{key}'\].*dtype"):
        gg.adapter_linear(name, case["x"], tensors, **case["hp"])


@pytest.mark.parametrize("name,key,hp", POSITIONS, ids=[p[0] for p in POSITIONS])
def test_from_peft_reads_the_table_peft_keeps_outside_its_state_dict(name, key, hp):
    torch.manual_seed(0)
    layer = make_peft_layer(name, nn.Linear(7, 5), hp)
    assert not any(key in k for k in layer.state_dict())  # what makes this table special
    got, _, tensors = from_peft(layer)
    assert got == name
    peft_table = getattr(layer, key)["default"]
    assert torch.equal(tensors[key].long(), peft_table.long())
    x = torch.randn(3, 7)
    torch.testing.assert_close(gg.adapter_linear(name, x, tensors, **from_peft(layer)[1]), layer(x), rtol=1e-5,
                               atol=1e-5)


def test_from_peft_refuses_a_wavelet_gradguard_does_not_implement():
    from peft import WaveFTConfig
    from peft.tuners.waveft import WaveFTLinear

    layer = WaveFTLinear(nn.Linear(7, 5), "default", WaveFTConfig(n_frequency=9, wavelet_family="db2"), n_frequency=9)
    with pytest.raises(gg.InputError, match="Haar.*got 'db2'"):
        from_peft(layer)


def test_road_check_shapes_get_an_even_d_out_and_odd_ones_are_refused():
    assert check_dims("road", 11, 7) == (11, 8) and check_dims("road", 8, 8) == (8, 8)
    assert check_dims("lora", 11, 7) == (11, 7)  # adapters without a shape rule keep the shape asked for
    res = gg.compare("road", backends=("eigen", "torch"))  # the default 11 x 7 becomes 11 x 8
    assert res.ok, str(res)
    with pytest.raises(gg.InputError, match="group_size.*d_out = 7"):
        gg._C.resolve_hyper("road", 11, 7, {"group_size": 2})


def test_a_table_written_in_place_after_a_good_call_is_checked_again():
    # the op remembers the tables it checked (by storage and version), so a later in-place write must not slip by
    case = gg._C.make_case("shira", 7, 5, 3, 0, {"r": 2})
    tensors = dict(case["tensors"])
    gg.adapter_linear("shira", case["x"], tensors, **case["hp"])
    tensors["shira_indices"][1, 0] = 7.0  # d_in = 7: out of range, written into the very tensor checked before
    with pytest.raises(gg.InputError, match=r"tensors\['shira_indices'\]"):
        gg.adapter_linear("shira", case["x"], tensors, **case["hp"])


def test_empty_batch_runs_for_every_new_adapter():
    for name in ("shira", "fourierft", "road", "vblora", "waveft"):
        d_in, d_out = check_dims(name, 7, 5)
        case = gg._C.make_case(name, d_in, d_out, 3, 0, gg.registry.rank_hp(name, 2, d_in, d_out))
        x = torch.zeros(0, d_in, dtype=torch.float64, requires_grad=True)
        y = gg.adapter_linear(name, x, dict(case["tensors"]), **case["hp"])
        assert y.shape == (0, d_out)
        y.sum().backward()
        assert x.grad.shape == (0, d_in)
