"""The gradguard command: exit codes 0 (all good) / 1 (problems) / 2 (usage or input error), --json, and clear
messages for bad flags, unknown adapters and missing files."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLANTED = ROOT / "fixtures" / "planted"


def gg(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gradguard.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_gradcheck_ok_and_json():
    r = gg("gradcheck", "my_lora", "--mode", "full", "--hp", "r=2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["mode"] == "full"
    assert {t["name"] for t in out["tensors"]} == {"x", "lora_A", "lora_B", "lora_gate"}


def test_compare_table():
    r = gg("compare", "weight_lora", "--hp", "r=2")
    assert r.returncode == 0, r.stderr
    assert "peft" in r.stdout and "skipped cuda" in r.stdout


def test_check_healthy_and_planted():
    ok = gg("check", PLANTED / "check_healthy.py")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = gg("check", PLANTED / "check_frozen_gate.py", "--json")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    problems = json.loads(bad.stdout)["problems"]
    assert problems and all(p["kind"] == "frozen_adapter" and p["cause"] == "frozen_by_caller" for p in problems)
    assert all("lora_gate" in p["param"] for p in problems)


@pytest.mark.parametrize("args,needle", [
    (["gradcheck", "lora", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["gradcheck", "lorra"], "'adapter'"),
    (["gradcheck", "lora", "--hp", "r=0"], "'r'"),
    (["gradcheck", "lora", "--hp", "r"], "KEY=VALUE"),
    (["gradcheck", "lora", "--hp", "r=two"], "number or true/false"),
    (["gradcheck", "lora", "--d-in", "0"], "'d_in'"),
    (["check", "/nonexistent/model.py"], "not found"),
    (["check", PLANTED / "flow_models.py"], "setup()"),
    (["compare", "lora", "--backends", "eigen,tpu"], "'backends'"),
    (["audit", "--adapters", "lora,nope"], "'adapter'"),
    (["report", "/nonexistent/bench.json"], "bench.json"),
    (["gate", "/nonexistent/gate.toml"], "not found"),
    (["bench", "--presets", "nope"], "argument --presets"),
])
def test_usage_and_input_errors_exit_2(args, needle):
    r = gg(*args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_audit_writes_reports_atomically(tmp_path):
    out = tmp_path / "reports"
    r = gg("audit", "--adapters", "weight_lora", "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and [a["adapter"] for a in report["adapters"]] == ["weight_lora"]
    assert "weight_lora" in (out / "report.md").read_text()
    assert "weight_lora" in r.stdout  # the summary table
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


@pytest.mark.parametrize("adapter", ["gralora", "c3a", "oft", "boft"])
def test_gradcheck_default_shape_fits_block_structured_adapters(adapter):
    # PEFT's defaults (GraLoRA r = 32, C3A block_size = 256, OFT block 32) do not fit the CLI's 16 x 16 check:
    # hyper-parameters not given take the registry's values for the shape, as `compare` does
    r = gg("gradcheck", adapter, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True


def test_report_cli_writes_both_files(tmp_path):
    audit = tmp_path / "audit"
    assert gg("audit", "--adapters", "my_lora", "--out", audit).returncode == 0
    r = gg("report", audit / "report.json", "--out", tmp_path / "summary")
    assert r.returncode == 0, r.stdout + r.stderr
    html = (tmp_path / "summary" / "report.html").read_text()
    assert "my_lora" in html and "<svg" in html
    assert (audit / "report.md").read_text() != (tmp_path / "summary" / "report.md").read_text()
