"""gradguard gate: the CI regression gate. It must fail on an injected 2x slowdown of one adapter and on a planted
wrong backward, pass on an unchanged tree twice in a row, give exit 2 (file untouched) for a corrupt or missing
baseline, and never leave a half-written baseline behind."""
from __future__ import annotations

import io
import itertools
import json
import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import gradguard as gg
from gradguard import gate as gate_mod
from gradguard.progress import Progress
from gradguard.registry import declares_cuda
from gradguard.stats import mann_whitney_greater, u_statistic

SLOWDOWN_ENV = "GG_BENCH_TEST_SLOWDOWN"

# A user's own adapter as a gate would see it: a gated linear layer with a custom autograd Function. PLANT=True
# gives the gate's gradient the wrong sign, a bug that trains (the loss still moves) and that no shape check sees.
MODULE_FILE = '''
import torch
from torch import nn

PLANT = {plant}


class GatedLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, gate):
        ctx.save_for_backward(x, weight, gate)
        return gate * (x @ weight.T)

    @staticmethod
    def backward(ctx, dy):
        x, weight, gate = ctx.saved_tensors
        dgate = (dy * (x @ weight.T)).sum().reshape(gate.shape)
        return gate * dy @ weight, gate * dy.T @ x, -dgate if PLANT else dgate


class GatedLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4))
        self.gate = nn.Parameter(torch.tensor(0.7))

    def forward(self, x):
        return GatedLinearFn.apply(x, self.weight, self.gate)


def setup():
    torch.manual_seed(0)
    return {{"module": GatedLinear(), "inputs": (torch.randn(5, 4),)}}
'''


def write_config(folder: Path, *, speed: bool = True, plant: bool | None = None, **overrides) -> Path:
    lines = ['baseline = "baseline.json"', "[correctness]", 'adapters = ["lora"]', 'backends = ["torch"]',
             'modes = ["fast"]']
    if plant is not None:
        (folder / "my_adapter.py").write_text(MODULE_FILE.format(plant=plant))
        lines.append('module_files = ["my_adapter.py"]')
    if speed:
        table = {"adapters": '["lora", "dora"]', "shapes": "[{ N = 256, d = 512, r = 8 }]", "reps": 9, "warmup": 2,
                 "max_slowdown": 1.5, "alpha": 0.01, **overrides}
        lines += ["[speed]"] + [f"{k} = {v}" for k, v in table.items()]
    path = folder / "gate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_gate(*args, env_extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != SLOWDOWN_ENV}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "gradguard.cli", "gate", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


# --------------------------------------------------------------------------------------------------------------
# The statistics


def _brute_force_p(current, baseline):
    """P(U >= u observed) over every way of splitting the pooled values into samples of these sizes."""
    pooled, n = list(current) + list(baseline), len(current)
    u = u_statistic(current, baseline)
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), n):
        rest = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        hits += u_statistic([pooled[i] for i in chosen], rest) >= u
        total += 1
    return hits / total


def test_mann_whitney_is_the_exact_permutation_p_value_ties_included():
    rng = random.Random(7)
    for trial in range(120):
        n, m = rng.randint(1, 6), rng.randint(1, 6)
        draw = (lambda: rng.choice([1.0, 2.0, 3.0])) if trial % 2 else rng.random  # with and without ties
        current, baseline = [draw() for _ in range(n)], [draw() for _ in range(m)]
        assert mann_whitney_greater(current, baseline) == pytest.approx(_brute_force_p(current, baseline), abs=1e-12)
    assert mann_whitney_greater([4, 5, 6], [1, 2, 3]) == pytest.approx(1 / 20)  # the one most extreme split
    assert mann_whitney_greater([1.0] * 9, [1.0] * 9) == 1.0  # all equal: no evidence
    assert mann_whitney_greater([1] * 6 + [2] * 3, [1] * 9) == pytest.approx(7 / 68)  # 0.103; the normal approx says 0.038
    big = mann_whitney_greater([float(i) for i in range(30, 60)], [float(i) for i in range(30)])  # normal approximation
    assert 0 < big < 1e-9


# --------------------------------------------------------------------------------------------------------------
# The gate's verdicts (each run times real implementations: ~10-20 s)


def test_unchanged_passes_twice_and_2x_slowdown_of_one_adapter_fails(tmp_path):
    cfg = write_config(tmp_path)
    r = run_gate(cfg, "--update-baseline")
    assert r.returncode == 0, r.stdout + r.stderr
    baseline = json.loads((tmp_path / "baseline.json").read_text())
    assert set(baseline["benchmarks"]) == {"lora/N256_d512_r8/float32", "dora/N256_d512_r8/float32"}
    assert all(len(e["ratio_samples"]) == 9 for e in baseline["benchmarks"].values())
    for attempt in range(2):  # no flakiness: the same tree passes twice in a row
        r = run_gate(cfg, "--junit", tmp_path / f"junit{attempt}.xml")
        assert r.returncode == 0, (attempt, r.stdout + r.stderr)
        suite = ET.parse(tmp_path / f"junit{attempt}.xml").getroot().find("testsuite")
        assert suite.get("failures") == "0" and suite.get("tests") == "3"
    r = run_gate(cfg, "--json", env_extra={SLOWDOWN_ENV: "lora=2"})
    assert r.returncode == 1, r.stdout + r.stderr
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    slowed = checks["speed/lora/N256_d512_r8/float32"]
    assert not slowed["ok"] and "REGRESSION" in slowed["detail"]
    assert slowed["ratio_change"] > 1.5 and slowed["p_value"] < 0.01
    assert checks["speed/dora/N256_d512_r8/float32"]["ok"]  # only the slowed adapter is blamed
    assert checks["gradcheck/lora/torch/fast"]["ok"]
    assert baseline == json.loads((tmp_path / "baseline.json").read_text())  # never rewritten unless told


def test_planted_wrong_backward_fails_and_blocks_the_baseline(tmp_path):
    healthy = write_config(tmp_path, speed=False, plant=False)
    assert run_gate(healthy, "--update-baseline").returncode == 0
    r = run_gate(healthy)
    assert r.returncode == 0, r.stdout + r.stderr
    before = (tmp_path / "baseline.json").read_bytes()
    planted = write_config(tmp_path, speed=False, plant=True)
    r = run_gate(planted, "--junit", tmp_path / "junit.xml")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL  gradcheck_module/my_adapter.py/fast" in r.stdout and "gate: max abs err" in r.stdout
    failure = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and "gate" in failure.text  # the wrong tensor is named
    r = run_gate(planted, "--update-baseline")
    assert r.returncode == 1 and "not written" in r.stdout
    assert (tmp_path / "baseline.json").read_bytes() == before


# --------------------------------------------------------------------------------------------------------------
# Input errors: exit 2, clear message, nothing touched


def test_missing_and_corrupt_baseline_exit_2_and_file_untouched(tmp_path):
    cfg = write_config(tmp_path)
    r = run_gate(cfg)
    assert r.returncode == 2 and "not found" in r.stderr and "--update-baseline" in r.stderr
    assert not (tmp_path / "baseline.json").exists()
    for content in (b'{"schema": "gradguard.gate-baseline/1", "benchm', b"\xff\xfe not json",
                    json.dumps({"schema": "gradguard.gate-baseline/1", "benchmarks": {
                        "lora/N256_d512_r8/float32": {"ratio_samples": [1.0, -2.0]}}}).encode()):
        (tmp_path / "baseline.json").write_bytes(content)
        r = run_gate(cfg)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "corrupt" in r.stderr and "baseline.json" in r.stderr and "Traceback" not in r.stderr
        assert (tmp_path / "baseline.json").read_bytes() == content
    stale = {"schema": "gradguard.gate-baseline/1", "policy": {"inner": 5, "threads": 1},
             "benchmarks": {"lora/N256_d512_r8/float32": {"ratio_samples": [1.1] * 9}}}
    (tmp_path / "baseline.json").write_text(json.dumps(stale))
    r = run_gate(cfg)
    assert r.returncode == 2 and "no entry for dora/N256_d512_r8/float32" in r.stderr
    stale["benchmarks"]["dora/N256_d512_r8/float32"] = {"ratio_samples": [1.1] * 9}
    stale["policy"]["inner"] = 1  # measured another way: not comparable
    (tmp_path / "baseline.json").write_text(json.dumps(stale))
    r = run_gate(cfg)
    assert r.returncode == 2 and "inner = 1" in r.stderr
    stale["policy"]["inner"] = 5
    stale["benchmarks"]["dora/N256_d512_r8/float32"]["ratio_samples"] = [10 ** 400] * 9  # not a float
    (tmp_path / "baseline.json").write_text(json.dumps(stale))
    r = run_gate(cfg)
    assert r.returncode == 2 and "corrupt" in r.stderr and "Traceback" not in r.stderr


def test_a_test_only_slowdown_is_never_recorded_as_the_baseline(tmp_path):
    cfg = write_config(tmp_path)
    r = run_gate(cfg, "--update-baseline", env_extra={SLOWDOWN_ENV: "lora=2"})
    assert r.returncode == 2 and SLOWDOWN_ENV in r.stderr and not (tmp_path / "baseline.json").exists()
    r = run_gate(cfg, "--update-baseline", env_extra={SLOWDOWN_ENV: "lorra=2"})
    assert r.returncode == 2 and "lorra" in r.stderr


def test_an_error_inside_a_users_module_fails_that_check_and_the_report_is_written(tmp_path):
    cfg = write_config(tmp_path, speed=False, plant=False)
    (tmp_path / "my_adapter.py").write_text("def setup():\n    raise RuntimeError('shape mismatch in my layer')\n")
    r = run_gate(cfg, "--update-baseline", "--junit", tmp_path / "junit.xml")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "error: RuntimeError: shape mismatch in my layer" in r.stdout and not (tmp_path / "baseline.json").exists()
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"


@pytest.mark.parametrize("override,needle", [
    ({"reps": 3}, "[speed] reps an integer in [9, 1000]"),
    ({"warmup": "true"}, "[speed] warmup an integer"),
    ({"max_slowdown": 0.9}, "max_slowdown a finite number > 1"),
    ({"max_slowdown": "inf"}, "max_slowdown a finite number > 1"),
    ({"alpha": 1e-9}, "the smallest p-value 9 repetitions can give"),
    ({"frobnicate": 1}, "[speed] keys"),
    ({"dtype": '"bfloat16"'}, "dtype float32 or float64"),
    ({"shapes": "[{ N = 4, d = 3, r = 8 }]"}, "[speed] lora cannot run at N=4, d=3, r=8"),
    ({"shapes": "[{ N = 4, d = 100000000, r = 2 }]"}, "d = 1..16384"),
    ({"adapters": '["lora", "lora"]'}, "without repeats"),
])
def test_bad_config_exit_2_naming_the_key(tmp_path, override, needle):
    r = run_gate(write_config(tmp_path, **override))
    assert r.returncode == 2 and needle in r.stderr and "gate.toml" in r.stderr, r.stderr


def test_unknown_adapter_and_unparsable_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('baseline = "b.json"\n[correctness]\nadapters = ["lorra"]\n')
    r = run_gate(bad)
    assert r.returncode == 2 and "lorra" in r.stderr and "adapters" in r.stderr
    bad.write_text("baseline = \n")
    r = run_gate(bad)
    assert r.returncode == 2 and "TOML" in r.stderr
    r = run_gate(tmp_path / "absent.toml")
    assert r.returncode == 2 and "not found" in r.stderr
    no_cuda = next(n for n in gg.adapters() if n not in declares_cuda())  # an adapter without the cuda backend
    for body, needle in (('baseline = "b.json"\n[correctness]\nadapters = ["lora"]\nbackends = []\n', "at least one"),
                         (f'baseline = "b.json"\n[correctness]\nadapters = ["{no_cuda}"]\nbackends = ["cuda"]\n',
                          f"backends that {no_cuda} has"),
                         ('baseline = "b.json"\n[correctness]\nmodule_files = ["nope.py"]\n', "existing Python files")):
        bad.write_text(body)
        r = run_gate(bad)
        assert r.returncode == 2 and needle in r.stderr, (body, r.stderr)


def test_interrupted_baseline_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    cfg = gate_mod.load_config(write_config(tmp_path, speed=False, plant=False))
    (tmp_path / "baseline.json").write_text('{"old": true}\n')

    def interrupted(fd):  # the new content is half on disk in the temporary file when the interrupt arrives
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gate_mod.run_gate(cfg, update_baseline=True, quiet=True)
    assert (tmp_path / "baseline.json").read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.json", "gate.toml", "my_adapter.py"]


# --------------------------------------------------------------------------------------------------------------
# Progress: a live line on a terminal, silence otherwise


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_live_line_on_a_tty_and_silent_otherwise():
    t = [0.0]
    tty = _Tty()
    p = Progress(4, "audit", stream=tty, clock=lambda: t[0])
    for i, what in enumerate(["lora", "dora", "loha"]):
        t[0] = 10.0 * i
        p.step(what)
    p.close("done")
    out = tty.getvalue()
    assert out.count("\r") == 4 and out.endswith("\n")
    assert "audit 3/4" in out and "ETA 20s" in out and "loha" in out  # two steps took 20 s: two more, 20 s
    for stream, quiet in ((io.StringIO(), False), (_Tty(), True)):  # not a terminal; --json
        q = Progress(3, "audit", stream=stream, quiet=quiet)
        q.step("lora")
        q.close("done")
        assert stream.getvalue() == ""
