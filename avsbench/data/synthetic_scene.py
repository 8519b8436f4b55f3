"""The synthetic AVSBench's scenes: how each category looks and sounds (`category_looks`),
objects, motion and who sounds when (`draw_scene`, `draw_visible_scene`), and the pixels of a
frame with the object owning each (`render_frame`). `avsbench.data.synthetic` writes them in
the official layouts."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

F0_RANGE = (150.0, 5000.0)  # Hz, fundamental frequencies of the categories (log-spaced)
SHAPES = ("circle", "square", "diamond", "triangle", "ring", "cross", "octagon", "ellipse")
TEXTURES = ("solid", "stripes", "checker", "dots")
RADIUS_RANGE = (0.18, 0.28)  # object radius / short side: diameters of 36-56 %
DRIFT = 0.02  # max drift of an object centre per frame, fraction of the side
AM_RATES = (0.0, 4.0, 10.0)  # Hz, amplitude-modulation patterns
BACKGROUND_NOISE = 0.025  # std of the per-pixel luminance noise of every frame
# A sounding object shows at least this share of its own pixels in every frame it sounds in
# (objects may overlap; a scene where one would be hidden more is drawn again)
MIN_VISIBLE_FRACTION = 0.25
MAX_SCENE_DRAWS = 100  # draws of a clip's scene before giving up (about 3 % need a second)


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


def segment_masks(owner: np.ndarray) -> np.ndarray:
    """The class-agnostic masks of a rendered frame for its maskige, from its owner map
    (int16 [H, W], -1 = background): the visible part of each object, then the background
    split into the four quadrants of the frame (empty masks dropped) -> bool [K, H, W]."""
    h, w = owner.shape
    objects = [owner == j for j in range(int(owner.max()) + 1)]
    rows, cols = np.arange(h)[:, None] < h // 2, np.arange(w)[None, :] < w // 2
    quadrants = [(rows == top) & (cols == left) for top in (True, False) for left in (True, False)]
    masks = np.stack(objects + [(owner < 0) & q for q in quadrants])  # [K, H, W]
    return masks[masks.any(axis=(1, 2))]
