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

import argparse
import colorsys
import json
import math
import os
import time
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
from avsbench.data.layouts import (
    AVSS_SUBSET_FRAMES,
    S4_CATEGORIES,
    SPLITS,
    AVSSLayout,
    MS3Layout,
    S4Layout,
)
from avsbench.data.palette import CLASS_NAMES, encode_color_mask, write_label2idx
from avsbench.errors import InputError
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
SHAPES = ("circle", "square", "diamond", "triangle", "ring", "cross", "octagon", "ellipse")
TEXTURES = ("solid", "stripes", "checker", "dots")
RADIUS_RANGE = (0.18, 0.28)  # object radius / short side: diameters of 36-56 %
DRIFT = 0.02  # max drift of an object centre per frame, fraction of the side
F0_RANGE = (150.0, 5000.0)  # Hz, fundamental frequencies of the categories (log-spaced)
MAX_PARTIAL_HZ = 7000.0  # partials above this are dropped (below the 7.5 kHz mel top)
AM_RATES = (0.0, 4.0, 10.0)  # Hz, amplitude-modulation patterns
NOISE_LEVEL = 0.003  # std of the white noise added to every mixture
BACKGROUND_NOISE = 0.025  # std of the per-pixel luminance noise of every frame
RAMP_SECONDS = 0.01  # on/off ramps of switching sources
# A sounding object shows at least this share of its own pixels in every frame it sounds in
# (objects may overlap; a scene where one would be hidden more is drawn again)
MIN_VISIBLE_FRACTION = 0.25
MAX_SCENE_DRAWS = 100  # draws of a clip's scene before giving up (about 3 % need a second)
SETTING_CODES = {"s4": 1, "ms3": 2, "avss": 3}
_NAME_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))


# ---------------------------------------------------------------------------------------
# Stage 1: how every category looks and sounds
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Look:
    """Appearance and sound of one category."""

    colour: tuple[float, float, float]  # RGB in [0, 1]
    shape: str  # one of SHAPES
    texture: str  # one of TEXTURES
    f0: float  # Hz
    harmonics: int  # number of partials (1-3)
    am_rate: float  # Hz of amplitude modulation (0: steady)


def category_looks(num_categories: int) -> list[Look]:
    """Looks of categories 0..n-1: distinct hue (golden-ratio steps), shape and texture;
    f0 log-spaced over F0_RANGE; harmonics and AM rate cycle through their patterns."""
    looks = []
    for k in range(num_categories):
        hue = (0.05 + 0.61803398875 * k) % 1.0
        value = 0.95 if k % 2 == 0 else 0.8
        colour = colorsys.hsv_to_rgb(hue, 0.85, value)
        frac = k / (num_categories - 1) if num_categories > 1 else 0.5
        f0 = F0_RANGE[0] * (F0_RANGE[1] / F0_RANGE[0]) ** frac
        looks.append(
            Look(
                colour=colour,
                shape=SHAPES[k % len(SHAPES)],
                texture=TEXTURES[(k + k // len(SHAPES)) % len(TEXTURES)],
                f0=float(f0),
                harmonics=1 + k % 3,
                am_rate=AM_RATES[(k // 3) % len(AM_RATES)],
            )
        )
    return looks


# ---------------------------------------------------------------------------------------
# Stage 2: the scene (objects, their motion, who sounds when)
# ---------------------------------------------------------------------------------------
@dataclass
class SceneObject:
    category: int  # index into the setting's category list
    centres: np.ndarray  # float [T, 2]: (x, y) as fractions of width / height
    radius: float  # fraction of the short side
    sounding: np.ndarray  # bool [T]: sounds during log-mel example / frame t
    loudness: float  # relative amplitude in the mixture


@dataclass
class Scene:
    objects: list[SceneObject]  # back to front
    num_frames: int
    background: np.ndarray  # float32 [6, 6, 3] coarse background colours


def draw_scene(
    rng: np.random.Generator,
    num_categories: int,
    num_frames: int,
    *,
    sounding_category: int | None = None,
    num_objects: int,
    num_sounding: int,
    switching: bool,
) -> Scene:
    """Draw the objects of one clip (distinct categories), their placement and drift, and
    their per-frame sounding flags.

    `sounding_category` fixes the first sounding object's category (balanced S4 labels).
    With `switching`, each sounding object is on in each 0.96 s segment with probability
    0.75 (at least one source on per segment); otherwise sounding objects sound throughout.
    """
    num_objects = min(num_objects, num_categories)
    num_sounding = max(1, min(num_sounding, num_objects))
    others = [c for c in range(num_categories) if c != sounding_category]
    picked = list(
        rng.choice(others, size=num_objects - (sounding_category is not None), replace=False)
    )
    categories = ([sounding_category] if sounding_category is not None else []) + [
        int(c) for c in picked
    ]

    sounding = np.zeros((num_objects, num_frames), dtype=bool)
    sounding[:num_sounding] = True
    if switching:
        on = rng.random((num_sounding, num_frames)) < 0.75
        silent = ~on.any(axis=0)
        on[rng.integers(0, num_sounding, size=num_frames)[silent], np.nonzero(silent)[0]] = True
        sounding[:num_sounding] = on

    radii = rng.uniform(*RADIUS_RANGE, size=num_objects)
    starts: list[np.ndarray] = []
    for r in radii:
        for _ in range(60):  # rejection sampling: keep objects mostly apart
            pos = rng.uniform(r, 1 - r, size=2)
            if all(np.hypot(*(pos - p)) > 0.8 * (r + radii[j]) for j, p in enumerate(starts)):
                break
        starts.append(pos)
    objects = []
    for j in range(num_objects):
        velocity = rng.uniform(-DRIFT, DRIFT, size=2)
        steps = np.arange(num_frames)[:, None] * velocity  # [T, 2]
        centres = np.clip(starts[j] + steps, 0.6 * radii[j], 1 - 0.6 * radii[j])
        objects.append(
            SceneObject(
                category=categories[j],
                centres=centres,
                radius=float(radii[j]),
                sounding=sounding[j],
                loudness=float(rng.uniform(0.6, 1.0)),
            )
        )
    order = rng.permutation(num_objects)  # depth order independent of who sounds
    tint = rng.uniform(-0.05, 0.05, size=3)
    background = rng.uniform(0.35, 0.6, size=(6, 6, 1)) + tint
    return Scene([objects[i] for i in order], num_frames, background.astype(np.float32))


# ---------------------------------------------------------------------------------------
# Stage 3: pixels
# ---------------------------------------------------------------------------------------
def _shape_inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in object coordinates (u, v) = offset / radius."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(au, av) <= 0.85
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "triangle":
        return (v <= 0.8) & (au <= 0.55 * (v + 1.0))
    if shape == "ring":
        d2 = u * u + v * v
        return (d2 <= 1.0) & (d2 >= 0.3)
    if shape == "cross":
        return ((au <= 0.35) & (av <= 1.0)) | ((av <= 0.35) & (au <= 1.0))
    if shape == "octagon":
        return np.maximum(np.maximum(au, av), (au + av) / 1.35) <= 0.9
    if shape == "ellipse":
        return u * u + (v / 0.55) ** 2 <= 1.0
    raise ValueError(f"unknown shape {shape!r}; valid: {SHAPES}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Brightness pattern in [0, 1] in object coordinates."""
    if texture == "solid":
        return np.ones_like(u)
    if texture == "stripes":
        return (np.sin(2 * np.pi * 2.5 * u) > 0).astype(np.float32)
    if texture == "checker":
        return ((np.floor(u * 2.5) + np.floor(v * 2.5)) % 2).astype(np.float32)
    if texture == "dots":
        fu, fv = (u * 2.5) % 1.0 - 0.5, (v * 2.5) % 1.0 - 0.5
        return (fu * fu + fv * fv > 0.09).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}; valid: {TEXTURES}")


def _object_boxes(scene: Scene, looks: list[Look], t: int, size: tuple[int, int]):
    """For each object j back to front in frame t of a (w, h) frame: (j, box, inside, u, v)
    with box = (slice y, slice x) its bounding box in the frame, inside bool [h_box, w_box]
    its pixels, (u, v) the object coordinates (offset / radius) of the box."""
    w, h = size
    side = min(w, h)
    for j, obj in enumerate(scene.objects):
        look = looks[obj.category]
        cx, cy, r = obj.centres[t, 0] * w, obj.centres[t, 1] * h, obj.radius * side
        x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
        y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u, v = (xs - cx) / r, (ys - cy) / r  # object coordinates, [h_box, w_box]
        yield j, (slice(y0, y1), slice(x0, x1)), _shape_inside(look.shape, u, v), u, v


def visible_fractions(scene: Scene, looks: list[Look], t: int, size: tuple[int, int]) -> np.ndarray:
    """float [num_objects]: the share of each object's own pixels (inside the (w, h) frame)
    that no object in front of it covers in frame t."""
    owner = np.full(size[::-1], -1, dtype=np.int16)
    own = np.zeros(len(scene.objects))
    for j, box, inside, _, _ in _object_boxes(scene, looks, t, size):
        owner[box][inside] = j
        own[j] = inside.sum()
    visible = np.bincount(owner[owner >= 0], minlength=len(scene.objects))
    return visible / np.maximum(own, 1)


def draw_visible_scene(
    rng: np.random.Generator, looks: list[Look], num_frames: int, size: tuple[int, int], **kw
) -> Scene:
    """`draw_scene`, drawn again from the same generator (deterministic per seed) until
    every object shows at least MIN_VISIBLE_FRACTION of itself in each frame it sounds in:
    a mask never names an object that cannot be seen."""
    for _ in range(MAX_SCENE_DRAWS):
        scene = draw_scene(rng, len(looks), num_frames, **kw)
        if all(
            visible >= MIN_VISIBLE_FRACTION
            for t in range(num_frames)
            for visible, obj in zip(visible_fractions(scene, looks, t, size), scene.objects)
            if obj.sounding[t]
        ):
            return scene
    raise RuntimeError(f"no scene with visible sounding objects in {MAX_SCENE_DRAWS} draws")


def render_frame(
    scene: Scene,
    looks: list[Look],
    t: int,
    background: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Render frame t over `background` (float32 [H, W, 3] in [0, 1]) -> (RGB uint8
    [H, W, 3], owner int16 [H, W]: index in `scene.objects` of the object visible at each
    pixel, -1 for background). Objects are drawn back to front inside their bounding box;
    luminance noise is added last."""
    h, w = background.shape[:2]
    image = background.copy()
    owner = np.full((h, w), -1, dtype=np.int16)
    for j, box, inside, u, v in _object_boxes(scene, looks, t, (w, h)):
        look = looks[scene.objects[j].category]
        shade = 0.6 + 0.4 * _texture(look.texture, u, v)
        image[box][inside] = shade[inside, None] * np.asarray(look.colour, np.float32)
        owner[box][inside] = j
    image += rng.standard_normal((h, w, 1), dtype=np.float32) * BACKGROUND_NOISE
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), owner


def render_background(scene: Scene, size: tuple[int, int]) -> np.ndarray:
    """The clip's smooth background: coarse colours upsampled, float32 [H, W, 3]."""
    return cv2.resize(scene.background, size, interpolation=cv2.INTER_CUBIC)


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
                _write_image(lay.frame(split, category, name, i), clip.frames[i - 1])
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
                _write_image(lay.frame(video_id, i), clip.frames[i - 1])
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
                    _write_image(lay.frame(label, uid, k), clip.frames[k])
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="avsbench_data", help="folder receiving the dataset roots")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the clip counts")
    parser.add_argument("--settings", default="s4,ms3,avss", help="comma separated: s4,ms3,avss")
    parser.add_argument(
        "--num-categories", type=int, default=8, help="categories used (2..23; fewer learn faster)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace synthetic data this generator wrote (only the files of its manifest)",
    )


def check_arguments(args: argparse.Namespace) -> tuple[str, ...]:
    """The settings of `args`; InputError naming the flag and the fix for a bad flag, or
    for --overwrite on a dataset root that is a link (it would replace the link's target)."""
    valid = ",".join(WRITERS)
    settings = tuple(s.strip() for s in args.settings.split(",") if s.strip())
    unknown = [s for s in settings if s not in WRITERS]
    if unknown or not settings:
        raise InputError(f"--settings {args.settings}: unknown setting(s) {unknown}; use {valid}")
    if not 2 <= args.num_categories <= len(S4_CATEGORIES):
        raise InputError(
            f"--num-categories {args.num_categories}: use 2..{len(S4_CATEGORIES)} categories"
        )
    if not (math.isfinite(args.scale) and args.scale > 0):
        raise InputError(f"--scale {args.scale:g}: must be a positive number (1 = full size)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder; pass --out a folder you can write to")
    for setting in settings:
        root = out / ROOT_NAMES[setting]
        if args.overwrite and root.is_symlink():
            raise InputError(
                f"{root} is a symbolic link (to {os.readlink(root)}); --overwrite replaces "
                "only a real folder: remove the link or pass --out another folder"
            )
    return settings


def run(args: argparse.Namespace) -> int:
    settings = check_arguments(args)
    start = time.perf_counter()
    try:
        roots = make_toy_data(
            args.out,
            seed=args.seed,
            scale=args.scale,
            settings=settings,
            num_categories=args.num_categories,
            overwrite=args.overwrite,
        )
    except FileExistsError:  # a root holding data, named with the fix: one line (cli.main)
        raise
    except FolderError as err:  # what is in the way of --overwrite is named: one line
        raise InputError(str(err)) from err
    except OSError as err:  # --out is a file, or cannot be written
        where = err.filename or args.out
        raise InputError(
            f"{where}: {err.strerror or err}; pass --out a folder you can write to"
        ) from err
    for setting, root in roots.items():
        print(f"{setting}: {root}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
