"""Tiny datasets in the official layouts, written by hand (not by the generator).

Helpers live here (imported by the tests); conftest.py only registers the fixtures.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

S = 224


def frame_rgb(seed: int, size: tuple[int, int] = (S, S)) -> np.ndarray:
    """Random RGB uint8 [h, w, 3]."""
    w, h = size
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def square_mask(i: int, size: tuple[int, int] = (S, S)) -> np.ndarray:
    """0/255 uint8 [h, w] with a square whose position depends on i."""
    w, h = size
    m = np.zeros((h, w), dtype=np.uint8)
    m[10 + 20 * i : 60 + 20 * i, 30 : 90 + i] = 255
    return m


def write_pkl(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(torch.from_numpy(array), f)


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    image.save(path)


def tone(seconds: float, rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)


@pytest.fixture
def s4_root(tmp_path: Path) -> Path:
    """S4 layout: 1 train clip (mask for frame 1 only, mode L), 1 val clip (mode 1 / P)."""
    root = tmp_path / "Single-source"
    rows = [("vidTrain0001", 0, "dog_barking", "train"), ("vidVal000001", 3, "helicopter", "val")]
    (root).mkdir(parents=True)
    lines = ["name,start,category,split"] + [",".join(map(str, r)) for r in rows]
    (root / "s4_meta_data.csv").write_text("\n".join(lines) + "\n")
    data = root / "s4_data"
    for n, (name, _, cat, split) in enumerate(rows):
        for i in range(1, 6):
            write_png(
                data / f"visual_frames/{split}/{cat}/{name}/{name}_{i}.png", frame_rgb(10 * n + i)
            )
        num_masks = 1 if split == "train" else 5
        for i in range(1, num_masks + 1):
            mode = "L" if split == "train" else ("1" if i % 2 else "P")
            write_png(data / f"gt_masks/{split}/{cat}/{name}/{name}_{i}.png", square_mask(i), mode)
        log_mel = np.random.default_rng(n).normal(size=(5, 1, 96, 64)).astype(np.float32)
        write_pkl(data / f"audio_log_mel/{split}/{cat}/{name}.pkl", log_mel)
        (data / f"audio_wav/{split}/{cat}").mkdir(parents=True, exist_ok=True)
        sf.write(data / f"audio_wav/{split}/{cat}/{name}.wav", tone(5.0), 16000, subtype="PCM_16")
    return root


@pytest.fixture
def ms3_root(tmp_path: Path) -> Path:
    """MS3 layout: 1 train clip with the literal `.mp4_` frame names."""
    root = tmp_path / "Multi-sources"
    root.mkdir(parents=True)
    (root / "ms3_meta_data.csv").write_text("video_id,split\nabcDEF12345_3,train\n")
    data = root / "ms3_data"
    vid = "abcDEF12345_3"
    for i in range(1, 6):
        write_png(data / f"visual_frames/{vid}/{vid}.mp4_{i}.png", frame_rgb(100 + i))
        write_png(data / f"gt_masks/train/{vid}/{vid}_{i}.png", square_mask(i))
    log_mel = np.random.default_rng(7).normal(size=(5, 1, 96, 64)).astype(np.float32)
    write_pkl(data / f"audio_log_mel/train/{vid}.pkl", log_mel)
    return root


def write_avss_clip(
    root: Path,
    label: str,
    uid: str,
    num_frames: int,
    num_labels: int,
    size: tuple[int, int],
    *,
    semantic: bool,
    seconds: float,
) -> list[np.ndarray]:
    """One AVSS clip; returns the class-id maps [h, w] written for labels 0..num_labels-1."""
    from avsbench.data.palette import encode_color_mask

    d = root / label / uid
    ids_list = []
    for k in range(num_frames):
        (d / "frames").mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame_rgb(200 + k, size)).save(d / "frames" / f"{k}.jpg", quality=95)
    for k in range(num_labels):
        w, h = size
        ids = np.zeros((h, w), dtype=np.uint8)
        ids[5 : h // 2, 7 : w // 3] = 1 + k  # accordion, airplane, ...
        ids[h // 2 :, w // 2 :] = 70  # woman
        ids_list.append(ids)
        write_png(d / "labels_rgb" / f"{k}.png", encode_color_mask(ids))
        if semantic:
            write_png(d / "labels_semantic" / f"{k}.png", ids)
    sf.write(d / "audio.wav", tone(seconds, 22050), 22050, subtype="PCM_16")
    return ids_list


@pytest.fixture
def avss_root(tmp_path: Path) -> Path:
    """AVSS layout: train v1s (1 label), v1m (5), v2 (10, 10 s audio, non-square frames)."""
    from avsbench.data.palette import CLASS_NAMES

    root = tmp_path / "AVSBench_semantic"
    root.mkdir(parents=True)
    (root / "label2idx.json").write_text(json.dumps({n: i + 1 for i, n in enumerate(CLASS_NAMES)}))
    rows = [
        ("vidA", "vidA_0", 0, 0, "accordion", "train", "v1s"),
        ("vidB", "vidB_1", 0, 0, "accordion_woman", "train", "v1m"),
        ("vidC", "vidC_2", 0, 0, "woman", "train", "v2"),
        ("vidD", "vidD_3", 0, 0, "woman", "val", "v1s"),
    ]
    header = "vid,uid,s_min,s_sec,a_obj,split,label"
    (root / "metadata.csv").write_text(
        "\n".join([header] + [",".join(map(str, r)) for r in rows]) + "\n"
    )
    write_avss_clip(root, "v1s", "vidA_0", 5, 1, (224, 224), semantic=False, seconds=5.0)
    write_avss_clip(root, "v1m", "vidB_1", 5, 5, (224, 224), semantic=True, seconds=5.0)
    write_avss_clip(root, "v2", "vidC_2", 10, 10, (320, 240), semantic=False, seconds=10.0)
    write_avss_clip(root, "v1s", "vidD_3", 5, 5, (300, 200), semantic=False, seconds=5.0)
    return root
