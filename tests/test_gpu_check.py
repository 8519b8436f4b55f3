"""benchmarks/gpu_check.sh --dry-run: the GPU check's wiring, on the CPU with tiny sizes
(issue: it must pass its dry run in CI; the CUDA run itself needs a GPU machine)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_passes_every_stage_and_writes_nothing_in_the_repository(tmp_path):
    results = REPO / "benchmarks" / "results"
    before = sorted(p.name for p in results.iterdir())
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its work folder: inside the test's
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for stage in ("1/4 train + test steps", "2/4 train.sh", "3/4 avsbench predict", "4/4"):
        assert f"[gpu_check] {stage}" in out, stage
    assert out.rstrip().endswith("[gpu_check] passed")
    variants = [line for line in out.splitlines() if line.rstrip().endswith(" ok")]
    failed = [line for line in out.splitlines() if "FAIL" in line]
    assert len(variants) == 36 and not failed  # 3 settings x 2 methods x 3 precisions x 2 layouts
    assert sorted(p.name for p in results.iterdir()) == before  # the dry run keeps to its temp dir
    assert not list(tmp_path.glob("avsbench-gpu-check.*"))  # which it removes when it ends
