"""The user's story (../shared/USER_STORY.md) end to end on CPU.

1. weight_lora's training extra (the WeightLoRA recipe): after every optimizer step only the K gates ``weight_lora_w``
   of largest |w| stay non-zero (``project_top_k`` / ``WeightLoraTopKCallback``), checked against an independent
   computation, in a real Trainer run that still learns, with gradguard's callback alongside.
2. "check that the Hugging Face Trainer runs": my_lora, weight_lora and PEFT's LoRA, DoRA, LoHa, LoKr, IA3, VeRA and
   OFT each train the tiny random Llama on the CopyTask with GradGuardCallback(every_n_steps=10) silent, the loss
   going down and every trainable adapter parameter changing.
3. "unsloth ... gives every element of the adapter the gradient None": the planted unsloth pattern on my_lora stops
   training before the first optimizer step, naming the gates and the cause.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch

pytest.importorskip("transformers")
from peft import (  # noqa: E402
    IA3Config, LoHaConfig, LoKrConfig, LoraConfig, OFTConfig, VeraConfig, get_peft_model,
)
from transformers import TrainerCallback  # noqa: E402

from fixtures.planted.flow_models import unsloth_freeze, unsloth_fuse_mlp  # noqa: E402
from gradguard.integrations import GradGuardCallback, GradGuardError  # noqa: E402
from gradguard.models import llama_batch, tiny_llama  # noqa: E402
from gradguard.peft import MyLoraConfig, WeightLoraConfig  # noqa: E402
from gradguard.peft.weight_lora import WeightLoraTopKCallback, project_top_k  # noqa: E402

from trainer_helpers import TARGETS, losses, make_trainer  # noqa: E402  (pytest puts tests/python on sys.path)

GATE = "weight_lora_w"
ALL_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def mean(xs) -> float:
    return sum(xs) / len(xs)


def gates_of(model) -> dict[str, float]:
    """Gate values by parameter name, found by name (independently of the code under test)."""
    return {n: float(p.detach()) for n, p in model.named_parameters() if f".{GATE}." in n}


def expected_kept(values: dict[str, float], k: int) -> set[str]:
    """Independent top-k: a gate is kept when fewer than k gates beat it (larger |w|, or equal |w| and a smaller
    name) - a rank count, not a sort."""
    def beats(m, n):
        return abs(values[m]) > abs(values[n]) or (abs(values[m]) == abs(values[n]) and m < n)
    return {n for n in values if sum(beats(m, n) for m in values) < k}


def weight_lora_model(r: int = 2, seed: int = 0):
    return get_peft_model(tiny_llama(seed), WeightLoraConfig(r=r, target_modules=TARGETS))


def set_gates(model, values) -> list[str]:
    names = list(gates_of(model))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in zip(names, values, strict=True):
            params[n].fill_(v)
    return names


# --- 1. the K-sparse projection ------------------------------------------------------------------------------------
def test_projection_on_random_gates_matches_torch_topk():
    model = weight_lora_model()
    g = torch.Generator().manual_seed(0)
    for k in range(1, 11):
        values = torch.randn(10, generator=g)  # distinct values: torch.topk's order is unambiguous
        names = set_gates(model, values.tolist())
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        kept = project_top_k(model, k)
        top = {names[i] for i in torch.topk(values.abs(), k).indices.tolist()}
        assert set(kept) == top and len(kept) == k
        assert kept == [n for n in names if n in top]  # model order
        after = gates_of(model)
        for i, n in enumerate(names):  # kept gates keep their exact value, the others are exactly 0
            assert after[n] == (float(values[i]) if n in top else 0.0)
        params = dict(model.named_parameters())
        assert all(torch.equal(params[n], before[n]) for n in before if GATE not in n)  # A, B, base untouched


def test_projection_on_a_toy_list_with_ties_and_signs():
    model = weight_lora_model()
    toy = [0.5, -2.0, 1.5, 0.0, -0.7, 3.0, 1.5, -1.5, 0.1, 2.5]  # three gates tie at |w| = 1.5
    names = set_gates(model, toy)
    values = dict(zip(names, toy))
    kept = project_top_k(model, 5)
    # |w|: 3.0, 2.5, -2.0, then two of the three 1.5s: the two smallest names among them
    tied = sorted(n for n, v in values.items() if abs(v) == 1.5)
    expected = {names[5], names[9], names[1], *tied[:2]}
    assert set(kept) == expected == expected_kept(values, 5)
    assert {n for n, v in gates_of(model).items() if v != 0} == expected
    assert gates_of(model)[names[1]] == -2.0  # the sign is kept


def test_k_at_least_the_number_of_gates_zeroes_nothing():
    model = weight_lora_model()
    names = set_gates(model, [0.1 * (i + 1) for i in range(10)])
    before = gates_of(model)
    assert project_top_k(model, 10) == names and project_top_k(model, 50) == names
    assert gates_of(model) == before


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3", None])
def test_bad_k_is_named(k):
    with pytest.raises(ValueError, match="argument 'k': expected a positive integer"):
        project_top_k(weight_lora_model(), k)
    with pytest.raises(ValueError, match="argument 'k'"):
        WeightLoraTopKCallback(k)


def test_a_model_without_gates_is_refused():
    for model in (tiny_llama(0), get_peft_model(tiny_llama(0), LoraConfig(r=2, target_modules=TARGETS))):
        with pytest.raises(ValueError, match="no weight_lora gate"):
            project_top_k(model, 2)
    with pytest.raises(ValueError, match="no weight_lora gate .*'missing'"):
        project_top_k(weight_lora_model(), 2, adapter_name="missing")
    with pytest.raises(ValueError, match="argument 'adapter_name'"):
        project_top_k(weight_lora_model(), 2, adapter_name=3)


def test_a_non_finite_gate_is_refused():
    model = weight_lora_model()
    set_gates(model, [1.0] * 9 + [math.nan])
    with pytest.raises(ValueError, match="non-finite"):
        project_top_k(model, 2)
    assert sum(v == 1.0 for v in gates_of(model).values()) == 9  # nothing was zeroed before the error


def test_only_the_selected_adapter_is_projected():
    model = weight_lora_model()
    model.add_adapter("other", WeightLoraConfig(r=2, target_modules=TARGETS))  # not active: "default" is
    other = {n for n in gates_of(model) if n.endswith(".other")}
    assert len(other) == 10
    set_gates(model, [float(i + 1) for i in range(20)])  # default and other gates interleave in model order
    before = gates_of(model)
    kept = project_top_k(model, 3)
    assert len(kept) == 3 and not set(kept) & other
    assert all(gates_of(model)[n] == before[n] for n in other)  # the inactive adapter's gates are untouched
    default_now = {n: v for n, v in gates_of(model).items() if n not in other}
    kept_other = project_top_k(model, 2, adapter_name="other")
    assert set(kept_other) == expected_kept({n: before[n] for n in other}, 2)
    assert sum(gates_of(model)[n] != 0 for n in other) == 2
    assert {n: v for n, v in gates_of(model).items() if n not in other} == default_now


class GateProbe(TrainerCallback):
    """Listed before the top-K callback: records the gates right after optimizer.step() (before the projection) and
    at the end of the step (after it)."""

    def __init__(self):
        self.before: list[dict[str, float]] = []
        self.after: list[dict[str, float]] = []

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.before.append(gates_of(model))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after.append(gates_of(model))


K = 4  # of the 10 gated layers (q, v, gate, up, down of 2 blocks)


def topk_run(tmp_path, gradguard_callback):
    model = get_peft_model(tiny_llama(0), WeightLoraConfig(r=4, target_modules=TARGETS)).train()
    probe, topk = GateProbe(), WeightLoraTopKCallback(K)
    trainer = make_trainer(model, tmp_path, [probe, topk, gradguard_callback])  # lr 3e-2
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the gradguard callback must not even warn
        trainer.train()
    return model, trainer, probe, topk


def test_top_k_training_keeps_exactly_k_gates_and_still_learns(tmp_path):
    # check_updates=False: see test_default_callback_accepts_pruned_layers (the no-update check is the part that
    # does not cope with pruning yet); the flow check itself runs at steps 0, 10, 20, 30.
    cb = GradGuardCallback(every_n_steps=10, check_updates=False)
    model, trainer, probe, topk = topk_run(tmp_path, cb)
    assert [s for s, _ in topk.history] == list(range(1, 31)) and len(probe.before) == len(probe.after) == 30
    # B = 0 at init gives the gates an exactly zero gradient in step 1, so the first projection sees 10 gates tied at
    # 1 and keeps the first K names (layer 0's mlp.down/gate/up and self_attn.q): the tie-break, not the data,
    # chooses the adapters here (test_warmup_lets_the_gates_differ_before_the_first_projection).
    assert set(probe.before[0].values()) == {1.0}
    assert set(topk.history[0][1]) == set(sorted(probe.before[0])[:K])
    for (step, kept), before, after in zip(topk.history, probe.before, probe.after):
        assert len(before) == 10
        nonzero = {n for n, v in after.items() if v != 0.0}
        assert set(kept) == nonzero == expected_kept(before, K), step
        assert all(after[n] == before[n] for n in kept)  # the projection does not alter the kept gates

    # The loss still goes down with 4 of 10 adapters: measured first-5 / last-5 mean 4.753 -> 4.497 (drop 0.256;
    # 0.237 / 0.254 with tiny_llama seeds 1 / 2; all 10 gates: 0.291). Step-to-step noise (sd of consecutive
    # differences) ~0.015, so the sd of a difference of two 5-step means is ~0.007: 0.12 is > 15 sd above 0 and
    # > 15 sd below every measured drop.
    loss = losses(trainer)
    assert len(loss) == 30 and mean(loss[-5:]) < mean(loss[:5]) - 0.12, loss

    # Independent evidence: the pruned layers' A and B get exactly zero gradient, the kept ones do not.
    kept = topk.history[-1][1]
    layers = {n.rsplit(f".{GATE}.", 1)[0]: n in kept for n in gates_of(model)}
    model.zero_grad(set_to_none=True)
    model(**llama_batch(0)).loss.backward()
    for n, p in model.named_parameters():
        if ".weight_lora_A." in n or ".weight_lora_B." in n:
            alive = layers[n.rsplit(".weight_lora_", 1)[0]]
            assert (p.grad is not None and bool(p.grad.abs().sum() > 0)) == alive, n
    model.zero_grad(set_to_none=True)

    # gradguard's flow check: silent, and the pruned layers' exactly-zero A/B gradients are notes explained by the
    # all-zero trainable gate (cause zero_init_factor), not problems.
    assert [s for s, _ in cb.reports] == [0, 10, 20, 30] and all(r.ok and not r.problems for _, r in cb.reports)
    pruned = [layer for layer, alive in layers.items() if not alive]
    assert len(pruned) == 10 - K
    expected_notes = {f"{layer}.weight_lora_{f}.default" for layer in pruned for f in "AB"}
    for step, report in cb.reports[1:]:
        assert {n.param for n in report.notes} == expected_notes, step
        for note in report.notes:
            assert note.cause == "zero_init_factor" and note.kind == "zero"
            assert f"{note.param.rsplit('.weight_lora_', 1)[0]}.{GATE}.default" in note.detail  # names the gate


def test_warmup_lets_the_gates_differ_before_the_first_projection(tmp_path):
    model = get_peft_model(tiny_llama(0), WeightLoraConfig(r=4, target_modules=TARGETS)).train()
    probe, topk = GateProbe(), WeightLoraTopKCallback(K, warmup_steps=3)
    make_trainer(model, tmp_path, [probe, topk], steps=8).train()
    assert [s for s, _ in topk.history] == [4, 5, 6, 7, 8]
    assert all(sum(v != 0 for v in after.values()) == 10 for after in probe.after[:3])  # no projection yet
    assert len({abs(v) for v in probe.before[3].values()}) == 10  # no ties left to break by name
    for (step, kept), before, after in zip(topk.history, probe.before[3:], probe.after[3:]):
        assert set(kept) == {n for n, v in after.items() if v != 0} == expected_kept(before, K), step
    with pytest.raises(ValueError, match="argument 'warmup_steps'"):
        WeightLoraTopKCallback(K, warmup_steps=-1)


# The no-update check blames only parameters that got a non-zero gradient: the pruned layers' factors (gate held at 0)
# get none and are not expected to move.
def test_default_callback_accepts_pruned_layers(tmp_path):
    cb = GradGuardCallback(every_n_steps=10)
    topk_run(tmp_path, cb)
    assert [s for s, _ in cb.reports] == [0, 10, 20, 30] and all(r.ok for _, r in cb.reports)


# --- 2. the user's workflow: every adapter trains in a real Trainer --------------------------------------------------
# (name, config, learning rate, number of trainable tensors, minimum drop of the mean loss of the first 5 steps to the
# last 5). The learning rates were chosen per adapter by measuring 1e-2 / 3e-2 / 1e-1 (and 0.3 / 1.0 for IA3 and
# OFT) and taking a well-behaved one. Measured drops (tiny_llama seeds 0 / 1 / 2; identical with 1 and 2 threads):
#   my_lora 0.315/0.306/0.337  weight_lora 0.291/0.278/0.265  lora 0.317/0.277/0.328  dora 0.323/0.306/0.334
#   loha 0.491/0.480/0.499     lokr 0.338/0.342/0.372         ia3 0.264/0.230/0.289   vera 0.333/0.327/0.333
#   oft 0.169/0.222/0.192
# Step-to-step loss noise (sd of consecutive differences over the last 15 steps) is 0.005-0.015, i.e. ~0.007 for a
# difference of two 5-step means. Each threshold is half the smallest measured drop (rounded down): at least 0.08,
# i.e. > 10 sd above "no learning" and > 10 sd below what the adapter actually achieves.
ADAPTERS = [
    ("my_lora", lambda: MyLoraConfig(r=4, target_modules=TARGETS), 3e-2, 30, 0.15),
    ("weight_lora", lambda: WeightLoraConfig(r=4, target_modules=TARGETS), 3e-2, 30, 0.13),
    ("lora", lambda: LoraConfig(r=4, target_modules=TARGETS), 3e-2, 20, 0.13),
    ("dora", lambda: LoraConfig(r=4, target_modules=TARGETS, use_dora=True), 3e-2, 30, 0.15),
    ("loha", lambda: LoHaConfig(r=4, alpha=4, target_modules=TARGETS), 3e-2, 40, 0.24),
    ("lokr", lambda: LoKrConfig(r=4, alpha=4, target_modules=TARGETS), 3e-2, 20, 0.16),
    # IA3 only rescales activations: on q/v/down alone (3 vectors per block) the drop is 0.06-0.12 even at lr 0.1-1,
    # so every linear gets a vector (feedforward_modules must be a subset of target_modules: scale the MLP inputs).
    ("ia3", lambda: IA3Config(target_modules=ALL_LINEARS, feedforward_modules=["gate_proj", "up_proj", "down_proj"]),
     0.3, 14, 0.11),
    # VeRA shares one random A/B (sized for the largest targeted layer, sliced per layer) and trains 2 vectors per
    # layer; r=32 (the default 256 is far wider than this model); it needs a larger lr than LoRA (0.1 vs 3e-2).
    ("vera", lambda: VeraConfig(r=32, target_modules=TARGETS), 0.1, 20, 0.16),
    # OFT rotates the input side in blocks: 16 divides both input widths (32 and 64). lr 1.0 breaks the run (by step 20
    # every oft_R gradient is exactly zero, which gradguard reports), 0.1 is stable.
    ("oft", lambda: OFTConfig(r=0, oft_block_size=16, target_modules=TARGETS), 0.1, 10, 0.08),
]


@pytest.mark.parametrize("make_config,lr,n_trainable,min_drop", [a[1:] for a in ADAPTERS],
                         ids=[a[0] for a in ADAPTERS])
def test_trainer_trains_every_adapter_with_the_callback_silent(tmp_path, make_config, lr, n_trainable, min_drop):
    model = get_peft_model(tiny_llama(0), make_config()).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert len(before) == n_trainable  # the adapter really sits on the targeted layers (10, or 14 for IA3)
    cb = GradGuardCallback(every_n_steps=10)
    trainer = make_trainer(model, tmp_path, cb, steps=30, lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the callback must not even warn
        trainer.train()
    loss = losses(trainer)
    assert len(loss) == 30 and all(math.isfinite(x) for x in loss)
    assert mean(loss[-5:]) < mean(loss[:5]) - min_drop, loss
    unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p.detach(), before[n])]
    assert not unchanged
    assert [step for step, _ in cb.reports] == [0, 10, 20, 30] and all(r.ok for _, r in cb.reports)
    assert set(before) <= set(cb.reports[0][1].checked)


# --- 3. the unsloth pattern on my_lora -----------------------------------------------------------------------------
def my_lora_llama():
    return get_peft_model(tiny_llama(0), MyLoraConfig(r=4, target_modules=TARGETS)).train()


def test_my_lora_under_the_unsloth_pattern_stops_before_the_first_step(tmp_path):
    model = my_lora_llama()
    gates = {n for n, _ in model.named_parameters() if ".lora_gate." in n}
    assert len(gates) == 10
    unsloth_fuse_mlp(model)  # the fused MLP reads lora_A, lora_B and scaling only
    unsloth_freeze(model)    # everything not named lora_A/lora_B is frozen: my_lora's lora_gate too
    trainer = make_trainer(model, tmp_path, GradGuardCallback())
    with pytest.raises(GradGuardError) as e:
        trainer.train()
    assert trainer.state.global_step == 0  # stopped before the first optimizer step
    problems = e.value.report.problems
    assert {p.param for p in problems} == gates and len(problems) == 10  # every gate, nothing else
    assert {(p.kind, p.cause) for p in problems} == {("frozen_adapter", "frozen_by_caller")}
    assert "lora_gate" in str(e.value) and "frozen_by_caller" in str(e.value)


def test_my_lora_gates_bypassed_by_the_fused_mlp_are_named(tmp_path):
    model = my_lora_llama()
    unsloth_fuse_mlp(model)  # no freeze: the MLP gates require grad but their layers' forward never runs
    trainer = make_trainer(model, tmp_path, GradGuardCallback())
    with pytest.raises(GradGuardError) as e:
        trainer.train()
    assert trainer.state.global_step == 0
    mlp_gates = {n for n, _ in model.named_parameters() if ".lora_gate." in n and ".mlp." in n}
    assert len(mlp_gates) == 6
    problems = e.value.report.problems
    assert {p.param for p in problems} == mlp_gates  # the attention gates still train
    assert {(p.kind, p.cause) for p in problems} == {("none", "forward_bypassed")}
