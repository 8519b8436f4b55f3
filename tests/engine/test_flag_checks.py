"""Flags refused before any work, in one line: --lr / --wt_dec that are not finite or
positive (argparse errors, not a traceback), fp16 autocast on the CPU, and
avs_scripts/launch.sh's --gpus (run with bash)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.engine import options as O
from tests.engine.engine_helpers import tiny_flags

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--lr", "nan", "argument --lr: must be in (0, inf), got nan"),
        ("--lr", "-1", "argument --lr: must be in (0, inf), got -1"),
        ("--lr", "0", "argument --lr: must be in (0, inf), got 0"),
        ("--lr", "inf", "argument --lr: must be in (0, inf), got inf"),
        ("--lr", "fast", "argument --lr: not a number: 'fast'"),
        ("--wt_dec", "nan", "argument --wt_dec: must be in [0, inf), got nan"),
        ("--wt_dec", "-0.1", "argument --wt_dec: must be in [0, inf), got -0.1"),
    ],
)
def test_bad_learning_rates_are_argparse_errors(flag, value, message, capsys):
    with pytest.raises(SystemExit) as stop:
        O.build_train_parser("s4").parse_args([flag, value])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)


def test_good_learning_rates_pass():
    args = O.build_train_parser("s4").parse_args(["--lr", "1e-4", "--wt_dec", "0"])
    assert (args.lr, args.wt_dec) == (1e-4, 0.0)


def test_fp16_on_the_cpu_is_refused_before_any_work(s4_toy, tmp_path, capsys):
    flags = tiny_flags(s4_toy, tmp_path / "logs", amp="fp16")
    assert cmd_train.main("s4", flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("avsbench: --amp fp16 on the CPU: half precision is emulated")
    assert not (tmp_path / "logs").exists()  # no run folder


def test_fp16_on_the_cpu_is_refused_by_test_sh_too(s4_toy, tmp_path, capsys):
    flags = tiny_flags(s4_toy, tmp_path / "train", session_name="f")
    assert cmd_train.main("s4", flags) == 0
    (weights,) = (tmp_path / "train").glob("f_*/checkpoints/last.pth")
    argv = ["--synthetic", "--weights", str(weights), "--data_root", str(s4_toy), "--device",
            "cpu", "--log_dir", str(tmp_path / "test"), "--amp", "fp16"]  # fmt: skip
    assert cmd_test.main("s4", argv) == 2
    assert "--amp fp16 on the CPU" in capsys.readouterr().err
    assert not (tmp_path / "test").exists()


def _launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    entry = REPO / "avs_scripts" / "avs_s4" / "train.py"
    return subprocess.run(
        ["bash", str(REPO / "avs_scripts" / "launch.sh"), str(entry), *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


WHOLE = "give a whole number of GPUs >= 1, e.g. --gpus 2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "abc"], f"launch.sh: --gpus abc: {WHOLE}"),
        (["--gpus=0"], f"launch.sh: --gpus 0: {WHOLE}"),
        (["--gpus", "-1"], f"launch.sh: --gpus -1: {WHOLE}"),
        (["--synthetic", "--gpus"], "launch.sh: --gpus needs a number of processes, e.g. --gpus 2"),
    ],
)
def test_launch_refuses_a_bad_gpu_count(args, message):
    proc = _launch(*args)
    assert (proc.returncode, proc.stderr.strip()) == (2, message)


def test_launch_refuses_more_processes_than_gpus_unless_cpu_is_explicit():
    import torch

    found = torch.cuda.device_count()
    asked = max(2, found + 1)
    proc = _launch("--gpus", str(asked), "--help")
    assert proc.returncode == 2
    use = f"use --gpus {found} or fewer, or" if found > 1 else "leave --gpus out, or"
    assert proc.stderr.strip() == (
        f"launch.sh: --gpus {asked}: this machine has {found} CUDA GPU(s); {use} add --device "
        f"cpu to run {asked} CPU processes (DDP on the CPU, for tests)"
    )
    cpu = _launch("--gpus", "2", "--device", "cpu", "--help")  # torchrun starts; --help ends
    assert cpu.returncode == 0, cpu.stderr[-2000:]
    assert "usage: train.py" in cpu.stdout
