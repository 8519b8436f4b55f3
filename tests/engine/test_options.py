"""Official flags -> Config, contradictions, and the one clear missing-files message."""

from __future__ import annotations

import os
import types

import pytest

from avsbench import config as C
from avsbench.commands import train as cmd_train
from avsbench.engine import options as O
from avsbench.engine.user_config import REPO_ROOT, UserConfig
from avsbench.models import registry


def _cfg(setting, argv, module=None):
    user = UserConfig(setting, module)
    args = O.build_train_parser(setting).parse_args(argv)
    base = user.get_config(args.synthetic)
    cfg = O.apply(base, O.model_overrides(args, user))
    return O.apply(cfg, O.train_overrides(args, setting))


def test_no_flags_is_the_published_recipe():
    assert _cfg("s4", []) == registry.preset("s4")
    assert _cfg("avss", []) == registry.preset("avss")
    toy = registry.synthetic(registry.preset("ms3"))
    assert _cfg("ms3", ["--synthetic"]) == toy


def test_official_flags_map_onto_the_config():
    module = types.ModuleType("config")
    module.BACKBONE_WEIGHTS = {"pvt_v2_b5": "/w/pvt_v2_b5.pth"}
    cfg = _cfg(
        "s4",
        ["--visual_backbone", "pvt", "--train_batch_size", "8", "--max_epoches", "3",
         "--lr", "3e-4", "--wt_dec", "0", "--tpavi_stages", "1", "2", "--tpavi_vv_flag",
         "--tpavi_va_flag", "--sa_loss_flag", "--lambda_1", "0.2", "--sa_loss_stages", "2",
         "--mask_pooling_type", "max", "--session_name", "X", "--amp", "bf16", "--seed", "7"],
        module,
    )  # fmt: skip
    assert cfg.model.backbone == "pvt_v2_b5"
    assert cfg.model.backbone_weights == "/w/pvt_v2_b5.pth"
    assert (cfg.train.train_batch_size, cfg.train.max_epoches, cfg.train.lr) == (8, 3, 3e-4)
    assert cfg.train.wt_dec == 0 and cfg.train.seed == 7 and cfg.runtime.amp == "bf16"
    assert cfg.model.arch.tpavi_stages == (1, 2)
    assert cfg.model.arch.tpavi_vv and cfg.model.arch.tpavi_va
    loss = cfg.train.loss
    assert loss.sa_loss_flag and loss.lambda_1 == 0.2 and loss.av_stages == (2,)
    assert loss.mask_pooling_type == "max" and cfg.train.session_name == "X"


def test_tpavi_flags_follow_the_official_scripts():
    # only --tpavi_vv_flag: video self-attention alone (va off), as the official argparse
    cfg = _cfg("s4", ["--tpavi_vv_flag"])
    assert (cfg.model.arch.tpavi_vv, cfg.model.arch.tpavi_va) == (True, False)
    assert _cfg("s4", ["--tpavi_stages"]).model.arch.tpavi_stages == ()  # no TPAVI at all
    assert _cfg("s4", ["--visual_backbone", "convnext_tiny"]).model.backbone == "convnext_tiny"


# The flags of the published train.sh files (OpenNLPLab/AVSBench f7414af), without the
# session name and backbone (this project defaults to ResNet-50); AVSS as intended, i.e.
# without the stray space after the backslash of its line 16 (docs/DIFFERENCES.md).
PUBLISHED_TRAIN_SH_FLAGS = {
    "s4": "--train_batch_size 4 --lr 0.0001 --tpavi_stages 0 1 2 3 --tpavi_va_flag",
    "ms3": "--max_epoches 30 --train_batch_size 4 --lr 0.0001 --tpavi_stages 0 1 2 3 "
    "--tpavi_va_flag --masked_av_flag --masked_av_stages 0 1 2 3 --lambda_1 0.5 --kl_flag",
    "avss": "--max_epoches 60 --train_batch_size 4 --val_batch_size 4 --lr 0.0001 "
    "--start_eval_epoch 15 --eval_interval 2 --tpavi_stages 0 1 2 3 --tpavi_va_flag "
    "--masked_av_flag --masked_av_stages 0 1 2 3 --lambda_1 0.5 --kl_flag",
}


@pytest.mark.parametrize("setting", sorted(PUBLISHED_TRAIN_SH_FLAGS))
def test_presets_are_the_published_train_sh_flags(setting):
    argv = PUBLISHED_TRAIN_SH_FLAGS[setting].split()
    assert _cfg(setting, argv) == registry.preset(setting)


def test_avss_background_flag():
    assert _cfg("avss", []).train.loss.avss_background == "first"  # the published code today
    assert _cfg("avss", ["--avss_background", "last"]).train.loss.avss_background == "last"
    with pytest.raises(SystemExit):
        O.build_train_parser("avss").parse_args(["--avss_background", "70"])
    with pytest.raises(SystemExit):
        O.build_train_parser("ms3").parse_args(["--avss_background", "last"])  # AVSS only


def test_ms3_distance_flags():
    assert registry.preset("ms3").train.loss.kl_flag
    loss = _cfg("ms3", ["--euclidean_flag"]).train.loss
    assert loss.euclidean_flag and not loss.kl_flag  # choosing one turns the other off
    with pytest.raises(O.SetupError, match="contradict"):
        O.check_config(_cfg("ms3", ["--euclidean_flag", "--kl_flag"]))
    off = _cfg("ms3", ["--no-masked_av_flag"]).train.loss
    assert not off.masked_av_flag


@pytest.mark.parametrize(
    "setting, argv, message",
    [
        ("s4", ["--sa_loss_flag"], "--lambda_1 is 0.0"),
        ("ms3", ["--tpavi_stages", "0", "1"], "stages \\[2, 3\\] without a TPAVI block"),
        ("avss", ["--tpavi_vv_flag"], "needs the audio-visual TPAVI"),
    ],
)
def test_contradictions_are_clear_errors(setting, argv, message):
    with pytest.raises(O.SetupError, match=message):
        O.check_config(_cfg(setting, argv))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--amp", "fp8"], "invalid choice: 'fp8'"),
        (["--image_size", "100"], "multiple of 32"),
        (["--tpavi_stages", "4"], "stages are 0, 1, 2 or 3"),
        (["--masked_av_flag"], "unrecognized arguments"),  # an MS3/AVSS flag
        (["--train_batch_size", "0"], "must be >= 1"),
    ],
)
def test_bad_flags_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        O.build_train_parser("s4").parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_is_one_clear_message(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "Single-source"
    status = cmd_train.main("s4", ["--synthetic", "--data_root", str(missing), "--log_dir",
                               str(tmp_path / "logs")])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    assert f"data not found at {missing}" in err
    # --synthetic is given already: the fix is the command that makes this very root
    assert err.strip().splitlines()[1:] == [
        "Fix: make the synthetic AVSBench there (no downloads):",
        f"  avsbench make-toy-data --out {missing.parent} --settings s4",
        "or pass --data_root the folder that holds it (a Single-source folder).",
    ]
    assert not (tmp_path / "logs").exists()  # nothing written before the check
    command = err.strip().splitlines()[2].split()
    from avsbench import cli

    assert cli.main([*command[1:], "--scale", "0.05", "--num-categories", "3"]) == 0
    assert (missing / "s4_meta_data.csv").is_file()  # the command given made the root


def test_missing_data_without_synthetic_names_config_py_and_the_toy_data(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "Single-source"
    status = cmd_train.main("s4", ["--data_root", str(missing), "--log_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and f"data not found at {missing}" in err
    assert "DATA_ROOT in avs_scripts/avs_s4/config.py" in err
    assert "avsbench make-toy-data --out avsbench_data" in err
    assert "bash train.sh --synthetic" in err


def test_missing_pretrained_file_names_the_config_constant(tmp_path, s4_toy, capsys):
    module = types.ModuleType("config")
    module.__file__ = str(REPO_ROOT / "avs_scripts" / "avs_s4" / "config.py")
    module.DATA_ROOT = str(s4_toy)
    module.BACKBONE_WEIGHTS = {"resnet50": str(tmp_path / "r50.pth")}
    status = cmd_train.main("s4", ["--log_dir", str(tmp_path)], user_config=module)
    err = capsys.readouterr().err
    assert status == 2 and f"pretrained file not found: {tmp_path / 'r50.pth'}" in err
    assert "BACKBONE_WEIGHTS['resnet50'] in avs_scripts/avs_s4/config.py" in err


def _script_config(folder):
    import importlib.util

    path = REPO_ROOT / "avs_scripts" / folder / "config.py"
    spec = importlib.util.spec_from_file_location(f"config_{folder}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_three_script_configs_build(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # config.py paths do not depend on the current folder
    for setting, row in C.SETTINGS.items():
        module = _script_config(row.script_folder)
        assert module.SETTING == setting
        folder = REPO_ROOT / "avs_scripts" / row.script_folder
        user = UserConfig(setting, module)
        real, toy = user.get_config(False), user.get_config(True)
        assert real.model.setting == setting == toy.model.setting
        here = lambda p, f=folder: os.path.normpath(f / p)  # noqa: E731
        assert real.model.backbone == "resnet50" and real.data.root == here(module.DATA_ROOT)
        assert real.data.root == str(REPO_ROOT / "avsbench_data" / row.dataset_folder)
        assert real.model.backbone_weights == here(module.BACKBONE_WEIGHTS["resnet50"])
        assert real.model.vggish_weights == here(module.VGGISH_WEIGHTS)
        assert real.train.log_dir == str(folder / "train_logs")
        assert user.log_dir("test") == str(folder / "test_logs")
        # nothing but the paths differs from the preset
        assert real == C.with_user_paths(
            registry.preset(setting), data_root=here(module.DATA_ROOT),
            backbone_weights=here(module.BACKBONE_WEIGHTS["resnet50"]),
            vggish_weights=here(module.VGGISH_WEIGHTS), vggish_pca=None,
            log_dir=str(folder / "train_logs"),
        )  # fmt: skip
        assert toy.model.backbone == "resnet18" and toy.data.image_size % 32 == 0
        assert toy.model.backbone_weights is None and toy.model.vggish_weights is None
        assert toy.model.arch.decoder_channels == 64 and toy.data.root == real.data.root


def test_train_only_method_flags_reach_the_model_config():
    """COMBO's train-only settings of its architecture (not only `train.*` keys) are applied
    by train.sh: they were once dropped, silently training the published grouping."""
    user = UserConfig("s4", None)
    argv = ["--synthetic", "--method", "combo", "--combo_train_audio_groups", "clip",
            "--combo_fusion_layer_scale", "0.1"]  # fmt: skip
    args = O.build_train_parser("s4").parse_args(argv)
    cfg = O.apply(user.get_config(True, "combo"), O.model_overrides(args, user, "combo"))
    cfg = O.apply(cfg, O.train_overrides(args, "s4", "combo"))
    assert cfg.model.arch.train_audio_groups == "clip"
    assert cfg.model.arch.fusion_layer_scale == 0.1
    assert cfg.model.arch.num_queries == 16  # the synthetic configuration is kept around them
    model = registry.build_model_for(cfg)
    assert float(model.sem_seg_head.fusion_module.b_attn.gamma_a[0]) == pytest.approx(0.1)
    assert model.train_audio_groups == "clip"
    with pytest.raises(SystemExit):  # train-only: test.sh does not take it
        O.build_test_parser("s4").parse_args(["--combo_train_audio_groups", "clip"])
