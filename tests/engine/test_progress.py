"""Progress bars only on a terminal (docs/RELIABILITY.md, "Logs"): with the output
redirected, train.sh writes one line per epoch (with its evaluation), no bar redraws."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.engine.engine_helpers import tiny_flags

REPO = Path(__file__).resolve().parents[2]


def test_redirected_output_has_one_line_per_epoch_and_no_carriage_returns(tmp_path, s4_toy):
    log = tmp_path / "out.log"
    flags = tiny_flags(s4_toy, tmp_path / "logs", max_epoches=2, max_steps_per_epoch=2)
    code = f"from avsbench.commands import train; raise SystemExit(train.main('s4', {flags!r}))"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with open(log, "wb") as out:  # `> log 2>&1`
        status = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
                                env=env, timeout=600).returncode  # fmt: skip
    text = log.read_bytes().decode()
    assert status == 0, text[-2000:]
    assert "\r" not in text
    epochs = [line for line in text.splitlines() if " INFO epoch " in line]
    assert len(epochs) == 2 and all("val mIoU" in line for line in epochs), epochs
