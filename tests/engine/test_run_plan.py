"""Planning a training run (`engine/plan.py`): each checkpoint file is read once, where the
config, weights and VGGish came from is logged and kept in the run folder; a resume refuses
the flags that break its exactness (`engine/resume_changes.py`), allows and logs the safe
ones, and keeps the run's config history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsbench import checkpoints
from avsbench.commands import train as cmd_train
from tests.engine.engine_helpers import tiny_flags


@pytest.fixture(scope="module")
def finished(s4_toy, tmp_path_factory) -> Path:
    """A finished one-epoch run (session "p"): its run folder."""
    logs = tmp_path_factory.mktemp("plan_runs")
    assert cmd_train.main("s4", tiny_flags(s4_toy, logs, session_name="p")) == 0
    (run,) = logs.glob("p_*")
    return run


def _counting_reads(monkeypatch) -> list[Path]:
    reads: list[Path] = []
    real = checkpoints.safe_torch_load

    def counted(path, *args, **kwargs):
        reads.append(Path(path).resolve())
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "safe_torch_load", counted)
    return reads


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "config_history.jsonl").read_text().splitlines()]


def test_weights_file_is_read_once_and_its_provenance_kept(s4_toy, finished, tmp_path,
                                                           monkeypatch):  # fmt: skip
    weights = (finished / "checkpoints" / "last.pth").resolve()
    reads = _counting_reads(monkeypatch)
    flags = tiny_flags(s4_toy, tmp_path, session_name="w", weights=weights)
    assert cmd_train.main("s4", flags) == 0
    assert reads.count(weights) == 1
    (run,) = tmp_path.glob("w_*")
    (entry,) = _history(run)
    assert entry["provenance"]["weights"] == {"from": "--weights", "file": str(weights)}
    assert entry["provenance"]["vggish"]["source"] == "random"
    assert entry["provenance"]["config"].startswith("the synthetic preset with ")
    assert entry["config"] == json.loads((run / "config.json").read_text())
    log = (run / "log" / "train.log").read_text()
    assert f"weights: --weights {weights}" in log


def test_resume_reads_the_checkpoint_once_allows_a_longer_run_and_keeps_the_history(
    s4_toy, finished, tmp_path, monkeypatch
):
    import shutil

    run = tmp_path / finished.name
    shutil.copytree(finished, run)
    first = (run / "config.json").read_text()
    last = (run / "checkpoints" / "last.pth").resolve()
    reads = _counting_reads(monkeypatch)
    flags = tiny_flags(s4_toy, tmp_path, session_name="p", resume="auto", max_epoches=2,
                       val_batch_size=1)  # fmt: skip
    assert cmd_train.main("s4", flags) == 0
    assert reads.count(last) == 1
    assert (run / "config.json").read_text() == first  # the run's first config stays
    history = _history(run)
    assert [e["resumed"] for e in history] == [False, True]
    assert history[1]["changes"] == [  # (the run was copied here from another --log_dir)
        f"--log_dir {finished.parent} -> {tmp_path} (the run continues in its own folder)",
        "--max_epoches 1 -> 2 (the run's length)",
        "--val_batch_size 2 -> 1 (validation only (the official metrics depend on it))",
    ]
    assert history[1]["config"]["train"]["max_epoches"] == 2
    assert history[1]["provenance"]["weights"] == {"from": "--resume", "file": str(last)}
    log = (run / "log" / "train.log").read_text()
    assert "changed on resume: --max_epoches 1 -> 2 (the run's length)" in log


@pytest.mark.parametrize(
    ("extra", "flag", "before", "after", "why", "given"),
    [
        ({"train_batch_size": 1}, "--train_batch_size", 2, 1, "the sampler would skip the steps "
         "done x the new batch size: other batches", "--train_batch_size 1"),
        ({"image_size": 96}, "--image_size", 64, 96, "the model would see other inputs",
         "--image_size 96"),
        ({"backbone_lr_mult": 0.1}, "--backbone_lr_mult", 1.0, 0.1, "it changes the learning "
         "rates (and, across 1.0, the optimizer's parameter groups the checkpoint's state "
         "belongs to)", "--backbone_lr_mult 0.1"),
        ({"amp": "bf16"}, "--amp", "off", "bf16", "mixed precision changes the numbers of every "
         "remaining step", "--amp bf16"),
        ({"channels_last": True}, "--channels_last", False, True, "the memory format picks "
         "other convolution kernels (other rounding)", "--channels_last"),
        ({"lr": 0.5}, "--lr", 0.001, 0.5, "it changes the training itself", "--lr 0.5"),
    ],
)  # fmt: skip
def test_resume_refuses_changes_that_break_exactness(s4_toy, finished, tmp_path, capsys, extra,
                                                     flag, before, after, why, given):  # fmt: skip
    import shutil

    run = tmp_path / finished.name
    shutil.copytree(finished, run)
    last = run / "checkpoints" / "last.pth"
    config, history = (run / "config.json").read_text(), (run / "config_history.jsonl").read_text()
    flags = tiny_flags(s4_toy, tmp_path, session_name="p", **{"resume": str(last), **extra})
    assert cmd_train.main("s4", flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"avsbench: --resume {last}: {flag} was {before} in this run, now {after}: {why}; a "
        f"resume continues the run exactly. Leave {flag} out to resume, or start a new run "
        f"from these weights: bash train.sh --weights {last} {given} --session_name NEW_NAME"
    )
    assert (run / "config.json").read_text() == config  # nothing written
    assert (run / "config_history.jsonl").read_text() == history


def test_run_length_may_change_while_steps_are_left_and_not_with_poly():
    from avsbench import config as C
    from avsbench.engine import resume_changes
    from avsbench.errors import SetupError
    from avsbench.models import registry

    old = C.override(registry.preset("s4"), {"train.max_epoches": 3})
    raw = {"epoch": 1, "scheduler": {"iteration": 20}}  # 2 epochs of 10 steps completed
    longer = C.override(old, {"train.max_epoches": 5})
    assert resume_changes.check(old, longer, raw, Path("l.pth")) == [
        "--max_epoches 3 -> 5 (the run's length)"
    ]
    with pytest.raises(SetupError, match="the run has completed 2 epochs: give more than 2"):
        resume_changes.check(old, C.override(old, {"train.max_epoches": 2}), raw, Path("l.pth"))
    by_iters = C.override(old, {"train.max_iters": 30})
    with pytest.raises(SetupError, match="the run has done 20 iterations: give more than 20"):
        resume_changes.check(by_iters, C.override(by_iters, {"train.max_iters": 20}), raw,
                             Path("l.pth"))  # fmt: skip
    poly = C.override(old, {"train.schedule": "poly"})
    with pytest.raises(SetupError, match="the poly lr schedule runs over the run's length"):
        resume_changes.check(poly, C.override(poly, {"train.max_epoches": 5}), raw, Path("l.pth"))
