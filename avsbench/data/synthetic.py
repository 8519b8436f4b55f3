"""Write a synthetic AVSBench (S4, MS3, AVSS) in the exact official layouts.

`avsbench make-toy-data --out avsbench_data` writes `Single-source/`, `Multi-sources/` and
`AVSBench_semantic/` as released (avsbench_data/README.md), small enough to train on in
minutes on a CPU, and a real audio-visual task:

- every frame shows 2-3 objects on a mildly textured, noisy background; each category
  has its own look (colour, shape and texture) and its own sound (fundamental frequency
  log-spaced 150 Hz..5 kHz, a category-specific number of harmonics and amplitude
  modulation, plus low noise);
- only the SOUNDING objects are in the masks; the other visible objects are silent
  categories, so a model cannot find the answer without listening; objects may overlap,
  but a sounding object always shows at least MIN_VISIBLE_FRACTION of itself in every frame
  it sounds in (`draw_visible_scene`), so no mask names an object that cannot be seen;
- S4: one sounding object and 1-2 silent distractors (the CSV category is the sounding
  one); MS3: 1-3 sounding among 3 visible objects (`MULTI_SOURCE_COUNTS`), switching on
  and off at the 0.96 s log-mel example boundaries (so per-frame masks differ); AVSS:
  subsets v1s (like S4, 5 s), v1m (like MS3, 5 s) and v2 (10 frames, 10 s audio, 256 x 192
  frames), masks of class ids (71 official classes, palette colours + labels_semantic).

Every frame also gets a maskige (COMBO, VCT) in COMBO's `pre_SAM_mask` layout
(`extra_inputs.MASKIGE`): the visible part of each object and the background split into
four quadrants, painted smallest on top with the ADE20K palette (`maskige.paint_maskige`).
It uses no random numbers, so frames, masks and audio do not depend on it.

Each dataset root also gets `toy_truth.json` (not part of the official layout): per clip
the visible objects, which of them sound in each frame and their visible pixel counts,
for tests and sanity checks, and a manifest TOY_DATA.manifest of the files written. A root
appears whole (written in a temporary folder next to it) and `--overwrite` replaces only
the files of its manifest, refusing a root that holds anything else
(`avsbench.owned_folder`, the rules of predict's output folder). Everything is
deterministic given the seed.

The generator reads as its stages: `category_looks` (how each category looks and sounds),
`draw_scene` (objects, motion, who sounds when), `render_frame` (pixels and ownership),
`synthesise_sound` (the mixture), and one writer per layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import soundfile as sf
from scipy.ndimage import uniform_filter1d

from avsbench.config import SETTINGS
from avsbench.data.audio import (
    EXAMPLE_HOP_SECONDS,
    SAMPLE_RATE,
    clip_log_mel,
    log_mel_examples,
    save_log_mel_pkl,
)
from avsbench.data.extra_inputs import MASKIGE
from avsbench.data.layouts import (
    AVSS_SUBSET_FRAMES,
    S4_CATEGORIES,
    SPLITS,
    AVSSLayout,
    MS3Layout,
    S4Layout,
)
from avsbench.data.maskige import paint_maskige, write_maskige
from avsbench.data.palette import CLASS_NAMES, encode_color_mask, write_label2idx
from avsbench.data.synthetic_scene import (
    Look,
    Scene,
    category_looks,
    draw_visible_scene,
    render_background,
    render_frame,
    segment_masks,
)
from avsbench.owned_folder import FolderError, OwnedFolder, Owner

ROOT_NAMES = {name: row.dataset_folder for name, row in SETTINGS.items()}  # setting -> folder
TRUTH_FILE = "toy_truth.json"
# the manifest of the files make-toy-data wrote into a dataset root: --overwrite replaces
# those, nothing else
TOY_DATA = Owner("make-toy-data", ".avsbench-toy-data.json", "avsbench-toy-data/1", "--out")

# Clips per split at scale 1.0 (each count is scaled, at least 1).
S4_CLIPS = {"train": 160, "val": 32, "test": 32}
# MS3: 256 train clips listen in 18 epochs where 128 were marginal (same seed, idle
# machine: test mIoU 0.815 own / 0.394 swapped audio against 0.561 / 0.194).
MS3_CLIPS = {"train": 256, "val": 32, "test": 32}
# Probabilities of 1, 2, 3 sounding objects among the visible ones in a multi-source clip
# (MS3, AVSS v1m / v2). Half the clips have one source, so most frames show a silent object
# and only the sound says which: a model that ignores the audio and marks every visible
# object gets ~0.45 IoU, one that hears which categories sound in the clip ~0.89, and with
# another clip's sound ~0.32 (4 categories, simulated from these draws; README, "Results on
# the synthetic AVSBench").
MULTI_SOURCE_COUNTS = (0.5, 0.4, 0.1)
# AVSS: more v1s / v1m clips than v2 (v2's 10 frames at 256 x 192 cost more to write and
# decode; in training every clip is padded to 10 frames). The number of distinct training
# clips decides how far the audio branch opens (4 categories, present-classes test mIoU
# with own / swapped audio): 60 train clips (20 each), 24 epochs: 0.38 / 0.34; 104 clips,
# 36 epochs: 0.50 / 0.39; these 208, 18 epochs (the same 936 steps): 0.55 / 0.43 (README,
# "Results on the synthetic AVSBench").
AVSS_CLIPS = {
    "train": {"v1s": 80, "v1m": 96, "v2": 32},
    "val": {"v1s": 12, "v1m": 12, "v2": 8},
    "test": {"v1s": 16, "v1m": 16, "v2": 16},
}

FRAME_SIZE = (224, 224)  # (w, h) of S4/MS3 frames (as released) and AVSS v1 frames
AVSS_V2_FRAME_SIZE = (256, 192)  # (w, h): v2 frames are not square, exercising the crop
MAX_PARTIAL_HZ = 7000.0  # partials above this are dropped (below the 7.5 kHz mel top)
NOISE_LEVEL = 0.003  # std of the white noise added to every mixture
RAMP_SECONDS = 0.01  # on/off ramps of switching sources
SETTING_CODES = {"s4": 1, "ms3": 2, "avss": 3}
_NAME_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))


# ---------------------------------------------------------------------------------------
# Stage 4: sound
# ---------------------------------------------------------------------------------------
def _gate(active: np.ndarray, num_samples: int) -> np.ndarray:
    """Per-segment on/off [T] -> per-sample gain [S] with short linear ramps.

    Segment t covers log-mel example t, [0.96 t, 0.96 (t + 1)) s; the last segment runs
    to the end of the clip.
    """
    seg = np.minimum(
        (np.arange(num_samples) / SAMPLE_RATE / EXAMPLE_HOP_SECONDS).astype(int), len(active) - 1
    )
    gain = active[seg].astype(np.float64)
    return uniform_filter1d(gain, int(RAMP_SECONDS * SAMPLE_RATE), mode="nearest")


def synthesise_sound(
    scene: Scene, looks: list[Look], seconds: float, rng: np.random.Generator
) -> np.ndarray:
    """Mixture of the sounding objects -> int16 [S] at 16 kHz.

    Each source: sum over partials h of sin(2 pi h f0 t + phase) / h (partials below
    7 kHz), times (1 - d/2 + d/2 sin(2 pi f_am t)) with d = 0.8 when f_am > 0, gated by
    its per-segment sounding flags. Peak-normalised to 0.5, plus white noise.
    """
    n = int(round(seconds * SAMPLE_RATE))
    time_s = np.arange(n) / SAMPLE_RATE
    mix = np.zeros(n)
    for obj in scene.objects:
        if not obj.sounding.any():
            continue
        look = looks[obj.category]
        f0 = look.f0 * rng.uniform(0.98, 1.02)
        source = np.zeros(n)
        for h in range(1, look.harmonics + 1):
            if h * f0 < MAX_PARTIAL_HZ:
                source += np.sin(2 * np.pi * h * f0 * time_s + rng.uniform(0, 2 * np.pi)) / h
        if look.am_rate > 0:
            source *= 0.6 + 0.4 * np.sin(2 * np.pi * look.am_rate * time_s)
        mix += obj.loudness * source * _gate(obj.sounding, n)
    peak = np.abs(mix).max()
    if peak > 0:
        mix *= 0.5 / peak
    mix += rng.normal(0.0, NOISE_LEVEL, size=n)
    return np.clip(np.round(mix * 32767.0), -32768, 32767).astype(np.int16)


# ---------------------------------------------------------------------------------------
# Stage 5: files
# ---------------------------------------------------------------------------------------
def _youtube_like_id(rng: np.random.Generator, used: set[str]) -> str:
    """An 11-character id in the YouTube alphabet, unique within `used`."""
    while True:
        name = "".join(rng.choice(_NAME_ALPHABET, size=11))
        if name[0] not in "-_" and name not in used:
            used.add(name)
            return name


def _write_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the image")


def _write_gray(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), values.astype(np.uint8)):
        raise OSError(f"{path}: could not write the image")


def _write_frame(layout: object, path: Path, rgb: np.ndarray, owner: np.ndarray) -> None:
    """The frame `path` of `layout` and its maskige (from the frame's owner map)."""
    _write_image(path, rgb)
    write_maskige(MASKIGE.path(layout, path), paint_maskige(segment_masks(owner)))


def _write_audio(wav_path: Path, waveform: np.ndarray, pkl_path: Path | None, n: int) -> None:
    """Write the int16 wav and, if asked, the official log-mel `.pkl` [n, 1, 96, 64]."""
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(wav_path), waveform, SAMPLE_RATE, subtype="PCM_16")
    if pkl_path is not None:
        examples = clip_log_mel(log_mel_examples(waveform, SAMPLE_RATE), n, pad="repeat")
        save_log_mel_pkl(pkl_path, examples[:, None])  # [n, 1, 96, 64]


@dataclass
class RenderedClip:
    frames: list[np.ndarray]  # uint8 [H, W, 3] per frame
    owners: list[np.ndarray]  # int16 [H, W] per frame
    waveform: np.ndarray  # int16 [S]
    scene: Scene

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 [H, W, 3], owner int16 [H, W]) of frame t."""
        return self.frames[t], self.owners[t]

    def sounding_mask(self, t: int) -> np.ndarray:
        """bool [H, W]: pixels of objects sounding in frame t."""
        ids = [j for j, o in enumerate(self.scene.objects) if o.sounding[t]]
        return np.isin(self.owners[t], ids)

    def class_map(self, t: int, class_ids: list[int]) -> np.ndarray:
        """uint8 [H, W]: class id of sounding objects in frame t, 0 elsewhere."""
        out = np.zeros(self.owners[t].shape, dtype=np.uint8)
        for j, obj in enumerate(self.scene.objects):
            if obj.sounding[t]:
                out[self.owners[t] == j] = class_ids[obj.category]
        return out

    def truth(self, names: list[str]) -> dict:
        objs = self.scene.objects
        return {
            "objects": [names[o.category] for o in objs],
            "sounding": [[bool(s) for s in o.sounding] for o in objs],
            "pixels": [[int((own == j).sum()) for own in self.owners] for j in range(len(objs))],
        }


def render_clip(
    rng: np.random.Generator,
    looks: list[Look],
    num_frames: int,
    size: tuple[int, int],
    **scene_kwargs: object,
) -> RenderedClip:
    """Draw a scene (sounding objects visible), render its frames and synthesise its sound
    (num_frames seconds)."""
    scene = draw_visible_scene(rng, looks, num_frames, size, **scene_kwargs)
    background = render_background(scene, size)
    rendered = [render_frame(scene, looks, t, background, rng) for t in range(num_frames)]
    waveform = synthesise_sound(scene, looks, float(num_frames), rng)
    return RenderedClip([f for f, _ in rendered], [o for _, o in rendered], waveform, scene)


def _count(n: int, scale: float) -> int:
    return max(1, int(round(n * scale)))


def _clip_rng(seed: int, setting: str, split: str, index: int, sub: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, SETTING_CODES[setting], SPLITS.index(split), sub, index])


def _write_truth(root: Path, setting: str, categories: list[str], clips: dict) -> None:
    record = {"setting": setting, "categories": categories, "clips": clips}
    (root / TRUTH_FILE).write_text(json.dumps(record, indent=0))


def write_s4(root: Path, *, seed: int, scale: float, num_categories: int) -> Path:
    """Synthetic Single-source (S4): 1 sounding + 1-2 silent objects per clip."""
    lay = S4Layout(root)
    categories = list(S4_CATEGORIES[:num_categories])
    looks = category_looks(num_categories)
    rows, truth, used = [], {}, set()
    for split in SPLITS:
        for index in range(_count(S4_CLIPS[split], scale)):
            rng = _clip_rng(seed, "s4", split, index)
            name = _youtube_like_id(rng, used)
            sounding = (index + int(rng.integers(num_categories))) % num_categories
            clip = render_clip(
                rng,
                looks,
                5,
                FRAME_SIZE,
                sounding_category=sounding,
                num_objects=int(rng.integers(2, 4)),
                num_sounding=1,
                switching=False,
            )
            category = categories[sounding]
            for i in range(1, 6):
                _write_frame(lay, lay.frame(split, category, name, i), *clip.frame(i - 1))
                if split != "train" or i == 1:  # train is annotated on frame 1 only
                    _write_gray(lay.mask(split, category, name, i), clip.sounding_mask(i - 1) * 255)
            pkl = lay.log_mel(split, category, name)
            _write_audio(lay.wav(split, category, name), clip.waveform, pkl, 5)
            rows.append(
                {
                    "name": name,
                    "start": int(rng.integers(0, 6)),
                    "category": category,
                    "split": split,
                }
            )
            truth[name] = {"split": split, "category": category, **clip.truth(categories)}
    pd.DataFrame(rows, columns=["name", "start", "category", "split"]).to_csv(
        lay.meta_csv, index=False
    )
    _write_truth(root, "s4", categories, truth)
    return root


def write_ms3(root: Path, *, seed: int, scale: float, num_categories: int) -> Path:
    """Synthetic Multi-sources (MS3): 3 objects, 1-3 sounding, switching per segment."""
    lay = MS3Layout(root)
    categories = list(S4_CATEGORIES[:num_categories])
    looks = category_looks(num_categories)
    rows, truth, used = [], {}, set()
    for split in SPLITS:
        for index in range(_count(MS3_CLIPS[split], scale)):
            rng = _clip_rng(seed, "ms3", split, index)
            video_id = f"{_youtube_like_id(rng, used)}_{int(rng.integers(1, 10))}"
            clip = render_clip(
                rng,
                looks,
                5,
                FRAME_SIZE,
                num_objects=3,
                num_sounding=int(rng.choice([1, 2, 3], p=MULTI_SOURCE_COUNTS)),
                switching=True,
            )
            for i in range(1, 6):
                _write_frame(lay, lay.frame(video_id, i), *clip.frame(i - 1))
                _write_gray(lay.mask(split, video_id, i), clip.sounding_mask(i - 1) * 255)
            _write_audio(lay.wav(split, video_id), clip.waveform, lay.log_mel(split, video_id), 5)
            rows.append({"video_id": video_id, "split": split})
            truth[video_id] = {"split": split, "category": "", **clip.truth(categories)}
    pd.DataFrame(rows, columns=["video_id", "split"]).to_csv(lay.meta_csv, index=False)
    _write_truth(root, "ms3", categories, truth)
    return root


def avss_class_ids(num_categories: int) -> list[int]:
    """AVSS class ids (1..70) used by the synthetic categories, spread over the list."""
    return [int(c) for c in np.linspace(1, len(CLASS_NAMES) - 1, num_categories).round()]


def write_avss(root: Path, *, seed: int, scale: float, num_categories: int) -> Path:
    """Synthetic AVSBench-semantic: v1s (like S4), v1m (like MS3), v2 (10 s, 256x192)."""
    lay = AVSSLayout(root)
    root.mkdir(parents=True, exist_ok=True)
    write_label2idx(lay.label2idx)
    class_ids = avss_class_ids(num_categories)
    categories = [CLASS_NAMES[c] for c in class_ids]
    looks = category_looks(num_categories)
    rows, truth, used = [], {}, set()
    for split in SPLITS:
        for sub, (label, count) in enumerate(AVSS_CLIPS[split].items()):
            for index in range(_count(count, scale)):
                rng = _clip_rng(seed, "avss", split, index, sub + 1)
                vid = _youtube_like_id(rng, used)
                uid = f"{vid}_{index}"
                n = AVSS_SUBSET_FRAMES[label]
                size = AVSS_V2_FRAME_SIZE if label == "v2" else FRAME_SIZE
                if label == "v1s":
                    kw = dict(
                        sounding_category=int(rng.integers(num_categories)),
                        num_objects=int(rng.integers(2, 4)),
                        num_sounding=1,
                        switching=False,
                    )
                else:
                    kw = dict(
                        num_objects=int(rng.integers(2, 4)),
                        num_sounding=int(rng.choice([1, 2, 3], p=MULTI_SOURCE_COUNTS)),
                        switching=True,
                    )
                clip = render_clip(rng, looks, n, size, **kw)
                annotated = 1 if (split == "train" and label == "v1s") else n
                for k in range(n):
                    _write_frame(lay, lay.frame(label, uid, k), *clip.frame(k))
                    if k < annotated:
                        ids = clip.class_map(k, class_ids)
                        _write_image(lay.label_rgb(label, uid, k), encode_color_mask(ids))
                        _write_gray(lay.label_semantic(label, uid, k), ids)
                _write_audio(lay.wav(label, uid), clip.waveform, None, n)
                sounding = [categories[o.category] for o in clip.scene.objects if o.sounding.any()]
                rows.append(
                    {
                        "vid": vid,
                        "uid": uid,
                        "s_min": 0,
                        "s_sec": 0,
                        "a_obj": "_".join(sounding),
                        "split": split,
                        "label": label,
                    }
                )
                info = clip.truth(categories)
                info["class_ids"] = [class_ids[o.category] for o in clip.scene.objects]
                truth[uid] = {"split": split, "category": label, **info}
    columns = ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"]
    pd.DataFrame(rows, columns=columns).to_csv(lay.meta_csv, index=False)
    _write_truth(root, "avss", categories, truth)
    return root


WRITERS = {"s4": write_s4, "ms3": write_ms3, "avss": write_avss}


def make_toy_data(
    out: str | Path,
    *,
    seed: int = 0,
    scale: float = 1.0,
    settings: tuple[str, ...] | list[str] = ("s4", "ms3", "avss"),
    num_categories: int = 8,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write the synthetic datasets under `out`; returns {setting: dataset root}.

    Roots: out/Single-source (s4), out/Multi-sources (ms3), out/AVSBench_semantic (avss).
    Each is written in a temporary folder next to it and moved into place when complete.
    An existing root is replaced only with `overwrite=True` and only if it holds nothing but
    the files of its manifest (an earlier output of this generator); FolderError
    otherwise, naming what is in the way, before anything is written.
    """
    unknown = [s for s in settings if s not in WRITERS]
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid: {sorted(WRITERS)}")
    if not 2 <= num_categories <= len(S4_CATEGORIES):
        raise ValueError(f"num_categories must be in 2..{len(S4_CATEGORIES)}, got {num_categories}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    folders: dict[str, OwnedFolder] = {}
    try:
        for setting in settings:  # every root is checked before any is written
            folders[setting] = _owned_root(Path(out) / ROOT_NAMES[setting], overwrite)
        roots = {}
        for setting, folder in folders.items():
            WRITERS[setting](folder.path, seed=seed, scale=scale, num_categories=num_categories)
            roots[setting] = folder.commit()
        return roots
    finally:
        for folder in folders.values():
            folder.abort()  # the temporary folders left (none after success)


def _owned_root(root: Path, overwrite: bool) -> OwnedFolder:
    """The dataset root as an OwnedFolder; a root made before manifests is named as such."""
    try:
        return OwnedFolder(root, TOY_DATA, overwrite)
    except FolderError as err:
        if (root / TRUTH_FILE).is_file() and not (root / TOY_DATA.manifest).exists():
            raise FolderError(
                f"{err} (synthetic data written before make-toy-data kept a manifest of its "
                f"files: delete {root} yourself once)"
            ) from err
        raise
