"""Where paths resolve: config.py's against its folder, flags against the folder the command
was typed in (AVSBENCH_CWD, set by avs_scripts/launch.sh)."""

from __future__ import annotations

import os
import types

import pytest

from avsbench.engine import options as O
from avsbench.engine import user_config as U
from avsbench.models import registry


def test_path_flags_join_the_folder_the_command_was_typed_in(tmp_path, monkeypatch):
    typed = tmp_path / "where" / "typed"
    monkeypatch.setenv(U.CWD_ENV, str(typed))
    monkeypatch.chdir(tmp_path)  # the script's own folder: not what relative flags mean
    argv = ["--weights", "mybest.pth", "--data_root", "../data/S4", "--resume", "runs/last.pth",
            "--trained_s4_model_path", "s4.pth", "--log_dir", "logs", "--out_json", "m.json",
            "--cache_audio_embeddings", "cache", "--session_name", "a_name"]  # fmt: skip
    train = O.build_train_parser("ms3").parse_args(
        [a for a in argv if a not in ("--out_json", "m.json")]
    )
    args = U.resolve_path_flags(train)
    assert args.weights == str(typed / "mybest.pth")
    assert args.data_root == str(tmp_path / "where" / "data" / "S4")
    assert args.resume == str(typed / "runs" / "last.pth")
    assert args.trained_s4_model_path == str(typed / "s4.pth")
    assert args.log_dir == str(typed / "logs") and args.cache_audio_embeddings == str(
        typed / "cache"
    )
    assert args.session_name == "a_name"  # not a path
    test = O.build_test_parser("s4").parse_args(["--train_log_dir", "t", "--out_json", "m.json"])
    test = U.resolve_path_flags(test)
    assert (test.train_log_dir, test.out_json) == (str(typed / "t"), str(typed / "m.json"))


def test_literal_values_absolute_paths_and_home_are_kept(tmp_path, monkeypatch):
    monkeypatch.delenv(U.CWD_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args = O.build_train_parser("s4").parse_args(
        [
            "--resume",
            "--cache_audio_embeddings",
            "--weights",
            "~/w.pth",
            "--data_root",
            "/abs/d",
            "--log_dir",
            "l",
        ]  # fmt: skip
    )
    args = U.resolve_path_flags(args)
    assert args.resume == "auto" and args.cache_audio_embeddings == "memory"
    assert args.weights == str(tmp_path / "home" / "w.pth") and args.data_root == "/abs/d"
    assert args.log_dir == str(tmp_path / "l")  # no AVSBENCH_CWD: the current folder


def test_config_py_paths_join_its_folder_wherever_the_command_runs(tmp_path, monkeypatch):
    folder = tmp_path / "scripts" / "mine"
    module = types.ModuleType("config")
    module.__file__ = str(folder / "config.py")
    module.SETTING = "avss"
    module.DATA_ROOT = "../../data/AVSBench_semantic"
    module.BACKBONE_WEIGHTS = {"resnet50": "w/r50.pth", "pvt_v2_b5": "/abs/pvt.pth"}
    module.VGGISH_WEIGHTS = "w/vggish.pth"
    module.TEST_LOG_DIR = "./tests_here"
    for cwd in (tmp_path, folder.parent):
        cwd.mkdir(parents=True, exist_ok=True)
        monkeypatch.chdir(cwd)
        user = U.UserConfig("avss", module)
        cfg = user.get_config(False)
        assert cfg.data.root == str(tmp_path / "data" / "AVSBench_semantic")
        assert cfg.model.backbone_weights == str(folder / "w" / "r50.pth")
        assert user.backbone_weights("pvt_v2_b5") == "/abs/pvt.pth"
        assert cfg.model.vggish_weights == str(folder / "w" / "vggish.pth")
        assert cfg.model.vggish_pca is None
        assert cfg.train.log_dir == os.path.normpath(folder / "train_logs")  # the default
        assert user.log_dir("test") == str(folder / "tests_here")
        assert cfg.model.num_classes == 71 and cfg.data.frames_per_clip == 10  # the preset
    with pytest.raises(ValueError, match="setting 'avss' given to the s4 command"):
        U.UserConfig("s4", module)


def test_without_a_config_module_the_preset_is_used():
    user = U.UserConfig("ms3")
    assert user.get_config(False) == registry.preset("ms3")
    assert user.get_config(True) == registry.synthetic(registry.preset("ms3"))
    assert user.file == "avs_scripts/avs_ms3/config.py"  # how messages name the file to edit
