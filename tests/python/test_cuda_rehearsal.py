"""The GPU suite (tests/python/test_cuda.py) rehearsed on the CPU: GG_CUDA_REHEARSAL=1 runs every one of its tests
against the torch backend in float64/float32, so its shapes, ranks, flags and models are exercised on every CI run
and a mistake in them is found here, not on a lent GPU's few minutes."""
import os
import re
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parent / "test_cuda.py"


def test_the_gpu_suite_passes_its_cpu_rehearsal():
    env = {**os.environ, "GG_CUDA_REHEARSAL": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(SUITE)],
                         capture_output=True, text=True, timeout=900, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    passed = int(re.search(r"(\d+) passed", out).group(1))
    skips = re.findall(r"SKIPPED \[(\d+)\] .*?: (.*)", out)
    # only the checks that need a device skip, each saying so; everything else ran
    assert all("GG_CUDA_REHEARSAL" in why for _, why in skips), skips
    assert sum(int(n) for n, _ in skips) <= 2 and passed >= 50, out[-2000:]
