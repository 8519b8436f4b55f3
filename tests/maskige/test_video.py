"""Maskiges of a video (`avsbench maskige VIDEO`), `avsbench predict --sam_weights` with a COMBO
checkpoint, and the mark in summary.json and test.sh's metrics.json."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from avsbench import cli
from avsbench import config as C
from avsbench.commands import test as cmd_test
from avsbench.data.ade20k_palette import ADE20K_PALETTE
from avsbench.data.synthetic import make_toy_data
from avsbench.engine.checkpoint import make_checkpoint
from avsbench.maskiges.dataset import PROVENANCE, dataset_mark
from avsbench.maskiges.inputs import attach_sam
from avsbench.maskiges.sam import GeneratorParameters
from avsbench.media.video import FrameSampler
from avsbench.models import registry
from avsbench.predict import load_predictor, predict_video
from tests.maskige.helpers import (
    FLAGS,
    PARAMETERS,
    reference_generator,
    reference_ids,
    save_tiny_sam,
)
from tests.video_fixtures import make_video

# the spec ("The network" 1): frames and maskiges, RGB 0..255, (x - mean) / std
MEAN = np.array([123.675, 116.28, 103.53])[:, None, None]
STD = np.array([58.395, 57.12, 57.375])[:, None, None]
NOT_PUBLISHED = "not the published Semantic-SAM maskiges"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("maskige_video")
    torch.manual_seed(0)
    cfg = registry.synthetic(registry.preset("s4", "combo"))  # ResNet-18, 64 px
    ckpt = make_checkpoint(
        registry.build_model_for(cfg).state_dict(), C.to_dict(cfg), epoch=1, best_miou=0.5,
        history=[], with_rng=False,
    )  # fmt: skip
    torch.save(ckpt, folder / "combo_s4.pth")
    return {
        "sam": save_tiny_sam(folder / "tiny_sam.pth"),
        "combo": folder / "combo_s4.pth",
        "video": make_video(folder / "clip.mp4", 2.5, 10, 96, 64, audio_rate=16000),
    }


def sampled_frames(video: Path) -> list[np.ndarray]:
    """The frames predict reads, one per second."""
    return [rgb for _, _, rgb in FrameSampler(video, 96, 64, per_second=1)]


def palette_rgb(ids: np.ndarray) -> np.ndarray:
    image = Image.fromarray(ids, mode="P")
    image.putpalette(ADE20K_PALETTE.tobytes())
    return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("setting", ["s4", "avss"])
def test_video_maskiges_are_those_of_the_frames_predict_reads(files, tmp_path, setting):
    out = tmp_path / "out"
    argv = ["maskige", str(files["video"]), "--sam_weights", str(files["sam"]), *FLAGS,
            "--setting", setting, "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    pngs = sorted((out / "maskiges").iterdir())
    assert [p.name for p in pngs] == ["00000.png", "00001.png", "00002.png"]
    reference = reference_generator(files["sam"])
    for rgb, png in zip(sampled_frames(files["video"]), pngs, strict=True):
        frame = cv2.resize(rgb, (224, 224)) if setting == "s4" else rgb
        np.testing.assert_array_equal(np.asarray(Image.open(png)), reference_ids(reference, frame))
    provenance = json.loads((out / PROVENANCE).read_text())
    assert NOT_PUBLISHED in provenance["source"] and provenance["setting"] == setting
    assert [s["second"] for s in provenance["seconds"]] == [0, 1, 2]
    # an output of this command is replaced only with --overwrite
    assert cli.main(argv) == 2
    assert cli.main([*argv, "--overwrite"]) == 0


def test_predict_feeds_combo_the_maskige_of_each_frame_and_marks_the_summary(files, tmp_path):
    predictor = load_predictor(files["combo"], device="cpu")
    predictor = attach_sam(predictor, files["sam"], parameters=GeneratorParameters(**PARAMETERS))
    fed = []
    predictor.model.register_forward_pre_hook(
        lambda module, args, kwargs: fed.append(kwargs["maskige"].clone()), with_kwargs=True
    )
    result = predict_video(files["video"], predictor, out_dir=tmp_path / "out", write_overlay=False)
    (maskige,) = fed  # one window of 3 s, padded to COMBO's 5 frames
    assert maskige.shape == (5, 3, 64, 64) and result.num_seconds == 3
    reference = reference_generator(files["sam"])
    for t, rgb in enumerate(sampled_frames(files["video"])):
        ids = reference_ids(reference, cv2.resize(rgb, (224, 224)))
        rgb64 = np.asarray(Image.fromarray(palette_rgb(ids)).resize((64, 64), Image.NEAREST))
        expected = (rgb64.transpose(2, 0, 1) - MEAN) / STD
        np.testing.assert_allclose(maskige[t].numpy(), expected, atol=1e-5)
    torch.testing.assert_close(maskige[3], maskige[2])  # the last second repeated
    mark = json.loads((tmp_path / "out" / "summary.json").read_text())["model"]["maskiges"]
    assert NOT_PUBLISHED in mark["source"]
    assert mark["sam_weights_sha256"] == hashlib.sha256(files["sam"].read_bytes()).hexdigest()
    assert mark["parameters"]["points_per_side"] == PARAMETERS["points_per_side"]


@pytest.mark.slow
def test_predict_without_sam_weights_names_the_fix(files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["predict", str(files["video"]), "--weights", str(files["combo"]), "--out", str(out)]
    assert cli.main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--sam_weights" in err and "avsbench maskige" in err
    assert str(files["combo"]) in err and not out.exists()
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    assert cli.main([*argv, "--sam_weights", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and not out.exists()


@pytest.mark.slow
def test_predict_command_with_sam_weights_end_to_end(files, tmp_path):
    video = make_video(tmp_path / "one.mp4", 1.0, 10, 96, 64, audio_rate=16000)
    out = tmp_path / "out"
    argv = ["predict", str(video), "--weights", str(files["combo"]), "--sam_weights",
            str(files["sam"]), "--out", str(out), "--no-overlay", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    mark = summary["model"]["maskiges"]
    assert NOT_PUBLISHED in mark["source"] and mark["sam_model"] == "custom"
    assert mark["parameters"] == GeneratorParameters().describe()  # the defaults
    assert summary["num_seconds"] == 1 and (out / "masks" / "00000.png").is_file()


@pytest.mark.slow
def test_metrics_json_of_test_sh_carries_the_mark(files, tmp_path):
    make_toy_data(tmp_path, seed=0, scale=0.05, settings=("s4",), num_categories=3)
    root = tmp_path / "Single-source"
    assert dataset_mark(root) == {"source": "make-toy-data's synthetic maskiges"}
    shutil.rmtree(root / "s4_data" / "pre_SAM_mask" / "test")
    assert cli.main(["maskige", str(root), "--sam_weights", str(files["sam"]), *FLAGS]) == 0
    out_json = tmp_path / "metrics.json"
    status = cmd_test.main("s4", ["--synthetic", "--method", "combo", "--data_root", str(root),
                                  "--weights", str(files["combo"]), "--num_workers", "0",
                                  "--device", "cpu", "--log_dir", str(tmp_path / "logs"),
                                  "--out_json", str(out_json)])  # fmt: skip
    assert status == 0
    mark = json.loads(out_json.read_text())["maskiges"]
    assert NOT_PUBLISHED in mark["source"] and mark["files_made"] == 10 and mark["complete"]
    assert mark["provenance"] == str(root / PROVENANCE)
