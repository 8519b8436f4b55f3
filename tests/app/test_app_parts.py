"""The parts of `avsbench app` under the page: the folders it may read (real files and
symbolic links), the threshold and class choice applied to the logits (against an
independent computation), one prediction as the page runs it (against predict itself),
the downloads, the timeline, and the command line's one-line refusals."""

from __future__ import annotations

import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avsbench import cli
from avsbench.app import folders, results
from avsbench.engine import step
from avsbench.errors import InputError, PredictError
from avsbench.models.contract import AVSOutput
from avsbench.predict import load_predictor, predict_video
from tests.app.app_fixtures import (
    VIDEO_SECONDS,
    make_clip,
    save_tiny_checkpoint,
    tiny_config,
)

# ----------------------------------------------------------------------------- folders


def test_checkpoints_listed_are_those_inside_the_models_folder(tmp_path):
    models, outside = tmp_path / "models", tmp_path / "elsewhere"
    (models / "sub").mkdir(parents=True)
    outside.mkdir()
    for name in ("a.pth", "b.pt", "sub/c.safetensors", "notes.txt", ".hidden.pth"):
        (models / name).write_bytes(b"x")
    (outside / "secret.pth").write_bytes(b"x")
    (models / "link_out.pth").symlink_to(outside / "secret.pth")  # leads outside: not listed
    (models / "link_in.pth").symlink_to(models / "a.pth")  # stays inside: listed
    (models / "folder.pth").mkdir()  # not a file
    listed = folders.list_checkpoints(models)
    assert [name for name, _ in listed] == ["a.pth", "b.pt", "link_in.pth", "sub/c.safetensors"]
    assert all(path == models / name for name, path in listed)
    assert folders.list_checkpoints(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../elsewhere/secret.pth", "only inside"),
        ("link_out.pth", "only inside"),
        ("sub/../../elsewhere/secret.pth", "only inside"),
        ("missing.pth", "no such checkpoint"),
        ("", "no checkpoint chosen"),
    ],
)
def test_a_checkpoint_outside_the_models_folder_is_refused(tmp_path, name, message):
    models, outside = tmp_path / "models", tmp_path / "elsewhere"
    (models / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.pth").write_bytes(b"x")
    (models / "link_out.pth").symlink_to(outside / "secret.pth")
    with pytest.raises(InputError, match=message) as refusal:
        folders.resolve_inside(models, name, "checkpoint")
    assert "\n" not in str(refusal.value)
    absolute = str(outside / "secret.pth")  # an absolute name replaces the folder: refused
    with pytest.raises(InputError, match="only inside"):
        folders.resolve_inside(models, absolute, "checkpoint")


def test_an_upload_path_outside_the_apps_folder_is_refused(tmp_path):
    (tmp_path / "app" / "hash").mkdir(parents=True)
    (tmp_path / "app" / "hash" / "clip.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"x")
    inside = str(tmp_path / "app" / "hash" / "clip.mp4")
    assert folders.resolve_inside(tmp_path / "app", inside, "upload") == Path(inside).resolve()
    with pytest.raises(InputError, match="uploads only inside"):
        folders.resolve_inside(tmp_path / "app", str(tmp_path / "secret.mp4"), "upload")


def test_a_checkpoint_inside_resolves_to_its_real_path(tmp_path):
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "sub" / "x.pth").write_bytes(b"x")
    (tmp_path / "m" / "alias.pth").symlink_to(tmp_path / "m" / "sub" / "x.pth")
    real = (tmp_path / "m" / "sub" / "x.pth").resolve()
    assert folders.resolve_inside(tmp_path / "m", "sub/x.pth", "checkpoint") == real
    assert folders.resolve_inside(tmp_path / "m", "alias.pth", "checkpoint") == real


def test_the_vggish_file_is_not_a_model_but_is_used_for_those_that_need_it(tmp_path):
    (tmp_path / "a.pth").write_bytes(b"x")
    assert folders.vggish_file(tmp_path, None) is None
    (tmp_path / folders.VGGISH_FILE).write_bytes(b"x")
    assert [name for name, _ in folders.list_checkpoints(tmp_path)] == ["a.pth"]
    assert folders.vggish_file(tmp_path, None) == tmp_path / folders.VGGISH_FILE
    assert folders.vggish_file(tmp_path, Path("/x/v.pth")) == Path("/x/v.pth")


@pytest.mark.slow
def test_a_checkpoint_without_its_vggish_loads_with_the_models_folders(tmp_path):
    """A checkpoint whose VGGish file is gone (trained elsewhere) fails with predict's
    message alone, and loads with the VGGish file the app was given."""
    from avsbench.models.backbones.vggish import build_vggish

    gone = tmp_path / "gone" / "vggish-10086976.pth"
    checkpoint = save_tiny_checkpoint(
        "s4", tmp_path / "m.pth", **{"model.vggish_weights": str(gone)}
    )
    with pytest.raises(PredictError, match="VGGish weights not found"):
        results.ModelCache("cpu").get(checkpoint)
    vggish = tmp_path / "models" / folders.VGGISH_FILE
    vggish.parent.mkdir()
    torch.save(build_vggish(tiny_config("s4").model).state_dict(), vggish)
    predictor = results.ModelCache("cpu", vggish).get(checkpoint)
    assert predictor.info["vggish"] == "flag" and predictor.info["vggish_weights"] == str(vggish)


def test_videos_listed(tmp_path):
    for name in ("b.MP4", "a.mkv", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert folders.list_videos(tmp_path) == ["a.mkv", "b.MP4"]
    assert folders.list_videos(None) == []


# ----------------------------------------------------------------------------- the logits


class FixedLogits(torch.nn.Module):
    """A model that answers the logits it was given, whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, *args, **kwargs) -> AVSOutput:
        return AVSOutput(logits=self.logits.clone())


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_threshold_gives_sigmoid_above_threshold(threshold):
    torch.manual_seed(1)
    logits = 3 * torch.randn(4, 1, 16, 16)
    shown = results.ShownMasks(FixedLogits(logits), semantic=False, threshold=threshold, hidden=())
    size = (37, 53)  # predict upsamples bilinearly to the video's size
    masks = step.predicted_masks(shown().logits, semantic=False, size=size)
    upsampled = torch.nn.functional.interpolate(
        logits, size=size, mode="bilinear", align_corners=False
    )
    expected = (torch.sigmoid(upsampled[:, 0]) > threshold).numpy().astype(np.uint8)
    assert (masks != expected).mean() < 1e-4  # equal but for float rounding at the edge
    assert masks.sum() > 0 and (1 - masks).sum() > 0
    if threshold == 0.5:  # untouched: predict's own masks
        assert torch.equal(shown().logits, logits)


def test_hidden_classes_become_background():
    torch.manual_seed(2)
    logits = torch.randn(3, 71, 8, 8)
    logits[:, 5] += 1.5  # class 5 wins often
    hidden = [5, 9, 40]
    shown = results.ShownMasks(FixedLogits(logits), semantic=True, threshold=0.5, hidden=hidden)
    masks = step.predicted_masks(shown().logits, semantic=True)
    original = logits.argmax(1).numpy()
    expected = np.where(np.isin(original, hidden), 0, original)
    assert np.isin(original, hidden).sum() > 10
    np.testing.assert_array_equal(masks, expected)
    upsampled = step.predicted_masks(shown().logits, semantic=True, size=(30, 30))
    assert not np.isin(upsampled, hidden).any()  # after bilinear upsampling too


def test_a_threshold_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        results.ShownMasks(torch.nn.Identity(), semantic=False, threshold=1.0, hidden=())


# ----------------------------------------------------------------------------- one run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app_parts")
    checkpoint = save_tiny_checkpoint("s4", folder / "tiny_s4.pth")
    return load_predictor(checkpoint, device="cpu"), make_clip(folder / "clip.mp4")


def read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        return {n: np.asarray(Image.open(archive.open(n))) for n in sorted(archive.namelist())}


@pytest.mark.slow
def test_run_at_0_5_gives_predicts_masks_and_a_lower_threshold_more(tmp_path, tiny):
    predictor, clip = tiny
    reference = predict_video(clip, predictor, out_dir=tmp_path / "reference")
    seen: list[int] = []
    run = results.run_prediction(clip, predictor, tmp_path / "runs", progress=seen.append)
    assert seen and seen[-1] == VIDEO_SECONDS
    masks = read_zip(run.masks_zip)
    assert list(masks) == [f"masks/{s:05d}.png" for s in range(VIDEO_SECONDS)]
    for (name, mask), own in zip(masks.items(), reference.masks, strict=True):
        np.testing.assert_array_equal(mask > 0, own > 0, err_msg=name)
    summary = json.loads(run.summary_path.read_text())
    assert summary["app"] == {"threshold": 0.5} and summary == run.summary
    assert run.overlay is not None and run.overlay.stat().st_size > 0
    assert run.folder.parent == tmp_path / "runs"

    # the untrained model's sigmoid is about 0.412 everywhere: nothing at 0.5, all at 0.4
    loose = results.run_prediction(clip, predictor, tmp_path / "runs", threshold=0.4)
    looser = read_zip(loose.masks_zip)
    assert all(((masks[n] > 0) <= (looser[n] > 0)).all() for n in masks)  # a superset
    assert sum((m > 0).sum() for m in looser.values()) > sum((m > 0).sum() for m in masks.values())
    assert loose.summary["sampling"]["mask"] == "sigmoid(bilinear logit) > 0.4"
    rows = results.timeline_rows(loose.summary)
    assert [r["percent"] for r in rows] == [
        pytest.approx(100 * (looser[n] > 0).mean()) for n in looser
    ]
    results.remove_old_runs(tmp_path / "runs", keep=1)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [loose.folder.name]


@pytest.mark.slow
def test_avss_run_shows_only_the_chosen_classes(tmp_path):
    checkpoint = save_tiny_checkpoint("avss", tmp_path / "avss.pth")
    predictor = load_predictor(checkpoint, device="cpu")
    clip = make_clip(tmp_path / "clip.mp4")
    every = results.run_prediction(clip, predictor, tmp_path / "runs")
    found = [c["name"] for c in every.summary["classes_present"]]
    assert len(found) >= 2 and every.summary["app"] == {"classes_shown": "all"}
    kept = found[1]  # a class that is not the largest
    only = results.run_prediction(clip, predictor, tmp_path / "runs", shown_classes=[kept])
    assert [c["name"] for c in only.summary["classes_present"]] == [kept]
    assert only.legend == [(kept, dict(results.legend(every.summary))[kept])]
    everything, chosen = read_zip(every.masks_zip), read_zip(only.masks_zip)
    kept_id = next(c["id"] for c in every.summary["classes_present"] if c["name"] == kept)
    for name in everything:  # the kept class's pixels stay (but a few on its borders with
        # hidden classes: bilinear upsampling of the changed logits), the rest is background
        was, now = everything[name] == kept_id, chosen[name] == kept_id
        assert (now <= was).all() and now.sum() >= 0.98 * was.sum()
        assert set(np.unique(chosen[name])) <= {0, kept_id}


@pytest.mark.slow
def test_a_video_without_sound_is_refused_in_one_line(tmp_path, tiny):
    predictor, _ = tiny
    mute = make_clip(tmp_path / "mute.mp4", sound=False)
    with pytest.raises(PredictError, match="no audio track") as refusal:
        results.run_prediction(mute, predictor, tmp_path / "runs")
    line = results.short_path_messages(str(refusal.value), mute)
    assert line.startswith("mute.mp4: ") and "\n" not in line and str(tmp_path) not in line


# ----------------------------------------------------------------------------- what is shown


AVSS_SUMMARY = {
    "num_seconds": 2,
    "seconds": [
        {
            "second": 0,
            "area_fraction": 0.5,
            "classes": [{"id": 1, "name": "accordion", "area_fraction": 0.5, "pixels": 50}],
        },
        {
            "second": 1,
            "area_fraction": 0.3,
            "classes": [
                {"id": 7, "name": "bird", "area_fraction": 0.2, "pixels": 20},
                {"id": 1, "name": "accordion", "area_fraction": 0.1, "pixels": 10},
            ],
        },
    ],
    "classes_present": [
        {"id": 1, "name": "accordion", "seconds": 2, "pixels": 60},
        {"id": 7, "name": "bird", "seconds": 1, "pixels": 20},
    ],
}


def test_avss_timeline_and_legend():
    rows = results.timeline_rows(AVSS_SUMMARY)
    assert rows == [
        {"second": 0, "series": "accordion", "percent": 50.0},
        {"second": 0, "series": "bird", "percent": 0.0},
        {"second": 1, "series": "accordion", "percent": 10.0},
        {"second": 1, "series": "bird", "percent": 20.0},
    ]
    # palette: class 1 -> (128, 0, 0), class 7 -> (128, 128, 128) (VOC bit interleave)
    assert results.legend(AVSS_SUMMARY) == [("accordion", "#800000"), ("bird", "#808080")]
    html = results.legend_html([("<b>", "#800000")])
    assert "&lt;b&gt;" in html and "<b>" not in html
    figure = results.timeline_figure(rows, results.legend(AVSS_SUMMARY), 2)
    bars = figure.axes[0].patches
    assert [round(b.get_height(), 6) for b in bars] == [50.0, 10.0, 0.0, 20.0]
    assert [b.get_y() for b in bars] == [0.0, 0.0, 50.0, 10.0]  # stacked per second


def test_zip_round_trip(tmp_path):
    pngs = []
    for s in range(3):
        pngs.append(tmp_path / f"{s:05d}.png")
        Image.fromarray(np.full((4, 5), s, np.uint8)).save(pngs[-1])
    archive = results.zip_masks(pngs, tmp_path / "out.zip")
    read = read_zip(archive)
    assert [int(m[0, 0]) for m in read.values()] == [0, 1, 2]


# ----------------------------------------------------------------------------- command line


def test_a_port_in_use_is_refused_in_one_line(tmp_path, capsys):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        status = cli.main(["app", "--port", str(port), "--models_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert f"--port {port}: cannot serve on 127.0.0.1:{port}" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port 70000: must be 1..65535"),
        (["--video_dir", "missing"], "--video_dir missing: not a folder"),
        (["--device", "nonsense"], "--device nonsense: not a torch device"),
        (["--max_upload_mb", "0"], "--max_upload_mb 0: must be >= 1"),
        (["--vggish_weights", "no.pth"], "--vggish_weights no.pth: no such file"),
    ],
)
def test_bad_flags_are_refused_in_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    status = cli.main(["app", *args])
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err


def test_a_zoo_file_is_used_only_once_verified_and_rejected_files_are_not_offered(tmp_path):
    from avsbench.zoo import ZOO, ZooError

    entry = ZOO[0]
    (tmp_path / entry.local_name).write_bytes(b"not what the zoo verified")
    (tmp_path / "mine.pth").write_bytes(b"x")
    (tmp_path / "rejected").mkdir()
    (tmp_path / "rejected" / "bad.pth").write_bytes(b"x")
    names = [name for name, _ in folders.list_checkpoints(tmp_path)]
    assert names == sorted([entry.local_name, "mine.pth"])
    assert folders.checkpoint_file(tmp_path, "mine.pth") == (tmp_path / "mine.pth").resolve()
    with pytest.raises(ZooError, match=f"avsbench download {entry.name}"):
        folders.checkpoint_file(tmp_path, entry.local_name)
