#!/usr/bin/env python3
"""Merges what bench/gpu-check.sh produced under $OUT into one gpu-report.json (+ .md): the machine and versions,
each stage's exit status and time, the kernel tests (GoogleTest JSON), the cuda pytest run (JUnit XML), the
sanitizer verdicts, and the benchmark (bench_gpu.py's JSON) with `lora_fwd_bwd_over_base` at the top level.
Usage: gpu_report.py OUT_DIR STAGES_FILE"""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path



def _load_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        return {"error": f"{p.name}: {e}"}


def _gtest(p: Path) -> dict:
    j = _load_json(p)
    if "error" in j:
        return j
    cases = [t for s in j.get("testsuites", []) for t in s.get("testsuite", [])]
    return {"tests": j.get("tests"), "failures": j.get("failures"), "skipped": sum(t.get("result") == "SKIPPED" for t in cases),
            "names": [f"{t['classname']}.{t['name']}: {t.get('result', t.get('status'))}" for t in cases]}


def _junit(p: Path) -> dict:
    try:
        root = ET.parse(p).getroot()
    except (OSError, ET.ParseError) as e:
        return {"error": f"{p.name}: {e}"}
    s = root if root.tag == "testsuite" else root.find("testsuite")
    failed = [c.get("classname", "") + "::" + c.get("name", "") for c in s.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {k: int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")} | {"failed": failed}


def _smi() -> dict:
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20).stdout.strip().split(", ")
        return {"gpu": q[0], "driver": q[1], "memory": q[2]}
    except Exception as e:  # noqa: BLE001 — the report must still be written
        return {"error": str(e)}


def main() -> int:
    out, stages_file = Path(sys.argv[1]), Path(sys.argv[2])
    stages = {}
    for line in stages_file.read_text().splitlines():
        name, rc, secs = line.rsplit(" ", 2)
        stages[name] = {"rc": int(rc), "seconds": int(secs)}
    import torch

    bench = _load_json(out / "gpu-bench.json")
    report = {"machine": _smi() | {"torch": torch.__version__, "cuda": torch.version.cuda},
              "stages": stages, "kernel_tests": _gtest(out / "kernel-tests.json"),
              "pytest_cuda": _junit(out / "pytest-cuda.xml"),
              "lora_fwd_bwd_over_base": bench.get("lora_fwd_bwd_over_base"), "bench": bench}
    report["ok"] = all(s["rc"] == 0 for s in stages.values())
    (out / "gpu-report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# gradguard GPU check — {report['machine'].get('gpu', '?')}", "",
             f"driver {report['machine'].get('driver')}, CUDA {report['machine']['cuda']}, torch {report['machine']['torch']}", "",
             "| stage | exit | seconds |", "|---|---|---|"]
    lines += [f"| {k} | {v['rc']} | {v['seconds']} |" for k, v in stages.items()]
    lines += ["", f"kernel tests: {report['kernel_tests']}", "", f"pytest (cuda): {report['pytest_cuda']}", "",
              f"lora_fwd_bwd_over_base: {report['lora_fwd_bwd_over_base']}", ""]
    md = out / "gpu-bench.md"
    if md.exists():
        lines.append(md.read_text())
    (out / "gpu-report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:12 + len(stages)]))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
