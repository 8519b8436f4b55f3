"""A method is one package plus one registry entry: a toy third method, defined entirely in
this file (model, output type, loss, checkpoint detector, presets, a flag, an extra input
per frame), is added to `avsbench.models.registry.METHODS` and nothing under avsbench/ is
edited. With it, train.sh's code trains, resumes exactly, test.sh reports the official
metrics, its checkpoints load both ways through `checkpoints.load`, and `avsbench predict`
runs on a generated video, making the extra input for the new video itself."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from avsbench import checkpoints, cli
from avsbench import config as C
from avsbench.commands import test as cmd_test
from avsbench.commands import train as cmd_train
from avsbench.data.extra_inputs import ExtraInput
from avsbench.data.synthetic import make_toy_data
from avsbench.models import registry
from avsbench.models.contract import AVSOutput, check_output
from avsbench.models.spec import MethodFlag, MethodSpec
from avsbench.state_dicts import LoadReport
from tests.video_fixtures import make_video

IMAGE_SIZE = 32
PREFIX = "toynet."  # the "official" layout of the toy method's released files


@dataclass(frozen=True)
class ToyArch:
    width: int = 8  # channels of every layer


@dataclass
class ToyOutput(AVSOutput):
    feature: torch.Tensor  # [B*T, C, H, W], what nothing but this method knows of


class ToyModel(nn.Module):
    """frames and their `hint` image (the extra input) -> conv -> x audio -> 1x1 head."""

    def __init__(self, num_classes: int, width: int) -> None:
        super().__init__()
        self.visual = nn.Conv2d(3, width, 3, padding=1)  # its "backbone"
        self.hint_conv = nn.Conv2d(3, width, 1)
        self.audio = nn.Linear(128, width)
        self.head = nn.Conv2d(width, num_classes, 1)
        self.hints_seen = 0  # how many hint images reached forward (not a parameter)

    def forward(self, frames, audio_emb, frame_valid=None, target_frames=None, hint=None):
        if hint is None or hint.shape != frames.shape:
            raise ValueError("the toy model needs its hint image per frame, as the frames")
        self.hints_seen += hint.shape[0]
        feature = F.relu(self.visual(frames) + self.hint_conv(hint))
        feature = feature * self.audio(audio_emb)[:, :, None, None]  # [B*T, C, H, W]
        return ToyOutput(logits=self.head(feature), feature=feature)


def build(setting: str, backbone: str, *, width: int = 8, num_classes: int | None = None):
    return ToyModel(num_classes or C.setting_info(setting).num_classes, width)


def build_from_config(model_cfg: C.ModelConfig) -> ToyModel:
    return build(model_cfg.setting, model_cfg.backbone, width=model_cfg.arch.width,
                 num_classes=model_cfg.num_classes)  # fmt: skip


def loss(setting, output, masks, gt_valid, loss_cfg) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE of the annotated frames (binary settings only)."""
    check_output(output, ToyOutput, "toy")
    per_frame = F.binary_cross_entropy_with_logits(
        output.logits[:, 0], masks.float(), reduction="none"
    ).mean((1, 2))  # [B*T]
    total = (per_frame * gt_valid).sum() / gt_valid.sum()
    value = float(total.detach())
    return total, {"iou_loss": value, "total_loss": value}


def preset(setting: str) -> C.Config:
    train = C.TrainConfig(max_epoches=2, lr=1e-2, optimizer="adam", val_batch_size=2)
    return C.setting_preset(setting, train, C.ModelConfig(method="toy", arch=ToyArch()))


def synthetic(cfg: C.Config) -> C.Config:
    return C.override(cfg, {"data.image_size": IMAGE_SIZE, "train.max_epoches": 2})


class OfficialToy:
    """Detector of the toy method's 'released' files: a flat dict of toynet.* tensors."""

    description = "a toy state dict (keys toynet.*)"
    format_name = "official toy"
    stores_config = False

    def matches(self, obj: Any) -> bool:
        return isinstance(obj, Mapping) and f"{PREFIX}head.weight" in obj

    def config(self, obj: Any, base: C.Config | None) -> C.Config:
        cfg = preset("s4")
        width = int(obj[f"{PREFIX}head.weight"].shape[1])
        return C.override(cfg, {"model.arch.width": width, "model.backbone": "none"})

    def load_into(self, model: nn.Module, obj: Any) -> LoadReport:
        return load_official(model, obj)

    def vggish_state(self, obj: Any) -> None:
        return None


def load_official(model: nn.Module, sd: Mapping[str, Any]) -> LoadReport:
    model.load_state_dict({k[len(PREFIX) :]: v for k, v in sd.items()}, strict=True)
    return LoadReport(loaded=len(sd))


def to_official(model: nn.Module) -> dict[str, torch.Tensor]:
    return {PREFIX + k: v for k, v in model.state_dict().items()}


def hint_pixels(rgb: np.ndarray, size: int) -> np.ndarray:
    """The hint of a frame: the frame itself resized (bilinear), in [0, 1], [3, S, S]."""
    image = Image.fromarray(rgb).resize((size, size), Image.BILINEAR)
    return (np.asarray(image, dtype=np.float32) / 255.0).transpose(2, 0, 1)


HINT = ExtraInput(
    key="hint", folders=(("s4", "s4_data/toy_hints"),), suffix="_hint", values="unit",
    resample="bilinear",
)  # fmt: skip

TOY = MethodSpec(
    name="toy",
    description="a toy method defined in tests/test_toy_method.py",
    arch_type=ToyArch,
    model_type=ToyModel,
    output_type=ToyOutput,
    preset=preset,
    synthetic=synthetic,
    build=build,
    build_from_config=build_from_config,
    loss=loss,
    loss_fields=(),
    detectors={"official_toy": OfficialToy()},
    load_official=load_official,
    to_official=to_official,
    summary=lambda m: f"toy (width {m.arch.width})",
    flags=(MethodFlag("--toy_width", "model.arch.width", {"type": int}),),
    extra_inputs=(HINT,),
    make_extra_inputs=lambda rgb, size: {"hint": hint_pixels(rgb, size)},
)


@pytest.fixture
def toy(monkeypatch):
    """The toy method in the registry, for this test only: the one change it takes."""
    monkeypatch.setitem(registry.METHODS, "toy", TOY)
    return TOY


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    """A tiny synthetic S4 set with a hint PNG beside every frame (the frame itself)."""
    base = tmp_path_factory.mktemp("toy_method")
    root = make_toy_data(base, seed=0, scale=0.05, settings=("s4",), num_categories=3)["s4"]
    frames_root = root / "s4_data" / "visual_frames"
    for frame in sorted(frames_root.rglob("*.png")):
        relative = frame.relative_to(frames_root)
        hint = root / "s4_data" / "toy_hints" / relative.parent / f"{frame.stem}_hint.png"
        hint.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(frame, hint)
    return root


def _train_flags(root: Path, logs: Path, **extra: Any) -> list[str]:
    flags = {"method": "toy", "data_root": root, "log_dir": logs, "train_batch_size": 2,
             "max_steps_per_epoch": 3, "num_workers": 0, "device": "cpu",
             "session_name": "toy", **extra}  # fmt: skip
    argv = ["--synthetic"]
    for key, value in flags.items():
        argv += [f"--{key}", str(value)]
    return argv


def _checkpoint(logs: Path, name: str) -> Path:
    (found,) = sorted(logs.glob(f"toy_*/checkpoints/{name}"))
    return found


def test_unknown_methods_and_foreign_flags_are_refused(toy, toy_data, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown method 'detr'; valid: \['avsegformer', "):
        registry.method_spec("detr")
    assert registry.preset("s4", "toy").model.arch == ToyArch()
    assert cmd_train.main("s4", _train_flags(toy_data, tmp_path, tpavi_mode="gaussian")) == 2
    assert "--tpavi_mode is a flag of --method tpavi, not of toy" in capsys.readouterr().err
    assert cmd_train.main("s4", _train_flags(toy_data, tmp_path, lambda_1=0.5)) == 2
    assert "--lambda_1 is a flag of --method tpavi, not of toy" in capsys.readouterr().err
    from avsbench.engine import options

    with_kl = C.override(registry.preset("s4", "toy"), {"train.loss.lambda_1": 0.5})
    with pytest.raises(options.SetupError, match="lambda_1 are not read by the toy loss"):
        options.check_config(with_kl)  # e.g. a config edited by hand
    tpavi = [*_train_flags(toy_data, tmp_path), "--toy_width", "4", "--method", "tpavi"]
    assert cmd_train.main("s4", tpavi) == 2
    assert "--toy_width is a flag of --method toy, not of tpavi" in capsys.readouterr().err


@pytest.mark.slow
def test_toy_method_trains_resumes_tests_loads_and_predicts(toy, toy_data, tmp_path):
    # train.sh's code: two epochs straight, and one epoch then --resume to two
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cmd_train.main("s4", _train_flags(toy_data, straight, toy_width=6)) == 0
    assert cmd_train.main("s4", _train_flags(toy_data, split, toy_width=6, max_epoches=1)) == 0
    resumed = _train_flags(toy_data, split, resume="auto", max_epoches=2)
    assert cmd_train.main("s4", resumed) == 0
    a = torch.load(_checkpoint(straight, "last.pth"), weights_only=True)
    b = torch.load(_checkpoint(split, "last.pth"), weights_only=True)
    assert a["config"]["model"] == {**b["config"]["model"]} and b["epoch"] == 1
    assert a["config"]["model"]["arch"] == {"width": 6}
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name  # resume is exact

    # test.sh's code: the official metrics of the best checkpoint, read back from its file
    best = _checkpoint(straight, "toy_best.pth")
    out_json = tmp_path / "metrics.json"
    test_flags = ["--weights", str(best), "--data_root", str(toy_data), "--num_workers", "0",
                  "--device", "cpu", "--log_dir", str(tmp_path / "test_logs"),
                  "--out_json", str(out_json), "--test_batch_size", "2"]  # fmt: skip
    assert cmd_test.main("s4", test_flags) == 0
    result = json.loads(out_json.read_text())
    metrics = result["metrics"]
    assert result["config"]["model"]["method"] == "toy" and result["checkpoint_kind"] == "project"
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["fscore"] <= 1.0
    assert result["num_clips"] > 0

    # checkpoints.load, both ways: the project file, then the toy's own "official" layout
    loaded = checkpoints.load(best)
    assert isinstance(loaded.model, ToyModel) and loaded.config.model.arch.width == 6
    official = tmp_path / "toy_official.pth"
    torch.save(registry.to_official_state_dict(loaded.model), official)
    again = checkpoints.load(official)
    assert again.report.kind == "official_toy" and again.config.model.arch.width == 6
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name])

    # avsbench predict on a generated video: the method makes the hint of each frame itself
    video = make_video(tmp_path / "clip.mp4", seconds=3, fps=10, width=48, height=40,
                       audio_rate=16000)  # fmt: skip
    out = tmp_path / "predicted"
    assert cli.main(["predict", str(video), "--weights", str(best), "--out", str(out),
                     "--device", "cpu"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["method"] == "toy"
    assert len(sorted((out / "masks").glob("*.png"))) == 3


def test_a_method_whose_extra_input_cannot_be_made_is_refused_by_predict(toy, tmp_path):
    from avsbench.predictor import PredictError, load_predictor

    registry.METHODS["toy"] = dataclasses.replace(TOY, make_extra_inputs=None)
    model = build("s4", "none", width=4)
    path = tmp_path / "toy.pth"
    torch.save(to_official(model), path)
    with pytest.raises(PredictError, match="a toy model needs a hint image per frame"):
        load_predictor(path, device="cpu")
