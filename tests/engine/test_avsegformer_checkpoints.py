"""AVSegFormer checkpoints through `avsbench.checkpoints.load` (detector
"official_avsegformer") and the commands: test.sh, train.sh and predict with --weights."""

from __future__ import annotations

import json
import re

import pytest
import torch

import avsbench
from avsbench import checkpoints
from avsbench import config as C
from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.data.datasets import build_dataset
from avsbench.engine import evaluate as E
from avsbench.engine.distributed import DistInfo
from avsbench.engine.embeddings import AudioEmbedder
from avsbench.models import registry
from tests.engine.engine_helpers import tiny_flags
from tests.golden_files import AVSEGFORMER_STATE_DICTS, require
from tests.state_dict_files import compact_like, compact_state_dict

# the official tensors the published forward pass never uses
UNUSED = re.compile(r"^(backbone\.layer[34]_2\.|head\.fpn\.|head\.attn_fc\.)")


def random_state_dict(stem: str, seed: int) -> dict[str, torch.Tensor]:
    """Every tensor of tests/golden/avsegformer/state_dicts/avsegformer_<stem>.tsv (name,
    shape, dtype), random values (positive running variances, int64 counters) that
    torch.save writes in 2 MB instead of the release's 604 MB (tests/state_dict_files.py)."""
    rows, dtypes = [], {}
    for line in (
        require(AVSEGFORMER_STATE_DICTS / f"avsegformer_{stem}.tsv").read_text().split("\n")
    ):
        if not line.strip():
            continue
        name, shape_text, dtype = line.split("\t")
        rows.append((name, tuple(int(s) for s in re.findall(r"\d+", shape_text))))
        dtypes[name] = getattr(torch, dtype)
    return compact_state_dict(rows, seed, dtypes)


# a small AVSegFormer in the published layout (ResNet-18: the ResNet layout of the releases)
SMALL = dict(embed_dim=32, num_queries=6, encoder_layers=1, decoder_layers=2, generator_layers=1,
             num_points=2, ffn_dim=64, generator_ffn_dim=32, mlp_dim=48)  # fmt: skip


def _small_file(tmp_path, setting="s4", seed=0):
    torch.manual_seed(seed)
    model = avsbench.build_model(setting, "resnet18", method="avsegformer", **SMALL).eval()
    vggish = avsbench.VGGish()
    vggish_state = compact_like(vggish.state_dict(), seed)  # N(0, 0.05), 1 MB, not 289 MB
    vggish.load_state_dict(vggish_state)
    sd = avsbench.to_official_state_dict(model, vggish_state=vggish_state)
    path = tmp_path / f"avsegformer_{setting}.pth"
    torch.save(sd, path)
    return model, vggish, sd, path


@pytest.mark.parametrize("setting, expect, found", [("s4", None, "s4"), ("s4", "ms3", "ms3"),
                                                    ("avss", None, "avss")])  # fmt: skip
def test_detected_by_keys_with_setting_backbone_and_sizes(tmp_path, setting, expect, found):
    model, vggish, sd, path = _small_file(tmp_path, setting)
    loaded = checkpoints.load(path, expect_setting=expect)
    m = loaded.config.model
    assert loaded.report.kind == "official_avsegformer"
    assert (m.method, m.setting, m.backbone, m.num_classes) == (
        "avsegformer", found, "resnet18", C.SETTINGS[found].num_classes,
    )  # fmt: skip
    a = m.arch
    sizes = (a.embed_dim, a.num_queries, a.encoder_layers, a.decoder_layers,
             a.generator_layers, a.num_points, a.ffn_dim, a.generator_ffn_dim,
             a.mlp_dim)  # fmt: skip
    assert sizes == (32, 6, 1, 2, 1, 2, 64, 32, 48)
    assert loaded.config.train.optimizer == "adamw"  # the method's recipe comes with it
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert sorted(loaded.report.dropped) == sorted(k for k in sd if UNUSED.match(k))
    assert any(k.startswith("head.fpn.") for k in loaded.report.dropped)
    assert loaded.vggish_state.keys() == vggish.state_dict().keys()
    for key, value in vggish.state_dict().items():
        assert torch.equal(loaded.vggish_state[key], value), key
    assert "VGGish: checkpoint" in loaded.report.summary()
    with pytest.raises(checkpoints.CheckpointError, match="holds a avsegformer model, not tpavi"):
        checkpoints.load(path, overrides={"model.method": "tpavi"})


@pytest.mark.slow
def test_released_layout_is_read_as_the_published_network(tmp_path):
    """A random state dict with every tensor of the released S4 ResNet-50 file."""
    sd = random_state_dict("s4_res50", seed=3)
    path = tmp_path / "AVSegFormer_res50_s4.pth"
    torch.save({k: v for k, v in sd.items() if not k.startswith("vggish.")}, path)
    with torch.device("meta"):  # architecture only: the meta model has no values to copy
        obj = checkpoints.safe_torch_load(path, "file")
        cfg = checkpoints.detectors()["official_avsegformer"].config(obj, None)
    assert checkpoints.detect(obj) == "official_avsegformer"
    assert cfg == C.override(
        registry.preset("s4", "avsegformer"), {}
    )  # the published sizes, ResNet-50
    assert cfg.model.backbone == "resnet50"


@pytest.mark.slow
def test_test_sh_with_a_released_layout(tmp_path, s4_toy):
    """test.sh --weights on a file with every tensor of the released S4 ResNet-50 checkpoint:
    detected, built, its VGGish used; the metrics equal those of the model evaluated here."""
    root = s4_toy
    sd = random_state_dict("s4_res50", seed=5)
    path = tmp_path / "AVSegFormer_res50_s4.pth"
    torch.save(sd, path)
    out_json = tmp_path / "metrics.json"
    status = cmd_test.main("s4", ["--synthetic", "--data_root", str(root), "--weights", str(path),
                                  "--image_size", "64", "--num_workers", "0", "--device", "cpu",
                                  "--log_dir", str(tmp_path / "logs"), "--out_json",
                                  str(out_json)])  # fmt: skip
    assert status == 0
    result = json.loads(out_json.read_text())
    assert result["checkpoint_kind"] == "official_avsegformer"
    cfg = registry.config_from_dict(result["config"])
    assert (cfg.model.method, cfg.model.backbone, cfg.model.arch.num_queries) == (
        "avsegformer", "resnet50", 300,
    )  # fmt: skip

    model = avsbench.build_model("s4", "resnet50", method="avsegformer").eval()
    report = avsbench.load_official_state_dict(model, sd)
    vggish = avsbench.VGGish()
    vggish.load_state_dict(report.vggish_state)
    data = build_dataset("s4", root, "test", image_size=64)
    loader = E.build_eval_loader(data, 4, DistInfo(), num_workers=0)
    direct = E.evaluate(model, AudioEmbedder(vggish, "cpu"), loader, "s4", torch.device("cpu"))
    for key in ("miou", "fscore", "miou_per_frame"):
        assert result["metrics"][key] == pytest.approx(direct[key], abs=1e-9), key


@pytest.mark.slow
def test_train_sh_weights_builds_the_file_s_model(tmp_path, ms3_toy):
    """train.sh --weights FILE (no --method): the run is an AVSegFormer of the file's
    architecture, starting from its tensors."""
    root = ms3_toy
    model, _, _, path = _small_file(tmp_path, "s4")
    logs = tmp_path / "train"
    flags = tiny_flags(root, logs, weights=path, max_steps_per_epoch=1, decoder_channels=None)
    assert cmd_train.main("ms3", flags) == 0
    (run,) = [p for p in logs.iterdir() if p.is_dir()]
    last = torch.load(run / "checkpoints" / "last.pth", weights_only=True)
    cfg = registry.config_from_dict(last["config"])
    assert (cfg.model.method, cfg.model.setting, cfg.model.arch.num_queries) == (
        "avsegformer",
        "ms3",
        6,
    )
    assert cfg.train.optimizer == "adamw"
    trained = last["model"]
    assert trained.keys() == model.state_dict().keys()
    # one AdamW step from the file's weights: close to them, not equal
    conv = "head.fc.4.weight"
    start = model.state_dict()[conv]
    assert not torch.equal(trained[conv], start)
    assert (trained[conv] - start).abs().max() < 10 * cfg.train.lr * 2


def test_predict_with_an_avsegformer_file(tmp_path):
    from avsbench.predict import predict_video
    from tests.video_fixtures import make_video

    model, vggish, _, path = _small_file(tmp_path, "s4")
    video = make_video(tmp_path / "v.mp4", 1, 10, 64, 48, audio_rate=16000)
    result = predict_video(video, path, device="cpu")
    assert result.summary["model"]["checkpoint_format"] == "official AVSegFormer"
    assert result.summary["model"]["vggish"] == "checkpoint"
    loaded = avsbench.predict.load_predictor(path, device="cpu")
    for key, value in vggish.state_dict().items():
        assert torch.equal(loaded.vggish.state_dict()[key], value), key
    assert len(result.masks) >= 1
