"""`--frame_cache DIR` in train.sh / test.sh: the flag, its config field, and a training run
that is the same with and without the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avsbench import config as C
from avsbench.commands import train as cmd_train
from avsbench.engine import options as O
from avsbench.engine.user_config import UserConfig
from avsbench.models import registry
from tests.engine.engine_helpers import tiny_flags


@pytest.mark.parametrize("build", [O.build_train_parser, O.build_test_parser])
def test_the_flag_sets_the_config_field(build):
    user = UserConfig("s4")
    args = build("s4").parse_args(["--frame_cache", "/scratch/avs_cache"])
    base = registry.preset("s4")
    assert base.data.frame_cache is None  # off by default
    cfg = O.apply(base, O.model_overrides(args, user))
    assert cfg.data.frame_cache == "/scratch/avs_cache"
    assert registry.config_from_dict(C.to_dict(cfg)) == cfg


def _last_checkpoint(log_dir: Path) -> dict:
    (run,) = [p for p in log_dir.iterdir() if p.is_dir()]
    return torch.load(run / "checkpoints" / "last.pth", weights_only=True)


@pytest.mark.slow
def test_training_from_the_cache_is_the_same_run(tmp_path, s4_toy, capsys):
    one_step = {"max_steps_per_epoch": 1}
    assert cmd_train.main("s4", tiny_flags(s4_toy, tmp_path / "plain", **one_step)) == 0
    cache = tmp_path / "cache"
    flags = tiny_flags(s4_toy, tmp_path / "cached", frame_cache=cache, **one_step)
    assert cmd_train.main("s4", flags) == 0
    plain, cached = _last_checkpoint(tmp_path / "plain"), _last_checkpoint(tmp_path / "cached")
    (a,), (b,) = plain["history"], cached["history"]
    assert a["val"] == b["val"]  # validation metrics
    assert a["train"]["loss"] == b["train"]["loss"]
    for name, value in plain["model"].items():
        assert torch.equal(value, cached["model"][name]), name
    entries = sorted(p.name for p in cache.iterdir() if p.is_dir())  # s4_train_64px_<hash>
    assert [e.rsplit("_", 2)[:2] for e in entries] == [["s4_train", "64px"], ["s4_val", "64px"]]

    theirs = tmp_path / "their_folder"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    flags = tiny_flags(s4_toy, tmp_path / "refused", frame_cache=theirs)
    assert cmd_train.main("s4", flags) == 2
    err = capsys.readouterr().err
    assert "their_folder: not a frame-cache folder" in err and "Traceback" not in err
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]
