"""gradguard audit-peft: gradguard's checkers on PEFT's own tuners. Each finding it reports is confirmed a second way;
it must catch a planted defect in a PEFT layer (and stay quiet on the healthy one), and the confirmed findings on the
pinned PEFT have regression tests here, marked as known PEFT defects, so a PEFT upgrade that fixes one is noticed."""
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import gradguard as gg
from gradguard.audit_peft import audit_peft


@pytest.fixture(scope="module")
def lora_ia3():
    return audit_peft(["LORA", "IA3"], ["Linear", "Conv2d"])


def test_report_structure_and_known_findings(lora_ia3):
    j = lora_ia3.to_json()
    assert set(j) >= {"peft_version", "findings", "skipped", "unconfirmed", "audited"}
    assert j["peft_version"] == __import__("peft").__version__
    for f in j["findings"]:
        assert set(f) >= {"tuner", "layer", "check", "tensor", "max_abs_err", "detail", "repro", "confirmed_by"}
        assert f["repro"] and f["confirmed_by"]
    dora = [f for f in lora_ia3.findings if f.tuner == "LORA" and f.check == "gradcheck"]
    assert dora and all("use_dora" in f.detail and f.known.startswith("deliberate") for f in dora)
    assert {f.layer for f in dora} == {"Linear", "Conv2d"}
    ia3 = [f for f in lora_ia3.findings if f.tuner == "IA3"]
    assert ia3 and all(f.check == "identities" and f.tensor == "unmerge restores W" for f in ia3)
    assert all(f.known.startswith("documented") for f in ia3)
    # plain LoRA (no DoRA) is healthy: no finding without use_dora
    assert not [f for f in lora_ia3.findings if f.tuner == "LORA" and "use_dora" not in f.detail]
    assert "Findings" in lora_ia3.to_markdown()


def test_planted_detached_parameter_is_a_confirmed_finding(monkeypatch):
    from peft.tuners.ia3 import layer as ia3_layer

    def planted(self, x, *args, **kwargs):  # the IA3 vector's gradient path cut, as a buggy fork would
        return self.base_layer(x) * self.ia3_l["default"].detach().reshape(-1)
    monkeypatch.setattr(ia3_layer.Linear, "forward", planted)
    report = audit_peft(["IA3"], ["Linear"])
    grads = [f for f in report.findings if f.check == "gradcheck"]
    assert grads and any("ia3_l" in f.tensor for f in grads), str(report)
    assert all(f.confirmed_by.startswith("full Jacobian") for f in grads)


def test_known_peft_defect_ia3_unmerge_does_not_restore_weight():
    """PEFT 0.21's IA3 unmerge divides by (l + 1e-8): in float64, merge then unmerge leaves W off by ~1e-8 relative.
    Fails (and should then be removed from the known findings) once PEFT restores W exactly."""
    from peft import IA3Config
    from peft.tuners.ia3 import Linear

    torch.manual_seed(0)
    base = nn.Linear(6, 5).double()
    layer = Linear(base, "default", config=IA3Config(init_ia3_weights=False), is_feedforward=False).double()
    w0 = base.weight.detach().clone()
    layer.merge()
    layer.unmerge()
    err = (base.weight - w0).abs().max().item()
    assert err > 1e-12, "PEFT now restores W exactly: drop this known finding"
    assert err < 1e-6


def test_cli_exit_codes_and_reports(tmp_path):
    cmd = [sys.executable, "-m", "gradguard.cli", "audit-peft", "--tuners", "LORA", "--layers", "Linear", "--json",
           "--out", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # DoRA's deliberate deviation is a finding
    assert json.loads(r.stdout)["findings"]
    assert (tmp_path / "audit-peft.json").exists() and (tmp_path / "audit-peft.md").exists()
    bad = subprocess.run(cmd[:4] + ["--tuners", "NOPE"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'tuners'" in bad.stderr


def test_every_peft_tuner_is_audited_or_skipped_with_a_reason():
    """The whole audit (every tuner x layer type x option): each tuner audited or skipped with PEFT's reason, and every
    confirmed finding a known one — documented by PEFT or a PEFT defect with its regression test — so a PEFT upgrade
    that adds a defect (or fixes one: the regression tests) is noticed."""
    report = audit_peft()
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    seen = {a["tuner"] for a in report.audited} | {s["tuner"] for s in report.skipped}
    assert seen == {str(getattr(k, "value", k)) for k in PEFT_TYPE_TO_CONFIG_MAPPING}
    assert all(s["reason"] for s in report.skipped)
    unknown = [(f.tuner, f.layer, f.check, f.tensor) for f in report.findings if not f.known]
    assert unknown == [], f"new confirmed PEFT findings without a known reason and regression test: {unknown}"
    assert report.seconds < 600


class _Scaled(nn.Module):
    """y = x Wᵀ computed in `dtype` and cast back (float32: a float64 layer below float64 precision); `wrong_grad`
    plants a backward off by a constant factor (a wrong gradient at every step size)."""

    def __init__(self, dtype=torch.float64, wrong_grad=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
        self.dtype, self.wrong_grad = dtype, wrong_grad

    def forward(self, x):
        y = (x.to(self.dtype) @ self.weight.to(self.dtype).t()).to(x.dtype)
        if self.wrong_grad:  # same value, 1.5x the gradient through x
            y = y + 0.5 * (x @ self.weight.t() - (x @ self.weight.t()).detach())
        return y


@pytest.mark.parametrize("dtype,wrong,expected", [(torch.float32, False, "precision"), (torch.float64, True, "gradient")])
def test_step_test_separates_precision_from_a_wrong_gradient(dtype, wrong, expected):
    from gradguard.audit_peft import _confirm_gradcheck, _precision_not_gradient

    model = _Scaled(dtype, wrong)
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert _confirm_gradcheck(model, x, "weight")  # both fail finite differences at a small step
    coarse = _precision_not_gradient(model, x, "weight")
    assert (coarse is not None) == (expected == "precision"), coarse
    assert _precision_not_gradient(_Scaled(), x, "weight") is not None  # the healthy layer passes at every step
