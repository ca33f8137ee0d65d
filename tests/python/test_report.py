"""gradguard.report (reports/generator/): JSON from bench / audit / audit-peft / gate / the GPU check → report.md and
one self-contained report.html. Small synthetic inputs, with failures planted, so every assertion can fail; the real
example files are used too where a run left them."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from gradguard.report import ReportInputError, build_report

ROOT = Path(__file__).resolve().parents[2]
PLOT_TITLES = ("Adapter overhead over the base matmul", "Speed-up over PEFT", "Share of the roofline",
               "Error budget used, adapter × backend × dtype")


# -- synthetic inputs, shaped like their writers' output ----------------------------------------------------------

def _timing(ms: float, roofline: float | None = None, mem: int | None = None) -> dict:
    t = {p: {"median_ms": ms * k, "q1_ms": ms * k * 0.95, "q3_ms": ms * k * 1.05, "min_ms": ms * k * 0.9,
             "gflops": 10.0 / k, "gbytes_per_s": 1.0} for p, k in (("fwd", 1), ("fwd_bwd", 2))}
    if roofline is not None:
        t["roofline_fraction"] = {"fwd": roofline, "fwd_bwd": roofline * 0.9}
        t["peak_mem_bytes"] = mem
    return t


def _ratio(v: float) -> dict:
    return {"median": v, "q1": v * 0.98, "q3": v * 1.02}


def _bench_adapter(peft_ms: float, gg_ms: float, base_ms: float, v2: bool, fork_ms: float | None = None) -> dict:
    impls = {"peft": _timing(peft_ms, 0.30 if v2 else None, 4096),
             "gradguard": _timing(gg_ms, 0.42 if v2 else None, 2048)}
    if fork_ms:
        impls["fork_dense"] = _timing(fork_ms, 0.2 if v2 else None, 8192)
    ratios, overhead = {}, {}
    for kind, t in impls.items():
        for p in ("fwd", "fwd_bwd"):
            r = t[p]["median_ms"] / (base_ms * (1 if p == "fwd" else 2))
            ratios[f"{kind}_to_base_{p}"] = _ratio(r)
            overhead[f"{kind}_{p}"] = r - 1
    for p in ("fwd", "fwd_bwd"):
        ratios[f"speedup_vs_peft_{p}"] = _ratio(peft_ms / gg_ms)
    return {"hp": {"r": 8}, "cost": {}, "impls": impls, "ratios": ratios, "overhead_over_base": overhead,
            "validation": {"gradguard": {"ok": True, "max_rel_err": 1e-7}}}


def bench(version: int = 2) -> dict:
    v2 = version == 2
    results = []
    for dtype in ("float32", "bfloat16") if v2 else ("float32",):
        res = {"preset": "small", "N": 512, "d_in": 1024, "d_out": 1024, "r": 16, "reps": 9, "warmup": 2, "note": "",
               "base": _timing(10.0, 0.5 if v2 else None, 1 << 20),
               "adapters": {"lora": _bench_adapter(11.0, 10.5, 10.0, v2),
                            "dora": _bench_adapter(20.0, 12.0, 10.0, v2),
                            "weight_lora": _bench_adapter(11.5, 10.6, 10.0, v2, fork_ms=25.0)}}
        if v2:
            res["dtype"] = dtype
        if dtype == "bfloat16":
            res["adapters"]["oft"] = {"unsupported": "the torch backend runs float64, float32, not bfloat16"}
        results.append(res)
    meta = {"date": "2026-11-28T20:35:50+00:00", "torch": "2.11.0", "peft": "0.21.2", "gradguard": "0.1.0",
            "python": "3.11.7", "threads": 2, "cpu": "Test CPU", "cores": 2, "method": "interleaved repetitions"}
    if v2:
        meta["roofline"] = {"float32": {"peak_gflops": 70.0, "peak_gbytes_per_s": 9.0, "method": "mm + copy"}}
    else:
        meta["dtype"] = "float32"
    return {"schema": f"gradguard.bench-cpu/{version}", "meta": meta, "adapters": ["lora", "dora", "weight_lora"],
            "results": results,
            "gradcheck": {"total_s": 0.01, "all_ok": True,
                          "cases": [{"adapter": "lora", "backend": "eigen", "ok": True, "seconds": 0.001}]},
            "targets": [{"id": "torch_no_slower_than_peft", "adapter": "lora", "description": "no slower than PEFT",
                         "threshold": ">= 1.0", "value": 1.05, "where": "worst at small fwd", "met": True},
                        {"id": "weight_lora_overhead_5pct", "adapter": "weight_lora", "description": "overhead <= 5%",
                         "threshold": "<= 0.05", "value": 0.06, "where": "small fwd_bwd", "met": False},
                        {"id": "structured_2x_vs_peft", "adapter": "loha", "description": "2x", "value": None,
                         "met": None, "where": "not measured"}]}


def _gradcheck(backend: str, mode: str, ok: bool) -> dict:
    tensors = [{"name": "lora_A", "ok": ok, "max_abs_err": 1e-9 if ok else 3e-2, "budget_used": 1e-4 if ok else 42.0}]
    return {"backend": backend, "mode": mode, "shape": "aligned", "variant": "default", "ok": ok,
            "worst_budget": tensors[0]["budget_used"], "failing": [] if ok else ["lora_A"],
            "result": {"ok": ok, "tensors": tensors}}


def _compare(name: str, budgets: dict) -> dict:
    rows = [{"backend": b, "dtype": d, "tensor": "y", "budget_used": u, "max_abs": u * 1e-6, "max_rel": u * 1e-5,
             "nmse": 1e-14, "ok": u <= 1, "worst_index": 3} for (b, d), u in budgets.items()]
    return {"variant": "default", "adapter": name, "ok": all(r["ok"] for r in rows), "rows": rows,
            "skipped": [{"backend": "cuda", "dtype": "*", "reason": "no CUDA device visible"}], "notes": []}


def _flow(problem: bool) -> dict:
    planted = {"param": "model.layers.0.q_proj.vera_lambda_d", "module": "model.layers.0.q_proj", "kind": "none",
               "cause": "detached_or_unused", "hint": "PLANTED: the parameter never reaches the loss"}
    problems = [planted] if problem else []
    report = {"ok": not problem, "loss": 1.0, "loss_requires_grad": True, "checked": 4, "messages": [],
              "problems": problems, "notes": []}
    return {"ok": not problem, "problems": len(problems), "notes": 0,
            "variants": [{"variant": "default", "ok": not problem, "problems": len(problems), "notes": 0,
                          "report": report}]}


def audit() -> dict:
    """lora passes everything; dora fails one gradcheck and one comparison; vera has a flow problem."""
    good = {("eigen", "float64"): 0.0, ("eigen", "float32"): 0.4, ("torch", "float32"): 0.5, ("peft", "float32"): 0.6}
    adapters = []
    for name, grad_ok, cmp_over, flow_problem in (("lora", True, False, False), ("dora", False, True, False),
                                                  ("vera", True, False, True)):
        grads = [_gradcheck(b, m, grad_ok or (b, m) != ("torch", "full")) for b in ("eigen", "torch")
                 for m in ("fast", "full")]
        budgets = {**good, ("torch", "float32"): 3.5} if cmp_over else good
        adapters.append({"adapter": name, "gradcheck": grads, "compare": [_compare(name, budgets)],
                         "flow": _flow(flow_problem), "ok": grad_ok and not cmp_over and not flow_problem})
    return {"tool": "gradguard audit", "versions": {"gradguard": "0.1.0", "torch": "2.11.0", "peft": "0.21.2"},
            "ok": False, "seconds": 3.0, "policy": {"fd_eps": 1e-6, "fd_atol": 1e-5, "fd_rtol": 1e-3},
            "adapters": adapters}


def audit_peft() -> dict:
    finding = {"tuner": "LORA", "layer": "Conv1d", "check": "gradcheck", "tensor": "lora_A", "max_abs_err": 0.5,
               "detail": "analytic gradient disagrees", "repro": "print('repro')", "confirmed_by": "full Jacobian"}
    return {"peft_version": "0.21.2", "ok": False, "seconds": 5.0,
            "findings": [{**finding, "known": "confirmed PEFT defect: lora_A conv without dilation"},
                         {**finding, "tuner": "NEWTUNER", "tensor": "new_w", "known": ""}],
            "unconfirmed": [], "skipped": [{"tuner": "ADAPTION_PROMPT", "layer": "*", "reason": "prompt learning"}],
            "audited": [{"tuner": "LORA", "layer": "Conv1d", "variant": {}, "checks": ["gradcheck"]}]}


def gate() -> dict:
    """As src/python/gradguard/gate.py writes it: medians are gradguard/base time ratios, ratio_change their ratio."""
    return {"schema": "gradguard.gate/1", "config": "reports/baselines/cpu.toml", "baseline": "cpu.json", "ok": False,
            "meta": {"date": "2026-11-29T11:07:54+00:00", "gradguard": "0.1.0", "torch": "2.11.0"},
            "policy": {"max_slowdown": 1.5, "alpha": 0.01, "reps": 9, "metric": "gradguard/base time ratio"},
            "checks": [{"name": "speed/lora/N256_d1024_r8/float32", "kind": "speed", "ok": True, "seconds": 1.0,
                        "detail": "within noise", "baseline_median": 1.05, "current_median": 1.06,
                        "ratio_change": 1.06 / 1.05, "p_value": 0.4, "samples": [1.06] * 9},
                       {"name": "speed/dora/N256_d1024_r8/float32", "kind": "speed", "ok": False, "seconds": 1.0,
                        "detail": "REGRESSION: PLANTED 2x slowdown", "baseline_median": 1.2, "current_median": 2.4,
                        "ratio_change": 2.0, "p_value": 0.0001, "samples": [2.4] * 9},
                       {"name": "gradcheck lora eigen fast", "kind": "correctness", "ok": True, "detail": "ok"}]}


def gpu_report() -> dict:
    layer = {p: {"median_ms": 1.0 * k, "min_ms": 0.9, "max_ms": 1.2, "ratio_to_base": _ratio(1.04 * k),
                 "tflops": 500.0, "gbs": 900.0, "pct_roofline": 61.0} for p, k in (("fwd", 1), ("fwd_bwd", 1.02))}
    bench_gpu = {"meta": {"date": "2026-12-01T00:00:00+00:00", "torch": "2.11.0", "cuda": "13.0", "gpu": "Test GPU",
                          "device": "cuda"},
                 "shape": {"N": 8192, "d_in": 4096, "d_out": 4096, "r": 16, "dtype": "torch.bfloat16"},
                 "roofline": {"gemm_tflops": 800.0, "copy_gbs": 4000.0},
                 "layers": {"base": {"fwd": {"median_ms": 0.9}, "fwd_bwd": {"median_ms": 1.8}},
                            "lora/peft": layer, "lora/gradguard": {**layer, "speedup_vs_peft": {
                                "fwd": _ratio(1.3), "fwd_bwd": _ratio(1.2)}}},
                 "targets": [{"target": "LoRA fwd <= 1.05x base GEMM", "value": 1.04, "met": True}],
                 "lora_fwd_bwd_over_base": 1.06}
    return {"schema": "gradguard.gpu-report/1", "machine": {"gpu": "Test GPU", "driver": "580", "torch": "2.11.0",
                                                            "cuda": "13.0"},
            "stages": {"build": {"rc": 0, "seconds": 300}, "sanitizer": {"rc": 1, "seconds": 40}},
            "kernel_tests": {"tests": 12, "failures": 0, "skipped": 0, "names": []},
            "pytest_cuda": {"tests": 5, "failures": 0, "errors": 0, "skipped": 1, "failed": []},
            "lora_fwd_bwd_over_base": 1.06, "bench": bench_gpu, "ok": False, "future_field": {"x": 1}}


def write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def section(html: str, anchor: str) -> str:
    m = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert m, f"no section #{anchor} in the HTML"
    return m.group(1)


def rows_with(html_part: str, text: str) -> list[str]:
    return [r for r in re.findall(r"<tr[^>]*>.*?</tr>", html_part, re.S) if text in r]


# -- the full synthetic report, built once ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    inputs = [write(d, "bench.json", bench(2)), write(d, "report.json", audit()),
              write(d, "audit-peft.json", audit_peft()), write(d, "gate.json", gate()),
              write(d, "gpu-report.json", gpu_report())]
    md_path, html_path = build_report(inputs, d / "out", title="test report")
    assert (md_path, html_path) == (d / "out" / "report.md", d / "out" / "report.html")
    return md_path.read_text(), html_path.read_text()


def test_every_plot_is_embedded_as_inline_svg(full):
    _, html = full
    for title in PLOT_TITLES:
        assert re.search(rf"<h3>{re.escape(title)}</h3><div class=\"plot\"[^>]*><svg", html), title
    assert html.count("<svg") == len(PLOT_TITLES)


def test_html_is_self_contained(full):
    _, html = full
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "<style>" in html and ".card-fail" in html  # the style sheet is inlined


def test_every_adapter_and_tuner_appears(full):
    md, html = full
    for name in ("lora", "dora", "weight_lora", "vera", "oft", "NEWTUNER"):
        assert name in html and name in md, name


def test_failed_gradcheck_is_marked(full):
    md, html = full
    part = section(html, "gradcheck")
    dora = [r for r in rows_with(part, "<td>dora</td>") if "row-fail" in r]
    assert dora and "FAIL" in dora[0] and "st-fail" in dora[0]
    assert not [r for r in rows_with(part, "<td>lora</td>") if "row-fail" in r]
    assert "lora_A (abs err 0.03" in part  # the failing tensor, in the detail table
    md_rows = [line for line in md.splitlines() if line.startswith("| dora |") and "FAIL" in line]
    assert md_rows, "the Markdown gradcheck table marks dora as failed"


def test_numerics_over_budget_and_flow_problem_are_marked(full):
    md, html = full
    numerics = section(html, "numerics")
    assert [r for r in rows_with(numerics, "<td>dora</td>") if "row-fail" in r and "350.0% FAIL" in r]
    flow = section(html, "flow")
    assert [r for r in rows_with(flow, "vera_lambda_d") if "row-fail" in r and "PLANTED" in r]
    assert "Gradient flow — FAIL" in md


def test_gate_failure_is_marked(full):
    md, html = full
    part = section(html, "gate")
    failed = rows_with(part, "speed/dora/N256_d1024_r8/float32")
    assert failed and "row-fail" in failed[0] and "FAIL" in failed[0] and "2.00×" in failed[0]
    passed = rows_with(part, "speed/lora/N256_d1024_r8/float32")
    assert passed and "row-fail" not in passed[0] and "1.010×" in passed[0]
    assert "more than 1.5× slower than the baseline" in part
    assert "gate FAILED (1 check)" in html and "gate FAILED" in md


def test_peft_findings_separate_known_from_unexplained(full):
    _, html = full
    part = section(html, "peft-audit")
    assert [r for r in rows_with(part, "<td>NEWTUNER</td>") if "row-fail" in r and "UNEXPLAINED" in r]
    known = rows_with(part, "<td>LORA</td>")
    assert known and all("row-fail" not in r for r in known) and "confirmed PEFT defect" in known[0]
    assert "print(&#x27;repro&#x27;)" in part  # the unexplained finding's repro is shown


def test_unsupported_adapter_is_a_greyed_row_with_its_reason(full):
    md, html = full
    rows = rows_with(section(html, "performance"), "unsupported: the torch backend runs float64, float32, not bfloat16")
    assert rows and 'class="row-muted"' in rows[0] and "<td>oft</td>" in rows[0] and "colspan=" in rows[0]
    assert "| oft | unsupported: the torch backend runs float64, float32, not bfloat16 |" in md


def test_summary_comes_first_and_says_what_failed(full):
    md, html = full
    assert html.index('class="cards"') < html.index('<section id="performance">')
    headline = re.search(r'<p class="headline headline-(\w+)">(.*?)</p>', html).groups()
    assert headline[0] == "fail"
    for phrase in ("3 adapters", "1 of 12 gradchecks FAIL", "1 flow problem", "2 PEFT findings (1 unexplained)"):
        assert phrase in headline[1], phrase
    assert md.index("## Summary") < md.index("## Performance")


def test_markdown_has_the_tables(full):
    md, _ = full
    for heading in ("## Performance", "## Numerics against the float64 reference", "## Gradcheck",
                    "## Gradient flow", "## PEFT 0.21.2 audit", "## Regression gate", "## GPU check — Test GPU"):
        assert heading in md, heading
    assert "| adapter | eigen · fast | eigen · full | torch · fast | torch · full | worst budget | status |" in md
    assert "*Plot: Speed-up over PEFT — in report.html.*" in md
    tables, current = [], []  # cells per row, per table: every row as wide as its header (a spanning cell pads)
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            assert line.endswith("|"), line
            current.append(len(re.split(r"(?<!\\)\|", line)) - 2)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) > 10
    for widths in tables:
        assert len(set(widths)) == 1, widths


def test_gpu_report_is_rendered_generically(full):
    md, html = full
    part = section(html, "gpu")
    assert [r for r in rows_with(part, "<td>sanitizer</td>") if "row-fail" in r]
    assert "future_field" in part  # an unknown field is listed, not dropped
    assert "Test GPU · N=8192, d=4096, r=16 · bfloat16" in html  # its layers join the performance plots and tables


# -- other input combinations -------------------------------------------------------------------------------------

def test_bench_v1_renders_without_roofline_or_memory(tmp_path):
    md_path, html_path = build_report([write(tmp_path, "b.json", bench(1))], tmp_path / "out")
    html, md = html_path.read_text(), md_path.read_text()
    assert "No roofline figures in these inputs" in html and "Share of the roofline" not in html
    assert html.count("<svg") == 2  # overhead and speed-up; no audit, so no heatmap
    assert "peak memory" not in md and "| lora | gradguard |" in md
    assert "Gradcheck" not in html and 'id="gate"' not in html  # sections without an input do not appear


def test_gpu_bench_json_alone_is_recognised(tmp_path):
    data = gpu_report()["bench"]
    md_path, html_path = build_report([write(tmp_path, "gpu-bench.json", data)], tmp_path / "out")
    assert "GPU targets met" in html_path.read_text() and "lora" in md_path.read_text()


def test_same_inputs_give_identical_files(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764000000")
    inputs = [write(tmp_path, "report.json", audit())]
    first = build_report(inputs, tmp_path / "a")
    second = build_report(inputs, tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert "2025-11-24" in first[1].read_text()


# -- bad inputs -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, expected", [
    ("corrupt.json", '{"schema": "gradguard.bench-cpu/2", "results": [', "not valid JSON"),
    ("unknown.json", json.dumps({"schema": "someone.else/3"}), "unknown schema 'someone.else/3'"),
    ("tool.json", json.dumps({"tool": "other tool"}), "unknown tool 'other tool'"),
    ("plain.json", json.dumps({"hello": 1}), "no 'schema' or 'tool' key"),
    ("list.json", "[1, 2]", "the top level is a JSON list"),
    ("noresults.json", json.dumps({"schema": "gradguard.bench-cpu/2"}), "needs a 'results' list"),
    ("deep.json", json.dumps({"schema": "gradguard.bench-cpu/2", "results": ["oops"]}), "malformed"),
])
def test_bad_input_raises_naming_the_file(tmp_path, name, content, expected):
    good = write(tmp_path, "gate.json", gate())
    bad = write(tmp_path, name, content)
    with pytest.raises(ReportInputError) as e:
        build_report([good, bad], tmp_path / "out")
    assert str(e.value).startswith(str(bad)) and expected in str(e.value)
    assert not (tmp_path / "out").exists()


def test_missing_file_and_no_inputs(tmp_path):
    with pytest.raises(ReportInputError, match="nothere.json: cannot read"):
        build_report([tmp_path / "nothere.json"], tmp_path / "out")
    with pytest.raises(ReportInputError, match="no input files"):
        build_report([], tmp_path / "out")


# -- never a half-written report ------------------------------------------------------------------------------------

def _old_report(out: Path) -> None:
    out.mkdir()
    (out / "report.md").write_text("OLD MD")
    (out / "report.html").write_text("OLD HTML")


def test_a_failing_plot_leaves_the_old_report(tmp_path, monkeypatch):
    import gradguard.report.plots as plots

    def broken(*_a, **_k):
        raise RuntimeError("planted plot failure")

    monkeypatch.setattr(plots, "speedup", broken)
    out = tmp_path / "out"
    _old_report(out)
    with pytest.raises(RuntimeError, match="planted plot failure"):
        build_report([write(tmp_path, "b.json", bench(2))], out)
    assert (out / "report.html").read_text() == "OLD HTML"
    assert (out / "report.md").read_text() == "OLD MD"
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md"]


def test_a_crash_while_writing_the_html_after_the_md_keeps_the_old_html(tmp_path, monkeypatch):
    """The md is renamed into place, then the process fails while the html is in its temporary file (the fsync
    before the rename): the old html must survive whole and no temporary file may be left."""
    real_fsync, calls = os.fsync, []

    def failing_second_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError("planted: disk full while writing report.html")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_second_fsync)
    out = tmp_path / "out"
    _old_report(out)
    with pytest.raises(OSError, match="planted"):
        build_report([write(tmp_path, "gate.json", gate())], out)
    assert "Regression gate" in (out / "report.md").read_text()  # the md was written...
    assert (out / "report.html").read_text() == "OLD HTML"  # ...the html was not touched
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md"]


# -- the real files, where a run left them --------------------------------------------------------------------------

REAL = {"bench": ROOT / "reports/latest/bench-cpu.json", "audit": ROOT / "reports/latest/report.json",
        "audit-peft": Path("/tmp/audit_full/audit-peft.json")}


@pytest.mark.parametrize("kind", sorted(REAL))
def test_real_example(tmp_path, kind):
    path = REAL[kind]
    if not path.exists():
        pytest.skip(f"{path} not present (generated output, git-ignored): run the matching gradguard command")
    md_path, html_path = build_report([path], tmp_path / "out")
    html, md = html_path.read_text(), md_path.read_text()
    data = json.loads(path.read_text())
    names = {"bench": lambda: data["adapters"], "audit": lambda: [a["adapter"] for a in data["adapters"]],
             "audit-peft": lambda: [f["tuner"] for f in data["findings"]]}[kind]()
    for name in names:
        assert name in html and name in md, name
    if kind in ("bench", "audit"):
        assert "<svg" in html
