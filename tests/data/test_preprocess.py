"""Raw video -> official layout, on short mp4 files whose frame colour encodes the index."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avsbench import preprocess
from avsbench.commands import preprocess as preprocess_command
from avsbench.data import audio
from avsbench.data.datasets import MS3Dataset, S4Dataset
from avsbench.data.layouts import AVSDataError

av = pytest.importorskip("av")

TONE_HZ = 1000.0


def colour_of(n: int) -> tuple[int, int, int]:
    """Frame n is painted (12 + 25 (n % 10), 12 + 25 (n // 10), 128)."""
    return 12 + 25 * (n % 10), 12 + 25 * (n // 10), 128


def index_of(rgb: np.ndarray) -> int:
    """Inverse of colour_of from the mean colour of the image centre."""
    r, g, _ = rgb[80:144, 80:144].reshape(-1, 3).mean(axis=0)
    return int(round((r - 12) / 25)) + 10 * int(round((g - 12) / 25))


def make_video(path: Path, seconds: float, fps: int, *, with_audio: bool = True) -> None:
    """mp4 (mpeg4 video 64x48, aac stereo 44.1 kHz tone) of `seconds` at `fps`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.options = {"qscale": "1"}
        if with_audio:
            sound = container.add_stream("aac", rate=44100)
            sound.layout = "stereo"
        for n in range(int(seconds * fps)):
            img = np.empty((48, 64, 3), np.uint8)
            img[:] = colour_of(n)
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if with_audio:
            total = int(seconds * 44100)
            t = np.arange(total) / 44100
            wave = (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
            for start in range(0, total, 1024):
                chunk = np.stack([wave[start : start + 1024]] * 2)  # [2, n] planar
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 44100, start
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)


def test_frame_indices_formula():
    assert preprocess.frame_indices(10, 5) == [9, 19, 29, 39, 49]
    assert preprocess.frame_indices(29.97, 5) == [28, 58, 88, 118, 148]  # fps rounds to 30
    assert preprocess.frame_indices(10, 5, num_frames=35) == [9, 19, 29, 34, 34]
    assert preprocess.clip_seconds(0) == 5 and preprocess.clip_seconds(5) == 5
    assert preprocess.clip_seconds(7) == 3


@pytest.fixture
def s4_raw(tmp_path: Path) -> Path:
    root = tmp_path / "Single-source"
    raw = root / "s4_data/raw_videos"
    make_video(raw / "train/dog_barking/longOne0001.mp4", 6, 10)  # 60 frames
    make_video(raw / "val/race_car/shortOne001.mp4", 4, 10)  # 40 frames: clamped
    make_video(raw / "test/race_car/lateStart01.mp4", 3, 10)  # start 7 -> 3 frames
    (root / "s4_meta_data.csv").write_text(
        "name,start,category,split\n"
        "longOne0001,0,dog_barking,train\n"
        "shortOne001,2,race_car,val\n"
        "lateStart01,7,race_car,test\n"
    )
    return root


def _indices(folder: Path, stem: str, count: int) -> list[int]:
    from PIL import Image

    out = []
    for i in range(1, count + 1):
        image = np.asarray(Image.open(folder / f"{stem}_{i}.png").convert("RGB"))
        assert image.shape == (224, 224, 3)
        out.append(index_of(image))
    return out


def test_s4_preprocess(s4_raw):
    report = preprocess.preprocess("s4", s4_raw, progress=False)
    assert len(report["done"]) == 3 and not report["failed"]
    frames = s4_raw / "s4_data/visual_frames"
    assert _indices(frames / "train/dog_barking/longOne0001", "longOne0001", 5) == [
        9,
        19,
        29,
        39,
        49,
    ]
    assert _indices(frames / "val/race_car/shortOne001", "shortOne001", 5) == [9, 19, 29, 39, 39]
    late = frames / "test/race_car/lateStart01"
    assert _indices(late, "lateStart01", 3) == [9, 19, 29]
    assert not (late / "lateStart01_4.png").exists()

    wav = s4_raw / "s4_data/audio_wav/train/dog_barking/longOne0001.wav"
    info = sf.info(str(wav))
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert abs(info.frames - 6 * 16000) < 0.05 * 16000
    samples, _ = sf.read(str(wav), dtype="float64")
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 16000 / len(samples) - TONE_HZ) < 5

    pkl = s4_raw / "s4_data/audio_log_mel/train/dog_barking/longOne0001.pkl"
    from_pkl = audio.load_log_mel_pkl(pkl)
    assert from_pkl.shape == (5, 1, 96, 64)
    np.testing.assert_array_equal(from_pkl, np.load(pkl.with_suffix(".npy")))
    np.testing.assert_array_equal(from_pkl[:, 0], audio.wav_to_log_mel(wav)[:5])
    # 4 s of audio -> 4 examples, the last one repeated to 5
    short = audio.load_log_mel_pkl(s4_raw / "s4_data/audio_log_mel/val/race_car/shortOne001.pkl")
    np.testing.assert_array_equal(short[4], short[3])

    # the frames and audio read back through the dataset (masks are the annotators' part)
    gt = s4_raw / "s4_data/gt_masks/train/dog_barking/longOne0001"
    gt.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.zeros((224, 224), np.uint8)).save(gt / "longOne0001_1.png")
    sample = S4Dataset(s4_raw, "train")[0]
    np.testing.assert_array_equal(sample["audio"].numpy(), from_pkl)


def test_skip_done_and_overwrite(s4_raw):
    preprocess.preprocess("s4", s4_raw, splits=("train",), progress=False)
    png = s4_raw / "s4_data/visual_frames/train/dog_barking/longOne0001/longOne0001_1.png"
    stamp = png.stat().st_mtime_ns
    report = preprocess.preprocess("s4", s4_raw, splits=("train",), progress=False)
    assert report["skipped"] == [s4_raw / "s4_data/raw_videos/train/dog_barking/longOne0001.mp4"]
    assert png.stat().st_mtime_ns == stamp
    report = preprocess.preprocess("s4", s4_raw, splits=("train",), overwrite=True, progress=False)
    assert len(report["done"]) == 1


def test_ms3_preprocess_and_cli(tmp_path, capsys):
    root = tmp_path / "Multi-sources"
    make_video(root / "ms3_data/raw_videos/AbCdEfGhIjK_2.mp4", 5, 8)
    (root / "ms3_data/raw_videos/broken_1.mp4").write_bytes(b"not a video at all")
    (root / "ms3_meta_data.csv").write_text(
        "video_id,split\nAbCdEfGhIjK_2,train\nbroken_1,val\nmissing_3,test\n"
    )
    parser = argparse.ArgumentParser()
    preprocess_command.add_arguments(parser)
    rc = preprocess_command.run(
        parser.parse_args(["--setting", "ms3", "--root", str(root), "--quiet"])
    )
    out = capsys.readouterr().out
    assert rc == 1
    assert "1 processed, 0 already done, 2 failed" in out
    assert "broken_1.mp4: cannot open the video" in out
    assert "missing_3.mp4: raw video not found" in out
    folder = root / "ms3_data/visual_frames/AbCdEfGhIjK_2"
    # fps 8: int(s * 8 + 7.5) = 7, 15, 23, 31, 39 ; names carry the literal `.mp4_`
    assert _indices(folder, "AbCdEfGhIjK_2.mp4", 5) == [7, 15, 23, 31, 39]
    assert (root / "ms3_data/audio_log_mel/train/AbCdEfGhIjK_2.pkl").is_file()
    assert (root / "ms3_data/audio_wav/train/AbCdEfGhIjK_2.wav").is_file()
    assert not (root / "ms3_data/visual_frames/broken_1").exists()
    masks = root / "ms3_data/gt_masks/train/AbCdEfGhIjK_2"
    masks.mkdir(parents=True)
    from PIL import Image

    for i in range(1, 6):
        Image.fromarray(np.zeros((224, 224), np.uint8)).save(masks / f"AbCdEfGhIjK_2_{i}.png")
    assert MS3Dataset(root, "train")[0]["frames"].shape == (5, 3, 224, 224)


def test_video_without_audio_fails_clearly(tmp_path):
    root = tmp_path / "Multi-sources"
    make_video(root / "ms3_data/raw_videos/silentVideo_1.mp4", 5, 8, with_audio=False)
    (root / "ms3_meta_data.csv").write_text("video_id,split\nsilentVideo_1,train\n")
    report = preprocess.preprocess("ms3", root, progress=False)
    assert len(report["failed"]) == 1
    video, reason = report["failed"][0]
    assert video.name == "silentVideo_1.mp4" and "no audio stream" in reason


def test_read_frames_keeps_the_published_index_rule_at_29_97_fps(tmp_path):
    """The release's frames were cut with fps rounded to 30: at 29.97 fps second 5 takes
    frame int(4 * 30 + 28.125) = 148, not the frame on screen at 4 + 15/16 s (147)."""
    from fractions import Fraction

    from tests.video_fixtures import frame_index, index_frame
    from tests.video_fixtures import make_video as make_indexed_video

    ntsc = Fraction(30000, 1001)
    path = make_indexed_video(tmp_path / "n.mp4", 5, ntsc, 64, 48, frame=index_frame(64, 48, ntsc))
    frames = preprocess.read_frames(path, 5)
    assert all(f.shape == (224, 224, 3) for f in frames)
    assert [frame_index(f) for f in frames] == preprocess.frame_indices(29.97, 5)
    assert preprocess.frame_indices(29.97, 5) == [28, 58, 88, 118, 148]


def test_a_duplicated_row_is_refused_before_any_clip_is_processed(s4_raw):
    csv = s4_raw / "s4_meta_data.csv"
    csv.write_text(csv.read_text() + "shortOne001,2,race_car,val\n")
    with pytest.raises(AVSDataError) as caught:
        preprocess.preprocess("s4", s4_raw, progress=False)
    assert str(caught.value).startswith(
        f"{csv}, lines 3 and 5: clip 'shortOne001' appears twice in split 'val'"
    )
    assert not (s4_raw / "s4_data/visual_frames").exists()


def test_a_start_past_the_video_end_says_so_with_the_duration(tmp_path):
    root = tmp_path / "Single-source"
    video = root / "s4_data/raw_videos/test/race_car/lateStart01.mp4"
    make_video(video, 3, 10)
    csv = root / "s4_meta_data.csv"
    csv.write_text("name,start,category,split\nlateStart01,12,race_car,test\n")
    report = preprocess.preprocess("s4", root, progress=False)
    assert report["failed"] == [
        (
            video,
            f"{video}: start 12 s (in {csv}) is past the video's end (3.00 s long; the clip "
            "keeps 10 - start seconds when start > 5): fix the row's start",
        )
    ]
    assert not (root / "s4_data/visual_frames").exists()


def _outputs(root: Path) -> dict[str, bytes]:
    data = root / "s4_data"
    return {
        p.relative_to(data).as_posix(): p.read_bytes()
        for p in sorted(data.rglob("*"))
        if p.is_file() and "raw_videos" not in p.parts
    }


def test_a_clip_failing_half_way_leaves_no_output(s4_raw):
    """0.5 s of video: the frames and the wav decode, the log-mel fails (audio < 0.975 s)."""
    video = s4_raw / "s4_data/raw_videos/train/dog_barking/longOne0001.mp4"
    make_video(video, 0.5, 10)
    report = preprocess.preprocess("s4", s4_raw, splits=("train",), progress=False)
    assert [v for v, _ in report["failed"]] == [video]
    assert "audio too short" in report["failed"][0][1]
    assert _outputs(s4_raw) == {}
    assert not [p for p in (s4_raw / "s4_data").rglob("*") if p.name.endswith(".tmp")]


def test_a_failed_redo_keeps_the_previous_outputs(s4_raw):
    report = preprocess.preprocess("s4", s4_raw, splits=("train",), progress=False)
    assert len(report["done"]) == 1
    before = _outputs(s4_raw)
    assert len(before) == 5 + 4  # frames, wav, .pkl, .npy and its link to the .pkl
    make_video(s4_raw / "s4_data/raw_videos/train/dog_barking/longOne0001.mp4", 0.5, 10)
    report = preprocess.preprocess("s4", s4_raw, splits=("train",), overwrite=True,
                                   progress=False)  # fmt: skip
    assert len(report["failed"]) == 1
    assert _outputs(s4_raw) == before
