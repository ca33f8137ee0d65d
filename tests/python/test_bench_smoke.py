"""Smoke test of bench/bench_peft.py: the whole benchmark on the tiny preset with 3 repetitions (a few seconds).

Checks the JSON structure, that every ratio is a finite positive number, that every timed implementation was
validated against PEFT's layer, peak memory and roofline fractions, a dtype the torch backend lacks reported (not
dropped), and the usage errors (exit 2). No timing assertions.

Run: .venv/bin/python -m pytest -q tests/python/test_bench_smoke.py
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("peft")
import gradguard as gg  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_peft.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_peft", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def report(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "sub" / "bench-cpu.json"
    rc = bench.main(["--presets", "tiny", "--dtypes", "float32,bfloat16", "--reps", "3", "--warmup", "1", "--quiet",
                     "--json", str(out)])
    assert rc == 0
    assert sorted(os.listdir(out.parent)) == ["bench-cpu.json"]  # atomic write: no temporary file left behind
    return json.loads(out.read_text())


def _positive_finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def test_top_level_structure(report):
    assert report["schema"] == "gradguard.bench-cpu/2"
    for key in ("torch", "peft", "gradguard", "threads", "cpu", "date", "loadavg_start", "loadavg_end"):
        assert key in report["meta"]
    assert report["adapters"] == gg.adapters()
    assert [p["name"] for p in report["presets"]] == ["tiny"]
    assert _positive_finite(report["total_runtime_s"])
    assert [(r["preset"], r["dtype"]) for r in report["results"]] == [("tiny", "float32"), ("tiny", "bfloat16")]
    roof = report["meta"]["roofline"]
    assert set(roof) == {"float32"}  # bfloat16 is not timed: no adapter's CPU torch backend runs it
    assert _positive_finite(roof["float32"]["peak_gflops"]) and _positive_finite(roof["float32"]["peak_gbytes_per_s"])


def test_unsupported_dtype_is_listed_with_its_reason(report):
    res = report["results"][1]
    assert "base" not in res and "dtype" in res["skipped"]
    assert set(res["adapters"]) == set(gg.adapters())
    for name, entry in res["adapters"].items():
        assert "bfloat16" in entry["unsupported"] and "float32" in entry["unsupported"], (name, entry)


def test_peak_memory_and_roofline(report):
    res = report["results"][0]
    n, d = res["N"], res["d_out"]
    # a training step of the base layer allocates at least y and x.grad (float32)
    assert res["base"]["peak_mem_bytes"] >= 2 * n * d * 4
    for name, entry in res["adapters"].items():
        for kind, st in entry["impls"].items():
            assert st["peak_mem_bytes"] >= res["base"]["peak_mem_bytes"], (name, kind)
            for phase in ("fwd", "fwd_bwd"):
                assert 0 < st["roofline_fraction"][phase] < 1.5, (name, kind, phase)  # measured peaks: ~<= 1


def test_every_adapter_and_implementation_timed(report):
    res = report["results"][0]
    assert (res["N"], res["d_in"], res["d_out"], res["r"], res["reps"]) == (16, 32, 32, 4, 3)
    for phase in ("fwd", "fwd_bwd"):
        assert len(res["base"][phase]["samples_ms"]) == 3
        assert _positive_finite(res["base"][phase]["median_ms"])
    assert set(res["adapters"]) == set(gg.adapters())
    for name, entry in res["adapters"].items():
        expected = {"peft", "gradguard"} | ({"fork_dense"} if name == "weight_lora" else set())
        assert set(entry["impls"]) == expected, name
        for kind, st in entry["impls"].items():
            for phase in ("fwd", "fwd_bwd"):
                assert len(st[phase]["samples_ms"]) == 3
                for key in ("median_ms", "gflops", "gbytes_per_s"):
                    assert _positive_finite(st[phase][key]), (name, kind, phase, key)
            assert _positive_finite(entry["cost"]["forward_flops"]) and _positive_finite(entry["cost"]["backward_flops"])
        for kind in expected - {"peft"}:
            v = entry["validation"][kind]
            assert v["ok"], (name, kind, v)


def test_every_ratio_is_finite_positive(report):
    res = report["results"][0]
    for name, entry in res["adapters"].items():
        wanted = {"speedup_vs_peft_fwd", "speedup_vs_peft_fwd_bwd"}
        if name == "weight_lora":
            wanted |= {"speedup_vs_fork_fwd", "speedup_vs_fork_fwd_bwd"}
        assert wanted <= set(entry["ratios"]), name
        for key, r in entry["ratios"].items():
            for stat in ("median", "q1", "q3"):
                assert _positive_finite(r[stat]), (name, key, stat, r)
        for key, ov in entry["overhead_over_base"].items():
            assert math.isfinite(ov) and ov > -1.0, (name, key, ov)  # = ratio_to_base - 1


def test_gradcheck_and_targets(report):
    g = report["gradcheck"]
    assert len(g["cases"]) == 2 * len(gg.adapters())
    assert {c["backend"] for c in g["cases"]} == {"eigen", "torch"}
    assert g["all_ok"] and _positive_finite(g["total_s"])
    ids = [t["id"] for t in report["targets"]]
    assert ids.count("torch_no_slower_than_peft") == len(gg.adapters())
    assert {"weight_lora_2x_vs_fork", "weight_lora_overhead_5pct", "gradcheck_under_10s", "structured_2x_vs_peft",
            "structured_overhead_10pct"} <= set(ids)
    for t in report["targets"]:
        assert t["met"] in (True, False, None)
        if t["id"].startswith(("weight_lora_", "structured_")):
            assert t["met"] is None  # the target shape is not in the tiny run
        else:
            assert isinstance(t["met"], bool) and _positive_finite(t["value"])


def test_table_printed(bench, report):
    text = bench.render(report)
    assert "[tiny float32]" in text and "targets:" in text and "fork_dense" in text
    assert "[tiny bfloat16] not timed" in text


@pytest.mark.parametrize("argv", [["--adapters", "lora,nope"], ["--presets", "huge"], ["--reps", "0"],
                                  ["--frobnicate"], ["--dtypes", "float8"]])
def test_usage_errors_exit_2(bench, argv, capsys):
    with pytest.raises(SystemExit) as e:
        bench.parse_args(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_gradguard_bench_cli_is_the_same_benchmark():
    import subprocess

    r = subprocess.run([sys.executable, "-m", "gradguard.cli", "bench", "--dtypes", "int8"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "argument --dtypes" in r.stderr and "gradguard bench" in r.stderr


def test_slowdown_knob_is_validated(bench, monkeypatch):
    monkeypatch.setenv(bench.SLOWDOWN_ENV, "lora=two")
    with pytest.raises(ValueError, match=bench.SLOWDOWN_ENV):
        bench.slowdown_knob()
    monkeypatch.setenv(bench.SLOWDOWN_ENV, "lora=2, dora=3")
    assert bench.slowdown_knob() == {"lora": 2, "dora": 3}


# --- bench/bench_gpu.py: the script a lent GPU machine runs (bench/gpu-check.sh) must not be first run there --------
def _walk_medians(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_medians(v, f"{path}/{k}")
            if k == "median_ms":
                yield path, v


def test_gpu_benchmark_runs_on_cpu_tiny(tmp_path):
    import subprocess

    out = tmp_path / "gpu-bench.json"
    run = subprocess.run([sys.executable, str(BENCH.parent / "bench_gpu.py"), "--device", "cpu", "--dtype", "float32",
                          "--tiny", "--llama", "--reps", "2", "--warmup", "1", "--quiet", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["meta"]["device"] == "cpu" and out.with_suffix(".md").is_file()
    medians = list(_walk_medians(report))
    assert len(medians) > 10 and all(_positive_finite(v) for _, v in medians), medians
    assert {"base", "lora/peft", "lora/gradguard"} <= set(report["layers"])
    for name, res in report["llama"]["adapters"].items():
        assert res["swapped_layers"] > 0 and not res["skipped_layers"], name  # fast_path took every layer
        assert _positive_finite(res["speedup"]), name
    assert all(isinstance(t["met"], bool) for t in report["targets"])
