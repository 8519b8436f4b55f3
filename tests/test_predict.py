"""Tests of `avsbench predict`: made-up videos (PyAV) of moving shapes and tones.

Three kinds of model are used:
- stub models whose answer is known by construction (mask = where red dominates blue,
  gated by the loudness of the audio), to check sampling, windows, padding, geometry and
  audio alignment exactly and fast;
- an untrained small model saved as a project checkpoint (real loading / output paths);
- a small model trained for a few dozen steps to segment the sounding red square (slow).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import avsbench
from avsbench import cli, predict, visualize
from avsbench import config as C
from avsbench.data.audio import log_mel_examples
from avsbench.engine.checkpoint import make_checkpoint
from avsbench.media.folders import MANIFEST
from avsbench.models import registry
from avsbench.models.backbones.vggish import build_vggish
from avsbench.models.registry import build_model_for
from avsbench.models.tpavi.official_names import to_official_state_dict
from avsbench.predict import PredictError, Predictor, predict_video
from tests.video_fixtures import (
    BACKGROUND,
    BLUE,
    RED,
    TONE_HZ,
    grey_index_frame,
    make_video,
    no_leftovers,
    read_overlay,
    red_box,
)

IMAGE_SIZE = 64  # small model input: fast on a CPU


# ----------------------------------------------------------------------------- models


def small_config(setting: str) -> C.Config:
    cfg = registry.synthetic(registry.preset(setting))
    return C.override(cfg, {"data.image_size": IMAGE_SIZE, "model.arch.decoder_channels": 16})


def save_checkpoint(model: nn.Module, cfg: C.Config, path: Path) -> Path:
    ckpt = make_checkpoint(
        model.state_dict(), C.to_dict(cfg), epoch=1, best_miou=0.5, history=[], with_rng=False
    )
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for setting in ("s4", "avss"):
        torch.manual_seed(0)
        cfg = small_config(setting)
        out[setting] = save_checkpoint(build_model_for(cfg), cfg, folder / f"{setting}.pth")
    return out


class StubVGGish(nn.Module):
    """emb[:, 0] = loudness: the time-mean of the per-frame max log-mel; other dims 0."""

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:  # [N, 1, 96, 64] -> [N, 128]
        emb = torch.zeros(log_mel.shape[0], 128)
        emb[:, 0] = log_mel[:, 0].amax(dim=2).mean(dim=1)
        return emb


@dataclass
class StubOutput:
    logits: torch.Tensor  # [B*T, K, S, S], as AVSOutput's


class StubModel(nn.Module):
    """logits = (red - blue of the normalised frame) where the audio is loud, else -1.

    Its masks are known: the red object, only in seconds with sound. Records its inputs.
    """

    def __init__(self, threshold: float, num_classes: int = 1) -> None:
        super().__init__()
        self.threshold, self.num_classes, self.calls = threshold, num_classes, []

    def forward(self, frames, audio_emb, frame_valid=None):
        self.calls.append((frames.clone(), audio_emb.clone(), frame_valid))
        # red - blue: 2.9 on red, -0.33 on grey, -3.6 on blue; centred so that the mask edge
        # lies half-way between red and grey (an unbiased boundary)
        red = frames[:, :1] - frames[:, 2:3] - 1.3  # [BT, 1, S, S]
        loud = (audio_emb[:, 0] > self.threshold).float().view(-1, 1, 1, 1)
        fg = loud * red + (1 - loud) * -1.0
        if self.num_classes == 1:
            return StubOutput(logits=fg)
        logits = torch.zeros(frames.shape[0], self.num_classes, *frames.shape[2:])
        logits[:, 7:8] = fg  # class 7 ("bird") where the stub sees a sounding red object
        return StubOutput(logits=logits)


def loudness_threshold() -> float:
    """Midway between the stub loudness of silence and of a full second of tone."""
    t = np.arange(16000) / 16000
    tone = log_mel_examples((0.4 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32), 16000)
    silent = float(np.log(0.01))
    return (silent + float(tone[0].max(axis=1).mean())) / 2


def stub_predictor(setting: str = "s4") -> Predictor:
    cfg = small_config(setting)
    model = StubModel(loudness_threshold(), 71 if setting == "avss" else 1)
    info = {"weights": "stub", "checkpoint_format": "stub"}
    return Predictor(model, StubVGGish(), cfg, torch.device("cpu"), info)


def red_mask_stats(mask: np.ndarray, t: float, duration: float) -> tuple[float, float]:
    """(IoU with the red square at time t, distance of the mask centroid to its centre)."""
    h, w = mask.shape
    x0, y0, x1, y1 = red_box(t, duration, w, h)
    truth = np.zeros_like(mask, bool)
    truth[y0:y1, x0:x1] = True
    fg = mask.astype(bool)
    iou = (fg & truth).sum() / max((fg | truth).sum(), 1)
    if not fg.any():
        return float(iou), math.inf
    yy, xx = np.nonzero(fg)
    return float(iou), math.hypot(xx.mean() - (x0 + x1 - 1) / 2, yy.mean() - (y0 + y1 - 1) / 2)


# ----------------------------------------------------------------------------- stub models


def test_masks_follow_the_sounding_red_object_and_the_tone(tmp_path):
    """Stub model: mask = red object while the tone sounds. Checks geometry at the video's
    resolution, per-second audio alignment and the 15/16 frame choice together."""
    duration, fps, w, h = 7, 12, 200, 120
    sounding = [1, 0, 1, 1, 0, 1, 1]  # tone on/off per second
    loud = lambda t: np.asarray(sounding)[np.minimum(t.astype(int), duration - 1)]  # noqa: E731
    path = make_video(tmp_path / "v.mp4", duration, fps, w, h, audio_rate=22050, loud=loud)
    result = predict_video(path, stub_predictor("s4"), keep_frames=True, out_dir=tmp_path / "o")
    assert result.num_seconds == duration and len(result.masks) == duration
    # overlay.mp4: every source frame; the sampled frame of second i shows its own mask
    # (H.264 is lossy)
    overlay = read_overlay(tmp_path / "o" / "overlay.mp4")
    assert len(overlay) == duration * fps
    for i, (rgb, mask) in enumerate(zip(result.frames, result.masks)):
        frame = overlay[int(i * fps + 15 / 16 * fps)]
        expected = visualize.overlay(rgb, mask).astype(float)
        assert np.abs(frame.astype(float) - expected).mean() < 4.0
    for i, mask in enumerate(result.masks):
        assert mask.shape == (h, w) and mask.dtype == np.uint8
        entry = result.summary["seconds"][i]
        assert entry["frame_time"] == pytest.approx(int(i * fps + 15 / 16 * fps) / fps)
        if sounding[i]:
            iou, dist = red_mask_stats(mask, entry["frame_time"], duration)
            assert iou > 0.85 and dist < 2.0, (i, iou, dist)
        else:
            assert mask.sum() == 0, i
        assert entry["area_fraction"] == pytest.approx(mask.mean())
        assert entry["pixels"] == int(mask.sum())
    # the red square moves right: centroids strictly increase over the sounding seconds
    xs = [np.nonzero(m)[1].mean() for m, on in zip(result.masks, sounding) if on]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert result.out_dir == (tmp_path / "o").absolute()


NTSC = Fraction(30000, 1001)  # 29.97 frames per second


def contour_box(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the yellow mask outline an overlay frame shows (None: none)."""
    r, g, b = (rgb[..., c].astype(int) for c in range(3))
    ys, xs = np.nonzero((r > 180) & (g > 150) & ((r + g) // 2 - b > 80))
    if len(xs) < 4:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def on_screen_time(instant: Fraction, fps: Fraction, num_frames: int) -> Fraction:
    """Time of the frame on screen at `instant` (the last one after the end)."""
    return min(math.floor(instant * fps), num_frames - 1) / fps


@pytest.mark.parametrize("masks_per_second", [1, 5])
def test_overlay_runs_at_the_source_rate_with_its_sound(tmp_path, masks_per_second):
    """A 29.97 fps video with 5.1 AAC sound: overlay.mp4 has every source frame at the
    source's rate and the sound; each frame outlines the mask of its slot, which is the
    red square where it was at the slot's sampled frame (the stub model's answer)."""
    duration, w, h, n = 5 if masks_per_second == 1 else 3, 160, 96, masks_per_second
    source = make_video(tmp_path / "ntsc.mp4", duration, NTSC, w, h, audio_rate=48000, layout="5.1")
    out = tmp_path / "out"
    result = predict_video(source, stub_predictor("s4"), out_dir=out, masks_per_second=n)
    assert result.num_seconds == duration  # 150 frames last 5.005 s: still 5 seconds
    num_frames = round(duration * NTSC)
    with av.open(str(out / "overlay.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.average_rate == NTSC and audio.codec_context.channels == 6
        audio_seconds = float(audio.duration * audio.time_base)
        times = []
        for i, frame in enumerate(container.decode(video)):
            t = Fraction(frame.pts * video.time_base)
            times.append(t)
            slot = min(max(math.floor(n * t - Fraction(15, 16) * (n - 1)), 0), duration * n - 1)
            sampled = on_screen_time(Fraction(slot, n) + Fraction(15, 16), NTSC, num_frames)
            x0, y0, x1, y1 = red_box(float(sampled), duration, w, h)
            box = contour_box(frame.to_ndarray(format="rgb24"))
            assert box is not None, (i, t)
            assert np.abs(np.subtract(box, (x0, y0, x1, y1))).max() <= 2, (i, t, box)
    assert len(times) == num_frames and times[0] == 0 and times[-1] == (num_frames - 1) / NTSC
    with av.open(str(source)) as container:
        stream = container.streams.audio[0]
        assert abs(audio_seconds - float(stream.duration * stream.time_base)) <= 1024 / 48000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overlay"]["frames"] == num_frames
    assert summary["sampling"]["masks_per_second"] == n
    if n > 1:  # the per-second outputs are those of one mask per second
        once = predict_video(source, stub_predictor("s4"))
        for a, b in zip(once.masks, result.masks, strict=True):
            np.testing.assert_array_equal(a, b)


def video_timestamps(path: Path) -> list[Fraction]:
    """Presentation times (s after the first frame) of every frame, read back with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [Fraction(f.pts) * stream.time_base for f in container.decode(stream)]
    return [t - times[0] for t in times]


@pytest.mark.parametrize("audio_rate", [16000, None])
def test_variable_frame_rate_with_dropped_frames(tmp_path, checkpoints, capsys, audio_rate):
    """A 30 fps phone-like recording with 20% of its frames dropped (average rate 24 fps,
    gaps of 1/30 s among them): predict exits 0 and overlay.mp4 holds every source frame
    at its own timestamp (the encoder once used 1 / average rate: two frames got one
    timestamp and muxing failed with 'returned 22' after the whole model pass)."""
    rng = np.random.default_rng(0)
    dropped = set(rng.choice(np.arange(1, 90), 18, replace=False).tolist())
    times = [k / 30 for k in range(90) if k not in dropped]
    source = make_video(
        tmp_path / "vfr.mp4", 3, 30, 64, 48, audio_rate=audio_rate, frame_times=times
    )
    expected = video_timestamps(source)
    gaps = {round(float(b - a) * 30) for a, b in zip(expected, expected[1:])}
    assert len(expected) == len(times) == 72 and gaps == {1, 2}  # variable-rate indeed
    out = tmp_path / "out"
    args = ["predict", str(source), "--weights", str(checkpoints["s4"]), "--out", str(out)]
    code = cli.main(
        args + ["--device", "cpu", "--quiet"] + ([] if audio_rate else ["--allow-silence"])
    )
    assert code == 0, capsys.readouterr().err
    assert video_timestamps(out / "overlay.mp4") == expected
    assert json.loads((out / "summary.json").read_text())["overlay"]["frames"] == len(times)


def test_windows_are_padded_as_in_training(tmp_path):
    """7 s video: S4 (T=5) repeats the last second; AVSS (T=10) pads zeros, frame_valid 0."""
    seconds, fps = 7, 8
    path = make_video(
        tmp_path / "g.mp4",
        seconds,
        fps,
        32,
        32,
        audio_rate=16000,
        frame=grey_index_frame(32, 32, fps),
    )
    grey = lambda frames: [round(v) for v in frames[:, 0].mean(dim=(1, 2)).tolist()]  # noqa: E731

    s4 = stub_predictor("s4")
    predict_video(path, s4, batch_clips=1)
    calls = s4.model.calls
    assert len(calls) == 2
    first, second = (grey(c[0]) for c in calls)
    assert len(first) == 5 and len(second) == 5
    assert first[0] != first[1] and second[1] == second[2] == second[3] == second[4]
    assert calls[0][2] is None and calls[1][2] is None
    torch.testing.assert_close(calls[1][1][2:], calls[1][1][1:2].expand(3, 128))

    avss = stub_predictor("avss")
    result = predict_video(path, avss, batch_clips=1)
    ((frames, audio, valid),) = avss.model.calls
    assert frames.shape[0] == 10
    assert valid.tolist() == [1.0] * 7 + [0.0] * 3
    assert torch.all(frames[7:] == 0) and torch.all(audio[7:] == 0)
    assert result.num_seconds == 7
    # the stub paints class 7 where the red channel dominates: grey frames give nothing
    assert all(entry["classes"] == [] for entry in result.summary["seconds"])


def test_audio_track_shorter_than_the_video_continues_with_silence(tmp_path):
    path = make_video(tmp_path / "s.mp4", 7, 10, 64, 48, audio_rate=16000, audio_seconds=2.5)
    messages = []
    result = predict_video(path, stub_predictor("s4"), log=messages.append)
    assert result.num_seconds == 7
    assert [bool(m.any()) for m in result.masks[:2]] == [True, True]
    assert [bool(m.any()) for m in result.masks[3:]] == [False] * 4  # silence: not sounding
    assert any("audio track ends" in w for w in result.summary["warnings"])
    assert any("audio track ends" in m for m in messages)


def test_audio_starting_late_is_aligned_to_the_video(tmp_path):
    path = make_video(
        tmp_path / "late.mp4", 6, 10, 64, 48, audio_rate=16000, audio_seconds=4, audio_start=2
    )
    result = predict_video(path, stub_predictor("s4"))
    assert [bool(m.any()) for m in result.masks] == [False, False, True, True, True, True]
    assert result.summary["warnings"] == []


def test_batching_does_not_change_the_result(tmp_path):
    path = make_video(tmp_path / "b.mp4", 11, 10, 48, 40, audio_rate=16000)
    one = predict_video(path, stub_predictor("s4"), batch_clips=1)
    three = predict_video(path, stub_predictor("s4"), batch_clips=3)
    assert one.num_seconds == three.num_seconds == 11
    assert one.out_dir is None and one.paths == {}  # no out_dir: nothing written
    for a, b in zip(one.masks, three.masks):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- real checkpoints


@pytest.mark.slow
def test_s4_checkpoint_on_a_stereo_44k_video(tmp_path, checkpoints):
    path = make_video(tmp_path / "a.mp4", 7.5, 25, 320, 180, audio_rate=44100, channels=2)
    out = tmp_path / "out"
    result = predict_video(path, checkpoints["s4"], out_dir=out, device="cpu")
    assert result.out_dir == out.absolute() and result.num_seconds == 8
    pngs = sorted((out / "masks").iterdir())
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(8)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    for i, png in enumerate(pngs):
        img = Image.open(png)
        assert img.mode == "L" and img.size == (320, 180)
        arr = np.asarray(img)
        assert set(np.unique(arr)) <= {0, 255}
        np.testing.assert_array_equal(arr, result.masks[i] * 255)
        assert summary["seconds"][i]["area_fraction"] == pytest.approx((arr > 0).mean())
    frames = read_overlay(out / "overlay.mp4")
    assert len(frames) == 188 and frames[0].shape == (180, 320, 3)  # every source frame
    assert summary["video"] | {"path": None} == summary["video"] | {
        "path": None,
        "width": 320,
        "height": 180,
        "fps": 25.0,
        "duration": 7.52,  # round(7.5 * 25) = 188 frames of 0.04 s
        "decoded_frames": 188,
        "audio": {"sample_rate": 44100, "channels": 2, "codec": "aac"},
    }
    assert (
        summary["model"]["setting"] == "s4"
        and summary["model"]["checkpoint_format"] == "avsbench/1"
    )
    assert summary["model"]["epoch"] == 1 and summary["audio_source"] == "track"
    assert [s["frame_time"] for s in summary["seconds"]] == pytest.approx(
        [0.92 + i for i in range(7)] + [7.48]
    )
    assert no_leftovers(tmp_path) == ["out"]


@pytest.mark.slow
def test_avss_checkpoint_on_a_mono_8k_odd_sized_video(tmp_path, checkpoints):
    path = make_video(tmp_path / "b.mp4", 3, 10, 161, 97, audio_rate=8000, pix_fmt="yuv444p")
    out = tmp_path / "out"
    result = predict_video(path, checkpoints["avss"], out_dir=out, device="cpu", batch_clips=2)
    assert result.num_seconds == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["frames_per_clip"] == 10
    totals: dict[int, int] = {}
    for i in range(3):
        img = Image.open(out / "masks" / f"{i:05d}.png")
        assert img.mode == "P" and img.size == (161, 97)
        ids = np.asarray(img)
        np.testing.assert_array_equal(ids, result.masks[i])
        counts = np.bincount(ids.reshape(-1), minlength=71)
        listed = {c["id"]: c["pixels"] for c in summary["seconds"][i]["classes"]}
        assert listed == {c: int(counts[c]) for c in range(1, 71) if counts[c]}
        assert summary["seconds"][i]["area_fraction"] == pytest.approx((ids > 0).mean())
        for c, n in listed.items():
            totals[c] = totals.get(c, 0) + n
    assert {c["id"]: c["pixels"] for c in summary["classes_present"]} == totals
    frames = read_overlay(out / "overlay.mp4")
    assert len(frames) == 30 and frames[0].shape == (98, 162, 3)  # every frame, padded to even


@pytest.mark.slow
def test_official_state_dict_gives_the_same_masks(tmp_path):
    """An official flat state dict (its architecture read off the keys; a ResNet-18 needs
    --backbone, which the keys read as the published ResNet-50) predicts exactly like the
    project checkpoint of the same network; --setting is a check."""
    torch.manual_seed(1)
    cfg = C.override(
        registry.preset("s4"), {"model.backbone": "resnet18"}
    )  # preset: decoder 256, 224 px
    model = build_model_for(cfg)
    project = save_checkpoint(model, cfg, tmp_path / "project.pth")
    official = tmp_path / "official.pth"
    torch.save(to_official_state_dict(model), official)
    path = make_video(tmp_path / "c.mp4", 1, 10, 64, 48, audio_rate=16000)
    with pytest.raises(PredictError, match="does not fit"):
        predict_video(path, official)  # read as the published ResNet-50
    with pytest.raises(PredictError, match="holds no VGGish weights.*--vggish-weights"):
        predict_video(path, official, backbone="resnet18", device="cpu")  # never a random one
    # the random VGGish the project checkpoint was trained with, as a VGGish file
    vggish_file = tmp_path / "vggish.pth"
    torch.save(build_vggish(cfg.model).state_dict(), vggish_file)
    ours = predict_video(path, project, device="cpu")
    assert ours.summary["model"]["vggish"] == "random"  # recorded: trained with one
    official_run = dict(backbone="resnet18", device="cpu", vggish_weights=vggish_file)
    with pytest.raises(PredictError, match="--setting avss contradicts"):
        predict_video(path, official, setting="avss", backbone="resnet18", device="cpu")
    with pytest.raises(PredictError, match="another architecture"):
        predict_video(path, project, backbone="resnet50", device="cpu")
    theirs = predict_video(path, official, **official_run)
    checked = predict_video(path, official, setting="s4", **official_run)
    assert theirs.summary["model"]["checkpoint_format"] == "official"
    assert theirs.summary["model"]["vggish"] == "flag"
    assert theirs.summary["model"]["vggish_weights"] == str(vggish_file)
    assert theirs.summary["model"]["setting"] == "s4"
    np.testing.assert_array_equal(ours.masks[0], theirs.masks[0])
    np.testing.assert_array_equal(ours.masks[0], checked.masks[0])
    loaded = predict.load_predictor(official, setting="s4", **official_run)
    reference = model.state_dict()
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)


def test_python_api_is_exported_lazily():
    assert avsbench.predict_video is predict_video


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def good_video(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vid")
    return make_video(folder / "good.mp4", 2, 10, 64, 48, audio_rate=16000)


def expect_failure(tmp_path: Path, video, weights, match: str, **kwargs) -> None:
    with pytest.raises(PredictError, match=match):
        predict_video(video, weights, out_dir=tmp_path / "out", **kwargs)
    assert no_leftovers(tmp_path) == []


def test_not_a_video(tmp_path, checkpoints):
    bad = tmp_path / "text.mp4"
    bad.write_bytes(b"this is not a video " * 50)
    expect_failure(tmp_path, bad, checkpoints["s4"], "not a readable video")


def test_empty_and_missing_files(tmp_path, checkpoints):
    (tmp_path / "empty.mp4").write_bytes(b"")
    expect_failure(tmp_path, tmp_path / "empty.mp4", checkpoints["s4"], "empty")
    expect_failure(tmp_path, tmp_path / "missing.mp4", checkpoints["s4"], "no such file")


def test_a_folder_a_fifo_a_device_and_a_broken_link_are_named(tmp_path, checkpoints):
    """Not "no such file": what the path is instead (real folder, FIFO, /dev/zero, link)."""
    (tmp_path / "clips.mp4").mkdir()
    os.mkfifo(tmp_path / "pipe.mp4")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "gone.mp4")
    weights = checkpoints["s4"]
    fix = "; pass the path of a video file"
    for path, what in [
        (tmp_path / "clips.mp4", "a folder, not a video file"),
        (tmp_path / "pipe.mp4", "a named pipe (FIFO), not a regular file (predict seeks in the "
         "video)"),
        (Path("/dev/zero"), "a device, not a regular file"),
        (tmp_path / "link.mp4", f"a broken symbolic link (to {tmp_path / 'gone.mp4'})"),
    ]:  # fmt: skip
        with pytest.raises(PredictError) as err:
            predict_video(path, weights, out_dir=tmp_path / "out")
        assert str(err.value) == f"{path}: {what}{fix}"
    assert not (tmp_path / "out").exists()


def test_truncated_file(tmp_path, checkpoints, good_video):
    data = good_video.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: lost
    expect_failure(tmp_path, tmp_path / "cut.mp4", checkpoints["s4"], "not a readable video")


def test_truncated_faststart_file(tmp_path, checkpoints, good_video):
    fast = tmp_path / "fast.mp4"
    with (
        av.open(str(good_video)) as src,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as dst,
    ):
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    data = fast.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])  # index kept, data cut
    expect_failure(tmp_path, tmp_path / "cut.mp4", stub_predictor(), "truncated")


def test_zero_length_video(tmp_path, checkpoints):
    path = tmp_path / "zero.mkv"
    with av.open(str(path), "w", format="matroska") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono")
        af = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        af.sample_rate, af.pts = 16000, 0
        for packet in list(audio.encode(af)) + list(audio.encode(None)):
            container.mux(packet)
    expect_failure(tmp_path, path, stub_predictor(), "no decodable frame")


def test_no_video_stream(tmp_path, checkpoints):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        audio = container.add_stream("aac", rate=16000, layout="mono")
        af = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        af.sample_rate, af.pts = 16000, 0
        for packet in list(audio.encode(af)) + list(audio.encode(None)):
            container.mux(packet)
    expect_failure(tmp_path, path, checkpoints["s4"], "no video stream")


def test_huge_resolution_is_refused_with_the_override(tmp_path, checkpoints):
    w, h = 4112, 4104  # just above 4096 * 4096 pixels
    path = make_video(
        tmp_path / "huge.mp4", 0.1, 10, w, h, frame=lambda t: np.zeros((h, w, 3), np.uint8)
    )
    expect_failure(tmp_path, path, checkpoints["s4"], f"--max-pixels {w * h}")


def test_max_pixels_is_configurable(tmp_path, good_video):
    expect_failure(
        tmp_path, good_video, stub_predictor(), "exceed the limit of 1000", max_pixels=1000
    )
    assert predict_video(good_video, stub_predictor(), max_pixels=64 * 48).num_seconds == 2


def test_no_audio_track_fails_or_runs_with_silence(tmp_path):
    path = make_video(tmp_path / "mute.mp4", 2, 10, 64, 48)
    expect_failure(tmp_path, path, stub_predictor(), "--allow-silence")
    messages = []
    result = predict_video(
        path, stub_predictor(), out_dir=tmp_path / "out", allow_silence=True, log=messages.append
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["audio_source"] == "silence" and summary["video"]["audio"] is None
    assert any("silence" in w for w in summary["warnings"])
    assert any("no audio track" in m for m in messages)
    assert all(m.sum() == 0 for m in result.masks)  # the stub sees no sound


def test_bad_checkpoints(tmp_path, good_video, checkpoints):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 100)
    expect_failure(tmp_path, good_video, garbage, "cannot read --weights file")
    expect_failure(tmp_path, good_video, tmp_path / "none.pth", "--weights file not found")
    ckpt = torch.load(checkpoints["s4"], weights_only=True)
    wrong = tmp_path / "wrong.pth"
    torch.save(ckpt["model"], wrong)  # bare state dict of project names: which model is it?
    expect_failure(tmp_path, good_video, wrong, "not a checkpoint this project reads")
    expect_failure(tmp_path, good_video, checkpoints["s4"], "contradicts", setting="ms3")


def test_overwrite_never_deletes_what_predict_did_not_write(tmp_path, good_video):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(PredictError, match="keep.txt") as refusal:
            predict_video(good_video, stub_predictor(), out_dir=out, overwrite=overwrite)
        assert "--overwrite" not in str(refusal.value)  # it could not help
        assert (out / "keep.txt").read_text() == "mine" and no_leftovers(tmp_path) == ["out"]


def test_the_input_video_inside_out_survives(tmp_path, good_video):
    out = tmp_path / "out"
    out.mkdir()
    video = out / "clip.mp4"
    video.write_bytes(good_video.read_bytes())
    with pytest.raises(PredictError, match="clip.mp4"):
        predict_video(video, stub_predictor(), out_dir=out, overwrite=True)
    assert video.read_bytes() == good_video.read_bytes()
    assert sorted(os.listdir(out)) == ["clip.mp4"] and no_leftovers(tmp_path) == ["out"]


def test_out_dot_with_unrelated_files_is_refused(tmp_path, good_video, monkeypatch):
    work = tmp_path / "work"
    (work / "notes").mkdir(parents=True)
    (work / "a.txt").write_text("a")
    (work / "notes" / "b.txt").write_text("b")
    monkeypatch.chdir(work)
    with pytest.raises(PredictError, match=r"a\.txt, notes/"):
        predict_video(good_video, stub_predictor(), out_dir=".", overwrite=True)
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == [
        "a.txt",
        "notes",
        "notes/b.txt",
    ]
    assert sorted(os.listdir(tmp_path)) == ["work"]  # no temporary folder left next to it


def test_an_earlier_output_is_replaced_with_overwrite(tmp_path, good_video):
    out = tmp_path / "out"
    longer = make_video(tmp_path / "three.mp4", 3, 10, 64, 48, audio_rate=16000)
    predict_video(longer, stub_predictor(), out_dir=out)
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:05d}.png" for i in range(3)]
    with pytest.raises(PredictError, match="earlier output of predict.*--overwrite"):
        predict_video(good_video, stub_predictor(), out_dir=out)
    predict_video(good_video, stub_predictor(), out_dir=out, overwrite=True)  # a 2 s video
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST,
        "masks",
        "overlay.mp4",
        "summary.json",
    ]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png"]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["files"] == [
        "masks/00000.png",
        "masks/00001.png",
        "overlay.mp4",
        "summary.json",
    ]
    assert json.loads((out / "summary.json").read_text())["num_seconds"] == 2
    assert no_leftovers(tmp_path) == ["out"]


def cli_error_line(capsys, args: list[str]) -> str:
    """Run `avsbench predict ARGS`; assert exit status 2 and one line on stderr; return it."""
    code = cli.main(["predict", *args, "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    (line,) = err.strip().splitlines()
    return line


def test_unwritable_out_is_one_line(tmp_path, good_video, checkpoints, capsys):
    """--out on a real read-only file system, or below a regular file (ENOTDIR): exit 2 and
    one line naming the folder (the CLI), PredictError (Python); nothing left behind."""
    from tests.mounts import tmpfs

    (tmp_path / "notes.txt").write_text("a file, not a folder")
    below_a_file = tmp_path / "notes.txt" / "out"
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as read_only:
        cases = [(read_only / "out", "read-only file system"), (below_a_file, "is a file")]
        for out, why in cases:
            line = cli_error_line(
                capsys, [str(good_video), "--weights", str(checkpoints["s4"]), "--out", str(out)]
            )
            assert line.startswith(f"error: {out}: cannot write the output (") and why in line
            with pytest.raises(PredictError, match=f"cannot write the output.*{why}"):
                predict_video(good_video, stub_predictor(), out_dir=out)
        assert os.listdir(read_only) == []
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "ro"]


@pytest.mark.parametrize("free_bytes", [0, 20_000])  # full at the first mask / the overlay
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, good_video, checkpoints, capsys,
                                                  free_bytes):  # fmt: skip
    """A real full tmpfs (1 MB, filled to `free_bytes` free): exit 2, one line saying the
    disk is full (CLI), PredictError (Python); the temporary folder is removed."""
    from tests.mounts import fill, tmpfs

    with tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk, free_bytes)
        out = disk / "out"
        line = cli_error_line(
            capsys, [str(good_video), "--weights", str(checkpoints["s4"]), "--out", str(out)]
        )
        assert line.startswith(f"error: {out}: cannot write the output (disk full)")
        with pytest.raises(PredictError, match="cannot write the output \\(disk full\\)"):
            predict_video(good_video, stub_predictor(), out_dir=out)
        assert os.listdir(disk) == ["filler.bin"]


def test_output_folder_gets_the_usual_permissions(tmp_path, good_video):
    old = os.umask(0o027)
    try:
        predict_video(good_video, stub_predictor(), out_dir=tmp_path / "out")
    finally:
        os.umask(old)
    for folder in (tmp_path / "out", tmp_path / "out" / "masks"):
        assert folder.stat().st_mode & 0o777 == 0o750  # 0777 & ~umask, not mkdtemp's 0700
    assert (tmp_path / "out" / "summary.json").stat().st_mode & 0o777 == 0o640


def test_device_cuda_without_a_gpu_is_a_one_line_error(tmp_path, good_video, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PredictError, match="no CUDA GPU"):
        predict_video(good_video, tmp_path / "never-read.pth", device="cuda")
    args = ["predict", str(good_video), "--weights", str(tmp_path / "x.pth"), "--device", "cuda"]
    assert cli.main(args + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda: no CUDA GPU") and err.count("\n") == 1
    assert no_leftovers(tmp_path) == []


def test_ctrl_c_removes_the_temporary_folder(tmp_path):
    path = make_video(tmp_path / "long.mp4", 12, 5, 32, 32, audio_rate=16000)

    def interrupt(message: str) -> None:
        if message.startswith("predicted"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_video(path, stub_predictor(), out_dir=tmp_path / "out", log=interrupt)
    assert no_leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- command line


@pytest.mark.slow
def test_cli(tmp_path, checkpoints, good_video, capsys):
    out = tmp_path / "out"
    code = cli.main(
        [
            "predict",
            str(good_video),
            "--weights",
            str(checkpoints["s4"]),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert len(list((out / "masks").iterdir())) == 2 and (out / "overlay.mp4").is_file()
    assert "2 masks" in capsys.readouterr().err
    code = cli.main(["predict", str(tmp_path / "nothing.mp4"), "--weights", str(checkpoints["s4"])])
    assert code == 2 and "error: " in capsys.readouterr().err


# ----------------------------------------------------------------------------- a trained model


def train_red_square_segmenter(steps: int = 50, seed: int = 0) -> tuple[nn.Module, C.Config]:
    """Train the small S4 model to segment the sounding red object among red / blue shapes.

    Scenes of random positions and sizes on the grey background, audio = the VGGish
    embedding of the tone (the red object is the one that sounds). BCE with pos_weight 5
    (the object covers ~10% of the frame) plus a soft Dice term, which keeps the first steps
    from settling on "all background".
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = C.override(small_config("s4"), {"model.arch.decoder_channels": 32})
    model = build_model_for(cfg)
    t = np.arange(16000) / 16000
    tone = (0.4 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    with torch.no_grad():
        emb = build_vggish(cfg.model)(torch.from_numpy(log_mel_examples(tone, 16000))[:, None])[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    s = IMAGE_SIZE
    yy, xx = np.mgrid[:s, :s]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        images, masks = [], []
        for _ in range(10):  # 2 clips of 5 frames
            img = np.empty((s, s, 3), np.uint8)
            img[:] = BACKGROUND
            bx, by, rx, ry = rng.uniform(6, s - 6, 4)
            br, half_w, half_h = rng.uniform(6, 12, 3)
            img[(xx - bx) ** 2 + (yy - by) ** 2 <= br * br] = BLUE
            red = (np.abs(xx - rx) <= half_w) & (np.abs(yy - ry) <= half_h)
            img[red] = RED
            images.append(img)
            masks.append(red)
        frames = (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) / 255.0 - mean) / std
        target = torch.from_numpy(np.stack(masks)).float()
        logits = model(frames, emb.expand(10, 128), None).logits[:, 0]
        prob = logits.sigmoid()
        dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
        loss = dice + nn.functional.binary_cross_entropy_with_logits(
            logits, target, pos_weight=torch.tensor(3.0)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), cfg


@pytest.mark.slow
def test_trained_model_tracks_the_sounding_red_square(tmp_path):
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    model, cfg = train_red_square_segmenter()
    ckpt = save_checkpoint(model, cfg, tmp_path / "trained.pth")
    duration, w, h = 6, 192, 144
    path = make_video(tmp_path / "track.mp4", duration, 10, w, h, audio_rate=22050)
    out = tmp_path / "out"
    result = predict_video(path, ckpt, device="cpu", out_dir=out, masks_per_second=2)
    assert result.num_seconds == duration
    xs = []
    for i, mask in enumerate(result.masks):
        frame_time = result.summary["seconds"][i]["frame_time"]
        iou, dist = red_mask_stats(mask, frame_time, duration)
        assert iou > 0.5 and dist < 8.0, (i, iou, dist)
        xs.append(np.nonzero(mask)[1].mean())
    assert xs == sorted(xs)  # the mask moves right with the red square
    # overlay.mp4, a person's view: every frame at 10 fps with the sound, and on every
    # frame the outline of the mask of its slot (2 per second) lies on the red square as
    # it was at that slot's sampled frame
    with av.open(str(out / "overlay.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.average_rate == 10 and audio.codec_context.sample_rate == 22050
        assert abs(float(audio.duration * audio.time_base) - duration) < 1024 / 22050
        frames = list(container.decode(video))
    assert len(frames) == duration * 10
    for frame in frames:
        t = Fraction(frame.pts * video.time_base)
        slot = min(max(math.floor(2 * t - Fraction(15, 16)), 0), 2 * duration - 1)
        sampled = on_screen_time(Fraction(slot, 2) + Fraction(15, 16), Fraction(10), 60)
        x0, y0, x1, y1 = red_box(float(sampled), duration, w, h)
        box = contour_box(frame.to_ndarray(format="rgb24"))
        assert box is not None, t
        inter = max(0, min(box[2], x1) - max(box[0], x0)) * max(
            0, min(box[3], y1) - max(box[1], y0)
        )
        union = (box[2] - box[0]) * (box[3] - box[1]) + (x1 - x0) * (y1 - y0) - inter
        assert inter / union > 0.5, (t, box, (x0, y0, x1, y1))


def test_sigterm_removes_the_temporary_folder(tmp_path, checkpoints):
    """A real SIGTERM (timeout, SLURM, docker stop) to a real `avsbench predict` process
    stops it as Ctrl-C does: nothing is left of --out, status 143."""
    import signal
    import subprocess
    import sys
    import time

    path = make_video(tmp_path / "long.mp4", 20, 5, 32, 32, audio_rate=16000)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "avsbench.cli", "predict", str(path), "--weights",
         str(checkpoints["s4"]), "--out", str(tmp_path / "out"), "--device", "cpu"],
        cwd=Path(avsbench.__file__).parents[1], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    end = time.monotonic() + 120
    while not any(p.startswith(".out.tmp-") for p in os.listdir(tmp_path)):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < end
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "interrupted (SIGTERM)"
    assert no_leftovers(tmp_path) == []
