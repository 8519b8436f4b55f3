"""`avsbench evaluate` on the masks `test.sh --save_pred_mask` writes gives test.sh's numbers
(tiny random models on the synthetic AVSBench), and bad prediction folders are refused with
one line naming the file and the rule, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avsbench import cli
from avsbench import config as C
from avsbench.commands import test as cmd_test
from avsbench.engine import checkpoint as ckpt_io
from avsbench.models import registry
from avsbench.models.registry import build_model_for

TINY = ["--image_size", "64", "--num_workers", "0", "--device", "cpu"]
# numbers that depend on the thresholded (S4/MS3) or argmax (AVSS) masks only, which are
# what the saved PNGs hold; max-F over 255 thresholds needs the probabilities (docs/EVALUATE.md)
BINARY_EXACT = ["miou", "miou_test_batch_2", "miou_test_batch_4", "miou_per_frame",
                "iou_dataset", "miou_per_clip", "miou_dataset_ddeseg", "f1_dataset_ddeseg",
                "fscore_dataset_ddeseg", "miou_dataset_cavp", "f1_dataset_cavp",
                "fscore_dataset_cavp", "fdr_dataset_cavp"]  # fmt: skip
# AVSS: the protocols over the real frames (the saved files hold no padding frame)
SEMANTIC_EXACT = ["miou_vct_combo_avss", "fscore_vct_combo_avss", "miou_dataset_ddeseg",
                  "f1_dataset_ddeseg", "fscore_dataset_ddeseg", "miou_dataset_cavp",
                  "f1_dataset_cavp", "fscore_dataset_cavp", "fdr_dataset_cavp"]  # fmt: skip


def _checkpoint(folder: Path, setting: str, classes: list[int]) -> Path:
    """A tiny random model whose last 1x1 convolution (2 ReLU features -> classes) is set so
    that its masks vary over the frame: S4 foreground where feature 0 > feature 1; AVSS one
    of `classes` by the angle of the feature pair (the others never win)."""
    torch.manual_seed(0)
    cfg = registry.synthetic(registry.preset(setting))
    cfg = C.override(cfg, {"data.image_size": 64, "model.arch.decoder_channels": 16})
    state = build_model_for(cfg).state_dict()
    weight, bias = state["decoder.output_conv.4.weight"], state["decoder.output_conv.4.bias"]
    if setting == "avss":
        weight.zero_()
        bias.fill_(-1e4)
        for i, c in enumerate(classes):
            angle = torch.tensor(torch.pi / 2 * i / max(len(classes) - 1, 1))
            weight[c, :, 0, 0] = torch.stack([angle.cos(), angle.sin()]) * 50
            bias[c] = 0.0
    else:
        weight[0, :, 0, 0] = torch.tensor([50.0, -50.0])
        bias.zero_()
    ckpt = ckpt_io.make_checkpoint(
        state, C.to_dict(cfg), epoch=0, best_miou=0.0, history=[], with_rng=False
    )
    path = folder / f"{setting}_best.pth"
    ckpt_io.atomic_save(ckpt, path)
    return path


def _test_sh(setting: str, root: Path, folder: Path) -> tuple[dict, Path]:
    classes = [0, 1]
    if setting == "avss":
        from avsbench.data.datasets import build_dataset

        data = build_dataset("avss", root, "test", image_size=64)
        seen = torch.cat([torch.as_tensor(data[i]["masks"]).unique() for i in range(len(data))])
        classes = sorted({0, *seen.tolist()})[:4]
    weights = _checkpoint(folder, setting, classes)
    status = cmd_test.main(setting, ["--synthetic", "--data_root", str(root), "--weights",
                                     str(weights), *TINY, "--log_dir", str(folder / "logs"),
                                     "--save_pred_mask", "--test_batch_size", "4"])  # fmt: skip
    assert status == 0
    (run,) = (folder / "logs").iterdir()
    return json.loads((run / "metrics.json").read_text())["metrics"], run / "pred_masks"


def _evaluate(setting: str, root: Path, preds: Path, out: Path, *extra: str) -> int:
    return cli.main(["evaluate", str(preds), "--setting", setting, "--data_root", str(root),
                     "--image_size", "64", "--out", str(out), *extra])  # fmt: skip


@pytest.fixture(scope="module")
def s4_run(tmp_path_factory, s4_toy):
    return _test_sh("s4", s4_toy, tmp_path_factory.mktemp("s4_run"))


def test_evaluate_gives_test_sh_numbers_s4(s4_run, s4_toy, tmp_path, capsys):
    metrics, preds = s4_run
    assert _evaluate("s4", s4_toy, preds, tmp_path / "eval") == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert 0 < metrics["iou_dataset"] and 0 < metrics["fdr_dataset_cavp"] < 1  # masks vary
    for key in BINARY_EXACT:
        assert scored[key] == pytest.approx(metrics[key], abs=1e-9), key
    # the official protocol at one clip per batch is the per-clip (VCT/COMBO) one
    assert scored["miou_test_batch_1"] == pytest.approx(scored["miou_per_clip"], abs=1e-9)
    assert scored["fscore_test_batch_1"] == pytest.approx(scored["fscore_per_clip"], abs=1e-9)
    table = (tmp_path / "eval" / "metrics.md").read_text()
    assert f"| {100 * scored['miou_dataset_ddeseg']:.2f} |" in table
    assert "miou_dataset_cavp" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_gives_test_sh_numbers_avss(avss_toy, tmp_path):
    metrics, preds = _test_sh("avss", avss_toy, tmp_path / "run")
    assert _evaluate("avss", avss_toy, preds, tmp_path / "eval") == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert metrics["miou_dataset_ddeseg"] > 0.05 and metrics["miou_present_classes"] > 0.05
    for key in SEMANTIC_EXACT:
        assert scored[key] == pytest.approx(metrics[key], abs=1e-9), key


def test_a_manifest_maps_any_layout(s4_run, s4_toy, tmp_path):
    """The same masks renamed flat, mapped by a manifest, score the same."""
    metrics, preds = s4_run
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["file,video_id,frame"]
    for i, path in enumerate(sorted(preds.rglob("*.png"))):
        video_id, frame = path.stem.rsplit("_", 1)
        shutil.copy(path, flat / f"m{i}.png")
        rows.append(f"m{i}.png,{video_id},{int(frame) - 1}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    assert _evaluate("s4", s4_toy, flat, tmp_path / "eval", "--manifest", str(manifest)) == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert scored["miou"] == pytest.approx(metrics["miou"], abs=1e-9)


def test_probability_maps_give_the_f_measure_over_thresholds(s4_toy, tmp_path):
    """.npy probability maps equal to the ground truth score 1 everywhere; the same maps as
    8-bit probability PNGs too (values 0 / 255 read as a hard mask)."""
    from avsbench.data.datasets import build_dataset

    data = build_dataset("s4", s4_toy, "test", image_size=64)
    preds = tmp_path / "npy"
    for index, (name, category) in enumerate(data.rows):
        masks = data[index]["masks"]  # [5, 64, 64]
        folder = preds / category / name
        folder.mkdir(parents=True)
        for k in range(5):
            np.save(folder / f"{name}_{k + 1}.npy", np.asarray(masks[k], dtype=np.float32))
    assert _evaluate("s4", s4_toy, preds, tmp_path / "eval") == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert scored["miou_dataset_ddeseg"] == pytest.approx(1.0, abs=1e-9)
    assert scored["fscore_dataset_curve"] == pytest.approx(1.0, abs=1e-6)


def _copy(preds: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "preds"
    shutil.copytree(preds, folder)
    return folder


def _refused(setting, root, preds, tmp_path, capsys, *extra) -> str:
    before = {p: p.read_bytes() for p in preds.rglob("*") if p.is_file()}
    status = _evaluate(setting, root, preds, tmp_path / "eval", *extra)
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "eval").exists()  # nothing written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".eval.")]
    assert {p: p.read_bytes() for p in preds.rglob("*") if p.is_file()} == before
    return err


def test_missing_frame_is_named(s4_run, s4_toy, tmp_path, capsys):
    preds = _copy(s4_run[1], tmp_path)
    gone = sorted(preds.rglob("*_3.png"))[0]
    gone.unlink()
    err = _refused("s4", s4_toy, preds, tmp_path, capsys)
    assert str(gone) in err and "missing frame" in err and "every real frame" in err


def test_extra_file_is_named(s4_run, s4_toy, tmp_path, capsys):
    preds = _copy(s4_run[1], tmp_path)
    extra = next(preds.iterdir()) / "notes.txt"
    extra.write_text("x")
    err = _refused("s4", s4_toy, preds, tmp_path, capsys)
    assert str(extra) in err and "extra file" in err and "names no frame" in err


def test_wrong_size_is_named(s4_run, s4_toy, tmp_path, capsys):
    preds = _copy(s4_run[1], tmp_path)
    bad = sorted(preds.rglob("*.png"))[4]
    Image.open(bad).resize((50, 40)).save(bad)
    err = _refused("s4", s4_toy, preds, tmp_path, capsys)
    assert str(bad) in err and "wrong size 50x40" in err and "64x64" in err


def test_wrong_value_range_is_named(s4_run, s4_toy, tmp_path, capsys):
    preds = _copy(s4_run[1], tmp_path)
    png = sorted(preds.rglob("*.png"))[2]
    png.unlink()
    np.save(png.with_suffix(".npy"), np.full((64, 64), 2.0, dtype=np.float32))
    err = _refused("s4", s4_toy, preds, tmp_path, capsys)
    assert str(png.with_suffix(".npy")) in err and "wrong value range" in err


def test_wrong_class_range_is_named(avss_toy, tmp_path, capsys):
    from avsbench.data.datasets import build_dataset
    from avsbench.visualize import save_palette_mask

    data = build_dataset("avss", avss_toy, "test", image_size=64)
    preds = tmp_path / "preds"
    files = []
    for uid, label in data.rows:
        for k in range(data.annotated_frames(label)):
            files.append(save_palette_mask(np.zeros((64, 64), np.int64), preds / uid / f"{k}.png"))
    ids = np.zeros((64, 64), np.uint8)
    ids[3, 3] = 80
    Image.fromarray(ids, mode="L").save(files[1])
    err = _refused("avss", avss_toy, preds, tmp_path, capsys)
    assert str(files[1]) in err and "wrong class range" in err and "0..70" in err


def test_empty_folder_is_refused(s4_toy, tmp_path, capsys):
    preds = tmp_path / "preds"
    preds.mkdir()
    err = _refused("s4", s4_toy, preds, tmp_path, capsys)
    assert str(preds) in err and "empty" in err


def test_an_out_folder_with_other_files_is_refused(s4_run, s4_toy, tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "paper.tex").write_text("mine")
    status = _evaluate("s4", s4_toy, s4_run[1], out)
    err = capsys.readouterr().err
    assert status == 2 and "paper.tex" in err and "did not write" in err
    assert [p.name for p in out.iterdir()] == ["paper.tex"]
    # its own earlier output is replaced only with --overwrite
    assert _evaluate("s4", s4_toy, s4_run[1], tmp_path / "mine") == 0
    assert _evaluate("s4", s4_toy, s4_run[1], tmp_path / "mine") == 2
    assert _evaluate("s4", s4_toy, s4_run[1], tmp_path / "mine", "--overwrite") == 0


def test_probability_maps_of_the_model_give_every_s4_number(s4_run, s4_toy, tmp_path):
    """With the model's probabilities (sigmoid of its logits, as .npy) instead of the 0/255
    PNGs, every number equals test.sh's, the F-measures over 255 thresholds included."""
    from avsbench.data.datasets import build_dataset
    from avsbench.engine import evaluate as E
    from avsbench.engine.distributed import DistInfo
    from avsbench.engine.embeddings import AudioEmbedder
    from avsbench.models.backbones.vggish import build_vggish

    metrics, masks = s4_run
    weights = masks.parent.parent.parent / "s4_best.pth"
    ckpt = torch.load(weights, weights_only=True)
    cfg = registry.config_from_dict(ckpt["config"])
    model = build_model_for(cfg)
    model.load_state_dict(ckpt["model"])
    preds = tmp_path / "prob"

    def save_probabilities(batch, logits):  # logits [B*T, 1, S, S]
        prob = torch.sigmoid(logits.float()).reshape(len(batch["video_id"]), 5, *logits.shape[-2:])
        for i, (name, category) in enumerate(zip(batch["video_id"], batch["category"])):
            (preds / category / name).mkdir(parents=True)
            for k in range(5):
                np.save(preds / category / name / f"{name}_{k + 1}.npy", prob[i, k].numpy())

    data = build_dataset("s4", s4_toy, "test", image_size=64)
    loader = E.build_eval_loader(data, 4, DistInfo(), num_workers=0)
    E.evaluate(model, AudioEmbedder(build_vggish(cfg.model), "cpu"), loader, "s4",
               torch.device("cpu"), on_batch=save_probabilities)  # fmt: skip
    assert _evaluate("s4", s4_toy, preds, tmp_path / "eval") == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert metrics["fscore"] > 0
    for key, value in metrics.items():
        if isinstance(value, float) and not key.startswith("fpr"):  # fpr: test.sh --audio's
            assert scored[key] == pytest.approx(value, abs=1e-9), key


def test_ms3_ground_truth_as_predictions_scores_one(ms3_toy, tmp_path):
    """MS3's naming rule (<video_id>/<video_id>_<i>.png): the ground truth itself, as 0/255
    PNGs, scores 1 under every protocol."""
    from avsbench.data.datasets import build_dataset

    data = build_dataset("ms3", ms3_toy, "test", image_size=64)
    preds = tmp_path / "preds"
    for index, video_id in enumerate(data.rows):
        (preds / video_id).mkdir(parents=True)
        for k, mask in enumerate(np.asarray(data[index]["masks"])):
            _png_mask(preds / video_id / f"{video_id}_{k + 1}.png", mask)
    assert _evaluate("ms3", ms3_toy, preds, tmp_path / "eval") == 0
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    for key in ("miou", "miou_per_clip", "miou_dataset_ddeseg", "miou_dataset_cavp",
                "fscore_dataset_ddeseg", "fscore_dataset_cavp"):  # fmt: skip
        assert scored[key] == pytest.approx(1.0, abs=1e-6), key


def _png_mask(path: Path, mask: np.ndarray) -> None:
    Image.fromarray((mask > 0).astype(np.uint8) * 255, mode="L").save(path)


def test_sigterm_while_scoring_leaves_nothing(s4_run, s4_toy, tmp_path):
    """A real SIGTERM to a real `avsbench evaluate` blocked reading its manifest (a FIFO
    nobody writes): it stops with one line and leaves neither --out nor its temporary folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    fifo = tmp_path / "manifest.csv"
    os.mkfifo(fifo)
    out = tmp_path / "eval"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "avsbench.cli", "evaluate", str(s4_run[1]), "--setting", "s4",
         "--data_root", str(s4_toy), "--image_size", "64", "--manifest", str(fifo),
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".eval.tmp-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(tmp_path.glob(".eval.tmp-*")), "the command never started writing"
        time.sleep(2.0)  # it reads the dataset, then blocks opening the FIFO
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err, err  # 128 + SIGTERM
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.glob(".eval.*"))
