"""GradGuardCallback in a real transformers.Trainer on CPU, and the pytest plugin. The callback must stay silent on a
healthy run that learns, stop training at step 1 on the unsloth pattern (fused MLP + name-based freeze) naming the
parameters and causes, warn instead when asked, and catch parameters that never change."""
from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("transformers")
from peft import LoraConfig, get_peft_model  # noqa: E402

from fixtures.planted.flow_models import add_lora_gate, unsloth_freeze, unsloth_fuse_mlp  # noqa: E402
from gradguard.integrations import GradGuardCallback, GradGuardError  # noqa: E402
from gradguard.models import tiny_llama  # noqa: E402
from gradguard.peft import MyLoraConfig  # noqa: E402

from trainer_helpers import TARGETS, losses, make_trainer  # noqa: E402  (pytest puts tests/python on sys.path)

pytest_plugins = ["pytester"]


@pytest.mark.parametrize("config", [MyLoraConfig(r=4, target_modules=TARGETS),
                                    LoraConfig(r=4, target_modules=TARGETS, use_dora=True)], ids=["my_lora", "dora"])
def test_healthy_run_learns_and_the_callback_stays_silent(tmp_path, config):
    model = get_peft_model(tiny_llama(0), config).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cb = GradGuardCallback(every_n_steps=10)
    trainer = make_trainer(model, tmp_path, cb)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the callback must not even warn
        trainer.train()
    loss = losses(trainer)
    assert len(loss) == 30 and sum(loss[-5:]) / 5 < sum(loss[:5]) / 5 - 0.25, loss  # step-to-step noise ~0.03
    unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p.detach(), before[n])]
    assert not unchanged
    assert [step for step, _ in cb.reports] == [0, 10, 20, 30] and all(r.ok for _, r in cb.reports)
    assert set(before) <= set(cb.reports[0][1].checked)  # every trainable parameter (gates, magnitudes) was checked


def unsloth_pattern():
    model = get_peft_model(tiny_llama(0), LoraConfig(r=4, target_modules=TARGETS)).train()
    add_lora_gate(model)        # the user's extra adapter parameter, used by the layer's own forward
    unsloth_fuse_mlp(model)     # the fused kernel reads lora_A, lora_B and scaling only
    unsloth_freeze(model)       # and everything not named lora_A/lora_B is frozen
    return model


def test_unsloth_pattern_stops_training_at_step_1_naming_the_gates(tmp_path):
    trainer = make_trainer(unsloth_pattern(), tmp_path, GradGuardCallback())
    with pytest.raises(GradGuardError) as e:
        trainer.train()
    assert trainer.state.global_step == 0  # stopped before the first optimizer step
    problems = e.value.report.problems
    gates = [p for p in problems if "lora_gate" in p.param]
    assert len(gates) == 10 and len(problems) == 10  # every LoRA gate of the 2 x 5 layers, nothing else
    assert {p.kind for p in gates} == {"frozen_adapter"}
    assert "lora_gate" in str(e.value) and "frozen_by_caller" in str(e.value)


def test_bypassed_gates_are_named_with_their_cause(tmp_path):
    model = get_peft_model(tiny_llama(0), LoraConfig(r=4, target_modules=TARGETS)).train()
    add_lora_gate(model)
    unsloth_fuse_mlp(model)  # no freeze: the MLP gates require grad but their layers' forward never runs
    with pytest.raises(GradGuardError) as e:
        make_trainer(model, tmp_path, GradGuardCallback()).train()
    by_param = {p.param: p for p in e.value.report.problems}
    mlp = [n for n in by_param if "mlp" in n]
    assert mlp and all(by_param[n].cause == "forward_bypassed" for n in mlp)
    assert all("mlp" in n for n in by_param)  # the attention gates still train


def test_warn_mode_keeps_training(tmp_path):
    trainer = make_trainer(unsloth_pattern(), tmp_path, GradGuardCallback(on_problem="warn", check_updates=False),
                           steps=3)
    with pytest.warns(RuntimeWarning, match="lora_gate"):
        trainer.train()
    assert trainer.state.global_step == 3


def test_parameters_that_never_change_are_caught(tmp_path):
    model = get_peft_model(tiny_llama(0), MyLoraConfig(r=4, target_modules=TARGETS)).train()
    with pytest.raises(GradGuardError, match="did not change"):
        make_trainer(model, tmp_path, GradGuardCallback(), steps=3, lr=0.0).train()


def test_a_warmup_from_learning_rate_0_is_not_blamed(tmp_path):
    # HF's linear warmup gives optimizer step 1 a learning rate of 0: gradients are non-zero and nothing moves, which
    # is the schedule, not a fault; step 2 (learning rate > 0) moves every tensor.
    model = get_peft_model(tiny_llama(0), MyLoraConfig(r=4, target_modules=TARGETS)).train()
    trainer = make_trainer(model, tmp_path, GradGuardCallback(), steps=4, lr_scheduler_type="linear", warmup_steps=3)
    trainer.train()
    assert trainer.state.global_step == 4


def test_a_learning_rate_that_stays_0_is_named(tmp_path):
    model = get_peft_model(tiny_llama(0), MyLoraConfig(r=4, target_modules=TARGETS)).train()
    trainer = make_trainer(model, tmp_path, GradGuardCallback(), steps=3, lr=0.0, lr_scheduler_type="linear",
                           warmup_steps=2)
    with pytest.raises(GradGuardError, match="did not change .*learning rate was 0 in every step"):
        trainer.train()
    assert trainer.state.global_step == 2  # decided when the two-step window closed


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="on_problem"):
        GradGuardCallback(on_problem="ignore")
    with pytest.raises(ValueError, match="every_n_steps"):
        GradGuardCallback(every_n_steps=0)


PLUGIN_TEST = '''
from peft import LoraConfig, get_peft_model
from gradguard.models import llama_batch, tiny_llama


def test_healthy(gradguard_check):
    model = get_peft_model(tiny_llama(0), LoraConfig(r=4, target_modules=["q_proj"]))
    assert gradguard_check(model, **llama_batch(0)).ok


def test_frozen_adapter(gradguard_check):
    model = get_peft_model(tiny_llama(0), LoraConfig(r=4, target_modules=["q_proj"]))
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.requires_grad_(False)
    gradguard_check(model, **llama_batch(0))
'''


def test_pytest_plugin_fixture_and_summary(pytester):
    pytester.makepyfile(PLUGIN_TEST)
    result = pytester.runpytest_subprocess("--gradguard", "-q")  # the plugin comes from the package's entry point
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*gradguard_check: * parameter(s) will not train as intended*",
                                 "*= gradguard =*", "*test_healthy: OK*", "*test_frozen_adapter: * PROBLEM(S)*",
                                 "*lora_B*frozen_adapter*"])
