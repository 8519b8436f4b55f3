"""SIGTERM (timeout, SLURM, docker stop) and the configured pre-emption signal stop every
command as Ctrl-C does: real signals sent to real `bash train.sh` / `test.sh` / `avsbench`
subprocesses (docs/RELIABILITY.md, "Stopping a command")."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.engine_helpers import tiny_flags

REPO = Path(__file__).resolve().parents[2]
TRAIN_SH = REPO / "avs_scripts" / "avs_s4" / "train.sh"
TEST_SH = REPO / "avs_scripts" / "avs_s4" / "test.sh"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["VIRTUAL_ENV"] = sys.prefix  # launch.sh runs this Python
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (status {proc.returncode}) before {what}: {err}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _log_has(log_dir: Path, name: str, text: str) -> bool:
    return any(text in p.read_text() for p in log_dir.glob(f"*/log/{name}"))


@pytest.mark.parametrize(
    ("sig", "env"), [(signal.SIGTERM, {}), (signal.SIGUSR1, {"AVSBENCH_STOP_SIGNAL": "USR1"})]
)
def test_training_stops_at_a_step_saves_and_prints_a_resume_command_that_works(
    s4_toy, tmp_path, sig, env
):
    logs = tmp_path / "elsewhere" / "logs"
    flags = tiny_flags(s4_toy, logs, max_epoches=3, max_steps_per_epoch=6, session_name="r")
    proc = subprocess.Popen(
        ["bash", str(TRAIN_SH), *flags], cwd=tmp_path, env=_env(**env), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _wait_for(lambda: _log_has(logs, "train.log", "optimizer:"), proc, "training starts")
    time.sleep(1.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err[-2000:]
    (run,) = logs.glob("r_*")
    assert (run / "checkpoints" / "interrupted.pth").is_file()
    assert f"interrupted ({sig.name})" in err
    # the printed command names this run: it works from another folder, without --log_dir
    command = (out + err).split("Resume with:\n", 1)[1].splitlines()[0].strip()
    assert str(run / "checkpoints" / "interrupted.pth") in command
    other = tmp_path / "other"
    other.mkdir()
    resumed = subprocess.run(
        shlex.split(command) + ["--max_epoches", "1"], cwd=other, env=_env(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in (run / "log" / "train.log").read_text()
    assert list(logs.glob("r_*")) == [run]  # continued in place


def test_a_bad_stop_signal_name_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "avsbench.cli", "make-toy-data", "--out", str(tmp_path / "d")],
        cwd=REPO, env=_env(AVSBENCH_STOP_SIGNAL="USR9"), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "avsbench: AVSBENCH_STOP_SIGNAL='USR9' is not a signal name; use e.g. USR1 (with sbatch "
        "--signal=USR1@90) or unset it"
    ]
    assert not (tmp_path / "d").exists()


def test_make_toy_data_stopped_by_sigterm_leaves_no_temporary_folder(tmp_path):
    out = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "avsbench.cli", "make-toy-data", "--out", str(out),
         "--settings", "s4", "--scale", "1"],
        cwd=REPO, env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _wait_for(lambda: out.is_dir() and any(out.iterdir()), proc, "the data folder is started")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted (SIGTERM)"
    assert list(out.iterdir()) == []  # the temporary dataset root was removed


def test_test_sh_stopped_by_sigterm_leaves_no_run_folder(s4_toy, tmp_path):
    from avsbench.commands import train

    flags = tiny_flags(s4_toy, tmp_path / "train", max_steps_per_epoch=1, session_name="t")
    before = signal.getsignal(signal.SIGTERM)
    assert train.main("s4", flags) == 0
    assert signal.getsignal(signal.SIGTERM) is before  # put back after an in-process command
    (weights,) = (tmp_path / "train").glob("t_*/checkpoints/t_best.pth")
    logs = tmp_path / "test_logs"
    proc = subprocess.Popen(
        ["bash", str(TEST_SH), "--synthetic", "--weights", str(weights), "--data_root",
         str(s4_toy), "--log_dir", str(logs), "--device", "cpu", "--num_workers", "0",
         "--save_pred_mask", "--report"],
        cwd=tmp_path, env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _wait_for(lambda: logs.is_dir() and any(logs.iterdir()), proc, "the run folder is made")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert list(logs.iterdir()) == []  # not even a log: the run folder was this run's own
